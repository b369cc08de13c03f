package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
)

// agentOptions are the flags of `vessel agent`.
type agentOptions struct {
	server   string
	logLevel string
	host     hostOptions
}

func newAgentCommand(g *globals) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --server URL",
		Short: "Run a host agent that joins a control plane's fleet",
		Long: `Registers this machine with the control plane at --server and runs the tasks
placed on it. Requests are SigV4-signed with the access key from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or from the data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.logLevel)
			if err != nil {
				return err
			}
			if o.server == "" {
				return fmt.Errorf("--server is required: the control plane's URL, e.g. http://10.0.0.1:8600")
			}
			key := auth.Key{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
			if key.AccessKeyID == "" {
				keys, err := auth.Load(g.dataDir)
				if err != nil {
					return err
				}
				key = keys[0]
			}
			if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
				return err
			}
			client, err := agentproto.NewClient(o.server, key, g.region)
			if err != nil {
				return err
			}
			a, report, err := o.host.newAgent(g.dataDir, client, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Runtimes on this host: %s\n", strings.Join(report, "; "))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&o.server, "server", os.Getenv("VESSEL_ENDPOINT"), "control plane URL")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	o.host.addFlags(cmd)
	return cmd
}
