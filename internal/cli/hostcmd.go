package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/server"
)

// hostTokenOptions are the flags of `vessel host token create`.
type hostTokenOptions struct {
	ttl         time.Duration
	description string
}

func newHostCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "Manage the hosts of the fleet: join tokens, listing, revocation"}
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
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List hosts: registered, with a credential, or revoked",
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
			t := newTable(cmd.OutOrStdout(), "HOST", "STATE", "CREDENTIAL", "RUNTIMES")
			for _, h := range out.Hosts {
				state := "not registered"
				switch {
				case h.Revoked:
					state = "revoked"
				case h.Registered && h.Alive:
					state = "ready"
				case h.Registered:
					state = "lost"
				}
				t.row(h.ID, state, h.AccessKeyID, strings.Join(h.Runtimes, ","))
			}
			return t.flush()
		},
	}
	addOutputFlag(ls, g)
	cmd.AddCommand(token, revoke, ls)
	return cmd
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
