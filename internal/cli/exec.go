package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/runtime"
)

// execOptions are the flags of `vessel exec`.
type execOptions struct {
	cluster   string
	container string
	stdin     bool
	tty       bool
}

func newExecCommand(g *globals) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec [--container NAME] [-i] [-t] TASK -- COMMAND [ARG...]",
		Short: "Run a command in a running task's container",
		Long: `Runs COMMAND in a container of a RUNNING task (its first container unless
--container says which), on the host that runs it, and exits with the
command's exit code. TASK is an ID, an ID prefix or an ARN.

With -i the command reads this terminal's (or pipe's) input; with -t it runs
on a terminal of its own, which follows this terminal's size, and this
terminal is put in raw mode while it runs.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return fmt.Errorf("exec takes one task before \"--\", got %q; put the command after \"--\"", args[:dash])
			}
			return g.exec(cmd, o, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "default", "cluster of the task")
	f.StringVarP(&o.container, "container", "c", "", "container to run the command in (default: the task's first)")
	f.BoolVarP(&o.stdin, "interactive", "i", false, "pass this process's input to the command")
	f.BoolVarP(&o.tty, "tty", "t", false, "run the command on a terminal")
	return cmd
}

func (g *globals) exec(cmd *cobra.Command, o *execOptions, ref string, command []string) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	stdinFd, stdoutFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	raw := o.tty && o.stdin && term.IsTerminal(stdinFd)
	if !raw {
		// In raw mode ^C goes to the command; otherwise it ends the exec.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
	}
	client, err := g.ecsClient()
	if err != nil {
		return err
	}
	arn, err := resolveTask(ctx, client, o.cluster, ref)
	if err != nil {
		return err
	}
	cfg, err := g.awsConfig()
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	endpoint := strings.TrimSuffix(g.endpoint, "/") + "/vessel/v1/clusters/" + url.PathEscape(o.cluster) + "/tasks/" + url.PathEscape(id) + "/exec"

	p := runtime.ExecProcess{Args: command, TTY: o.tty, Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
	if o.stdin {
		p.Stdin = cmd.InOrStdin()
	}
	if o.tty {
		sizeFd := stdoutFd
		if !term.IsTerminal(sizeFd) {
			sizeFd = stdinFd
		}
		if term.IsTerminal(sizeFd) {
			sizes := make(chan runtime.TerminalSize, 1)
			send := func() {
				if w, h, err := term.GetSize(sizeFd); err == nil {
					select {
					case sizes <- runtime.TerminalSize{Width: uint16(w), Height: uint16(h)}:
					default:
					}
				}
			}
			send()
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					send()
				}
			}()
			p.Resize = sizes
		}
	}
	if raw {
		state, err := term.MakeRaw(stdinFd)
		if err != nil {
			return fmt.Errorf("putting the terminal in raw mode: %w", err)
		}
		defer term.Restore(stdinFd, state)
	}
	tlsCfg, err := g.tlsConfig()
	if err != nil {
		return err
	}
	ec := &agentproto.ExecClient{Key: auth.Key{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey}, Region: g.region, TLS: tlsCfg}
	code, err := ec.Exec(ctx, endpoint, o.container, p)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return exitCode(130)
		}
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}
