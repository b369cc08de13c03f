package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/server"
)

// hostTokenOptions are the flags of `vessel host token create`.
type hostTokenOptions struct {
	ttl         time.Duration
	description string
}

func newHostCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "Manage the hosts of the fleet: join tokens, listing, drain, removal, revocation"}
	token := &cobra.Command{Use: "token", Short: "Join tokens: what a new host presents once to receive its credential"}
	o := &hostTokenOptions{}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token and print the command that joins a host with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out server.CreatedJoinToken
			in := map[string]string{"ttl": o.ttl.String(), "description": o.description}
			if err := g.vesselCall(cmd.Context(), http.MethodPost, "/vessel/v1/join-tokens", in, &out); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			line := fmt.Sprintf("vessel agent --server %s --token %s", g.endpoint, out.Token)
			if out.CACertHash != "" {
				line += " --ca-cert-hash " + out.CACertHash
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", line)
			fmt.Fprintf(cmd.ErrOrStderr(), "The token expires at %s; `vessel host token delete %s` withdraws it.\n", out.Expires.UTC().Format(time.RFC3339), out.ID)
			return nil
		},
	}
	create.Flags().DurationVar(&o.ttl, "ttl", server.DefaultJoinTokenTTL, "how long the token is valid (1m to 8760h)")
	create.Flags().StringVar(&o.description, "description", "", "what the token is for")
	addOutputFlag(create, g)
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List join tokens (IDs and expiry; secrets are not kept)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				JoinTokens []server.JoinToken `json:"joinTokens"`
			}
			if err := g.vesselCall(cmd.Context(), http.MethodGet, "/vessel/v1/join-tokens", nil, &out); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			t := newTable(cmd.OutOrStdout(), "ID", "EXPIRES", "STATE", "DESCRIPTION")
			now := time.Now()
			for _, jt := range out.JoinTokens {
				state := "valid"
				if !now.Before(jt.Expires) {
					state = "expired"
				}
				t.row(jt.ID, jt.Expires.UTC().Format(time.RFC3339), state, jt.Description)
			}
			return t.flush()
		},
	}
	addOutputFlag(list, g)
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a join token: no host can join with it any more",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.vesselCall(cmd.Context(), http.MethodDelete, "/vessel/v1/join-tokens/"+url.PathEscape(args[0]), nil, nil)
		},
	}
	token.AddCommand(create, list, del)
	revoke := &cobra.Command{
		Use:   "revoke HOST_ID",
		Short: "Cut a host off: delete its credential, stop its tasks as those of a lost host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.vesselCall(cmd.Context(), http.MethodPost, "/vessel/v1/hosts/"+url.PathEscape(args[0])+"/revoke", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Host %s is revoked; it may come back only by joining with a new token.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(token, revoke, newHostListCommand(g), newHostDescribeCommand(g),
		newHostDrainCommand(g), newHostUndrainCommand(g), newHostRemoveCommand(g))
	return cmd
}

// hostPath is the route of one host.
func hostPath(id string) string { return "/vessel/v1/hosts/" + url.PathEscape(id) }

func newHostListCommand(g *globals) *cobra.Command {
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List hosts: state, capacity, what their tasks hold, slices, last heartbeat",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Hosts []server.HostInfo `json:"hosts"`
			}
			if err := g.vesselCall(cmd.Context(), http.MethodGet, "/vessel/v1/hosts", nil, &out); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			t := newTable(cmd.OutOrStdout(), "HOST", "ADDRESS", "STATE", "CPU", "MEMORY", "TASKS", "SLICES", "HEARTBEAT", "RUNTIMES", "POOLS")
			now := time.Now()
			for _, h := range out.Hosts {
				t.row(h.ID, h.Address, h.State, hostCPU(h), hostMemory(h), hostTasks(h), hostSlices(h),
					heartbeatAge(h.LastHeartbeat, now), strings.Join(h.Runtimes, ","), hostPools(h))
			}
			return t.flush()
		},
	}
	addOutputFlag(ls, g)
	return ls
}

// hostCPU is "allocated/capacity" in vCPU, e.g. "1.5/4".
func hostCPU(h server.HostInfo) string {
	if !h.Registered {
		return ""
	}
	v := func(m int64) string { return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) }
	return v(h.Allocated.MilliCPU) + "/" + v(h.Capacity.MilliCPU)
}

// hostMemory is "allocated/capacity" in MiB.
func hostMemory(h server.HostInfo) string {
	if !h.Registered {
		return ""
	}
	return fmt.Sprintf("%d/%dMiB", h.Allocated.MemoryMiB, h.Capacity.MemoryMiB)
}

func hostTasks(h server.HostInfo) string {
	if !h.Registered {
		return ""
	}
	return strconv.Itoa(h.Tasks)
}

func hostSlices(h server.HostInfo) string {
	var out []string
	for _, sl := range h.Slices {
		out = append(out, sl.CIDR.String())
	}
	return strings.Join(out, ",")
}

// hostPools is each warm pool as "POOL READY/TARGET", e.g. "runc 2/2",
// "gvisor:4/8 1/2" (poolName).
func hostPools(h server.HostInfo) string {
	var out []string
	for _, p := range h.WarmPools {
		out = append(out, fmt.Sprintf("%s %d/%d", poolName(p), p.Ready, p.Target))
	}
	return strings.Join(out, ",")
}

// poolName is a warm pool's runtime and, for one of a size class, the
// largest size it serves: "runc", "gvisor:4/8" (VCPU/GB).
func poolName(p agentproto.WarmPool) string {
	if p.Class == "" {
		return p.Runtime
	}
	return p.Runtime + ":" + p.Class
}

// heartbeatAge is how long ago at was, in whole seconds ("" for never).
func heartbeatAge(at, now time.Time) string {
	if at.IsZero() {
		return ""
	}
	return now.Sub(at).Round(time.Second).String() + " ago"
}

func newHostDescribeCommand(g *globals) *cobra.Command {
	describe := &cobra.Command{
		Use:   "describe HOST [-o json]",
		Short: "Describe a host: its state, capacity, slices and tasks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d server.HostDetail
			if err := g.vesselCall(cmd.Context(), http.MethodGet, hostPath(args[0]), nil, &d); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			w := cmd.OutOrStdout()
			or := func(s string) string {
				if s == "" {
					return "-"
				}
				return s
			}
			at := func(t time.Time) string {
				if t.IsZero() {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "Host:            %s\n", d.ID)
			fmt.Fprintf(w, "State:           %s\n", d.State)
			fmt.Fprintf(w, "Address:         %s\n", or(d.Address))
			if d.Draining {
				stop := "left to finish"
				if d.StopTasks {
					stop = "stopped (--stop-tasks)"
				}
				fmt.Fprintf(w, "Draining since:  %s (standalone tasks %s)\n", at(d.DrainingSince), stop)
			}
			fmt.Fprintf(w, "CPU (vCPU):      %s\n", or(hostCPU(d.HostInfo)))
			fmt.Fprintf(w, "Memory:          %s\n", or(hostMemory(d.HostInfo)))
			fmt.Fprintf(w, "Slices:          %s\n", or(hostSlices(d.HostInfo)))
			fmt.Fprintf(w, "Runtimes:        %s\n", or(strings.Join(d.Runtimes, ",")))
			fmt.Fprintf(w, "Last heartbeat:  %s\n", at(d.LastHeartbeat))
			fmt.Fprintf(w, "Registered:      %s\n", at(d.RegisteredAt))
			fmt.Fprintf(w, "Credential:      %s\n", or(d.AccessKeyID))
			if d.Revoked {
				fmt.Fprintf(w, "Revoked:         %s\n", at(d.RevokedAt))
			}
			fmt.Fprintf(w, "Endpoint:        %s\n", or(d.LogsEndpoint))
			fmt.Fprintf(w, "Warm pools:      %s\n", or(hostPools(d.HostInfo)))
			for _, p := range d.WarmPools {
				primed := ""
				if p.Primed > 0 || p.PrimedHits > 0 {
					primed = fmt.Sprintf(" (%d primed, %d primed hits)", p.Primed, p.PrimedHits)
				}
				fmt.Fprintf(w, "  %-18s %d ready of %d%s, %d MiB held, %d hits, %d misses\n", poolName(p)+":", p.Ready, p.Target, primed, p.MemoryMiB, p.Hits, p.Misses)
			}
			fmt.Fprintf(w, "Tasks:           %d\n", len(d.TaskList))
			if len(d.TaskList) == 0 {
				return nil
			}
			fmt.Fprintln(w)
			t := newTable(w, "TASK", "CLUSTER", "GROUP", "STATUS", "DESIRED", "IP", "CPU", "MEMORY")
			for _, tk := range d.TaskList {
				t.row(tk.ID, tk.Cluster, tk.Group, tk.LastStatus, tk.DesiredStatus, tk.IP,
					strconv.FormatFloat(float64(tk.MilliCPU)/1000, 'f', -1, 64), fmt.Sprintf("%dMiB", tk.MemoryMiB))
			}
			return t.flush()
		},
	}
	addOutputFlag(describe, g)
	return describe
}

// hostDrainOptions are the flags of `vessel host drain`.
type hostDrainOptions struct {
	stopTasks bool
}

func newHostDrainCommand(g *globals) *cobra.Command {
	o := &hostDrainOptions{}
	drain := &cobra.Command{
		Use:   "drain HOST [--stop-tasks]",
		Short: "Drain a host: nothing new is placed on it; its service tasks are started elsewhere, then stopped",
		Long: "Drain a host: nothing new is placed on it. Its service tasks are first started on other hosts, within each\n" +
			"service's minimumHealthyPercent and maximumPercent, then stopped. Its standalone tasks are left to finish,\n" +
			"or stopped with --stop-tasks. `vessel host ls` shows the host drained once it runs no task; then\n" +
			"`vessel host rm` removes it, and `vessel host undrain` takes it back.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := map[string]bool{"stopTasks": o.stopTasks}
			if err := g.vesselCall(cmd.Context(), http.MethodPost, hostPath(args[0])+"/drain", in, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Host %s is draining; `vessel host ls` shows it drained once its tasks have stopped.\n", args[0])
			return nil
		},
	}
	drain.Flags().BoolVar(&o.stopTasks, "stop-tasks", false, "stop the host's standalone tasks too (else they are left to finish)")
	return drain
}

func newHostUndrainCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "undrain HOST",
		Short: "Take a draining host back: tasks are placed on it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.vesselCall(cmd.Context(), http.MethodPost, hostPath(args[0])+"/undrain", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Host %s takes tasks again.\n", args[0])
			return nil
		},
	}
}

// hostRemoveOptions are the flags of `vessel host rm`.
type hostRemoveOptions struct {
	force bool
}

func newHostRemoveCommand(g *globals) *cobra.Command {
	o := &hostRemoveOptions{}
	rm := &cobra.Command{
		Use:   "rm HOST [--force]",
		Short: "Remove a drained host: its registration, credential and slices",
		Long: "Remove a host: its registration, heartbeats, credential and subnet slices. Only a drained host (drained,\n" +
			"no task left) is removed, unless --force: then its tasks are stopped first. It may come back only by\n" +
			"joining with a new token.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := hostPath(args[0])
			if o.force {
				path += "?force=true"
			}
			if err := g.vesselCall(cmd.Context(), http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Host %s is removed; it may come back only by joining with a new token.\n", args[0])
			return nil
		},
	}
	rm.Flags().BoolVar(&o.force, "force", false, "remove the host even if it is not drained: its tasks are stopped first")
	return rm
}

// vesselCall sends a signed request to one of Vessel's own routes and
// decodes its JSON answer into out (when not nil).
func (g *globals) vesselCall(ctx context.Context, method, path string, in, out any) error {
	if err := g.checkOutput(); err != nil && g.output != "" {
		return err
	}
	c, err := g.vesselClient()
	if err != nil {
		return err
	}
	if err := c.Call(ctx, method, path, in, out); err != nil {
		return fmt.Errorf("control plane at %s: %w", g.endpoint, err)
	}
	return nil
}
