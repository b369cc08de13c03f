package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
)

// logsOptions are the flags of `vessel logs`.
type logsOptions struct {
	cluster    string
	follow     bool
	since      string
	tail       int
	timestamps bool
}

func newLogsCommand(g *globals) *cobra.Command {
	o := &logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs [-f] [--since 10m] [--tail N] TASK [CONTAINER]",
		Short: "Show a task's output",
		Long: `Prints the stdout and stderr of a task's containers, kept on its host with
timestamps, also after the task stopped. TASK is an ID, an ID prefix or an ARN.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			client, err := g.ecsClient()
			if err != nil {
				return err
			}
			arn, err := resolveTask(ctx, client, o.cluster, args[0])
			if err != nil {
				return err
			}
			lo := agentproto.LogOptions{Follow: o.follow, Tail: o.tail}
			if len(args) == 2 {
				lo.Container = args[1]
			}
			q := agentproto.EncodeLogQuery(lo)
			if o.since != "" {
				q.Set("since", o.since)
			}
			out := cmd.OutOrStdout()
			return g.streamLogs(ctx, o.cluster, arn, q, func(l agentproto.LogLine) error {
				return printLogLine(out, l, o.timestamps, lo.Container == "")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "default", "cluster of the task")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new output until the task stops")
	f.StringVar(&o.since, "since", "", "only output newer than this: a duration (10m) or an RFC 3339 time")
	f.IntVar(&o.tail, "tail", 0, "only the last N lines of each container (0 = all)")
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "show each line's time")
	return cmd
}

func printLogLine(w io.Writer, l agentproto.LogLine, timestamps, withContainer bool) error {
	var b strings.Builder
	if timestamps {
		b.WriteString(l.Time.UTC().Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	if withContainer {
		b.WriteString("[" + l.Container + "] ")
	}
	b.WriteString(l.Text)
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// streamLogs reads a task's logs from the control plane.
func (g *globals) streamLogs(ctx context.Context, cluster, arn string, q url.Values, emit func(agentproto.LogLine) error) error {
	cfg, err := g.awsConfig()
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	u := strings.TrimSuffix(g.endpoint, "/") + "/vessel/v1/clusters/" + url.PathEscape(cluster) + "/tasks/" + url.PathEscape(id) + "/logs?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	key := auth.Key{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey}
	if err := auth.SignRequest(ctx, req, key, g.region, "vessel", nil, time.Now()); err != nil {
		return err
	}
	hc, err := g.httpClient()
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("reading logs: %w", err)
	}
	defer resp.Body.Close()
	err = agentproto.ReadLogStream(resp, emit)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
