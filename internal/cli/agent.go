package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
)

// agentOptions are the flags of `vessel agent`.
type agentOptions struct {
	server    string
	logLevel  string
	listen    string
	advertise string
	host      hostOptions
}

func newAgentCommand(g *globals) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --server URL",
		Short: "Run a host agent that joins a control plane's fleet",
		Long: `Registers this machine with the control plane at --server and runs the tasks
placed on it. Requests are SigV4-signed with the access key from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or from the data directory.
The agent serves its tasks' logs and execs to the control plane on
--listen, checking the same signature.`,
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
			ln, endpoint, err := o.listenEndpoint()
			if err != nil {
				return err
			}
			defer ln.Close()
			o.host.endpoint = endpoint
			a, report, err := o.host.newAgent(g.dataDir, client, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Runtimes on this host: %s\n", strings.Join(report, "; "))
			fmt.Fprintf(cmd.ErrOrStderr(), "Serving task logs and execs to the control plane on %s\n", endpoint)
			verify, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{key}})
			if err != nil {
				return err
			}
			httpSrv := &http.Server{Handler: verify.Middleware(a.Handler(), writeAgentAuthError), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("agent endpoint failed", "err", err)
				}
			}()
			defer httpSrv.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&o.server, "server", os.Getenv("VESSEL_ENDPOINT"), "control plane URL")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&o.listen, "listen", ":0", "address of the endpoint serving this host's task logs and execs to the control plane (default: a free port)")
	cmd.Flags().StringVar(&o.advertise, "advertise", "", "URL the control plane reaches that endpoint at (default: http://ADDRESS:PORT, ADDRESS being the one this host reaches --server from)")
	o.host.addFlags(cmd)
	return cmd
}

// listenEndpoint opens --listen and returns the URL the control plane
// reaches it at: --advertise, or the listener's address, with the address
// this host reaches --server from when it listens on all of them.
func (o *agentOptions) listenEndpoint() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s (--listen): %w", o.listen, err)
	}
	if o.advertise != "" {
		return ln, strings.TrimSuffix(o.advertise, "/"), nil
	}
	addr := ln.Addr().(*net.TCPAddr)
	ip := addr.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if u, err := url.Parse(o.server); err == nil && u.Host != "" {
			hostport := u.Host
			if u.Port() == "" {
				hostport = net.JoinHostPort(u.Hostname(), "80")
			}
			if c, err := net.Dial("udp", hostport); err == nil {
				ip = c.LocalAddr().(*net.UDPAddr).IP
				c.Close()
			}
		}
	}
	return ln, "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port)), nil
}

// writeAgentAuthError answers a request to the agent's endpoint whose
// signature is refused, as agent protocol errors are shaped.
func writeAgentAuthError(w http.ResponseWriter, _ *http.Request, e *auth.AuthError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.HTTPStatus)
	json.NewEncoder(w).Encode(map[string]string{"kind": e.Code, "message": e.Message})
}
