package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/fsutil"
)

// credentialsOptions holds the flags of `vessel credentials` and its verbs.
type credentialsOptions struct {
	policy string
	allow  []string
}

func newCredentialsCommand(g *globals) *cobra.Command {
	o := &credentialsOptions{}
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Print shell exports for the local admin key; create, list, rotate and delete access keys",
		Long: `Without a verb, prints export lines with this machine's admin key (its
secret sealed in the data directory, readable by root only), for the aws CLI
and the AWS SDKs, e.g.: eval "$(vessel credentials)"

Keys for people and tools, each with a policy:
  admin      every action
  operator   every action but managing keys and hosts
  read-only  Describe*, List* and Get* actions, and task logs
  --allow    exactly the listed actions (a custom policy), e.g.
             --allow ecs:RunTask,ecs:DescribeTasks or --allow 'ecs:Describe*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := g.local().Load()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), auth.ExportLines(k, g.endpoint, g.region))
			if err == nil {
				err = printCABundle(cmd, g)
			}
			return err
		},
	}

	create := &cobra.Command{
		Use:   "create NAME [--policy read-only|operator|admin | --allow service:Action,...]",
		Short: "Create an access key and print it once (its secret is shown only now)",
		Args:  exactArgs(1, "NAME: who holds the key, e.g. ci or alice"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.vesselClient()
			if err != nil {
				return err
			}
			if err := checkPolicyFlag(o.policy); err != nil {
				return err
			}
			k, err := c.CreateCredential(cmd.Context(), agentproto.CreateCredentialRequest{Name: args[0], Policy: o.policy, Allow: o.allow})
			if err != nil {
				return err
			}
			return printNewKey(cmd, g, k, "Created")
		},
	}
	create.Flags().StringVar(&o.policy, "policy", "", "the key's policy: read-only (the default), operator or admin")
	create.Flags().StringSliceVar(&o.allow, "allow", nil, "actions a custom policy allows, e.g. ecs:RunTask,ecs:DescribeTasks ('*' as a wildcard: ecs:Describe*)")
	create.MarkFlagsMutuallyExclusive("policy", "allow")

	list := &cobra.Command{
		Use:   "list",
		Short: "List access keys: ID, name, policy, created (never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			c, err := g.vesselClient()
			if err != nil {
				return err
			}
			keys, err := c.ListCredentials(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), keys)
			}
			t := newTable(cmd.OutOrStdout(), "ACCESS KEY ID", "NAME", "POLICY", "CREATED")
			for _, k := range keys {
				policy := k.Policy
				if policy == auth.PolicyCustom {
					policy += ": " + strings.Join(k.Allow, ",")
				}
				created := ""
				if !k.CreatedAt.IsZero() {
					created = k.CreatedAt.Local().Format(time.DateTime)
				}
				t.row(k.AccessKeyID, k.Name, policy, created)
			}
			return t.flush()
		},
	}
	addOutputFlag(list, g)

	rotate := &cobra.Command{
		Use:   "rotate ID_OR_NAME",
		Short: "Give a key a new secret (same ID, name and policy) and print it; the old secret stops working",
		Args:  exactArgs(1, "ID_OR_NAME: the key's access key ID or name (see `vessel credentials list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.vesselClient()
			if err != nil {
				return err
			}
			k, err := c.RotateCredential(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			// The local admin key rotated: keep the sealed copy current,
			// or this machine's CLI would lock itself out.
			if local, lerr := g.local().Load(); lerr == nil && local.AccessKeyID == k.AccessKeyID {
				local.SecretAccessKey = k.SecretAccessKey
				if err := g.local().Save(local); err != nil {
					return fmt.Errorf("rotated %s, but saving its new secret in %s failed (the export lines below are the only copy): %w\n%s",
						k.AccessKeyID, g.local().KeyPath(), err, auth.ExportLines(local, g.endpoint, g.region))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "The local admin key in %s now holds the new secret.\n", g.local().KeyPath())
			}
			return printNewKey(cmd, g, k, "Rotated")
		},
	}

	del := &cobra.Command{
		Use:   "delete ID_OR_NAME",
		Short: "Delete an access key; it stops working at once (the last admin key cannot be deleted)",
		Args:  exactArgs(1, "ID_OR_NAME: the key's access key ID or name (see `vessel credentials list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.vesselClient()
			if err != nil {
				return err
			}
			if err := c.DeleteCredential(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, rotate, del)
	return cmd
}

// exactArgs is cobra.ExactArgs with a message that says what is expected.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), n, len(args), what)
		}
		return nil
	}
}

// checkPolicyFlag refuses an unknown --policy before asking the server.
func checkPolicyFlag(p string) error {
	switch p {
	case "", auth.PolicyAdmin, auth.PolicyOperator, auth.PolicyReadOnly:
		return nil
	}
	return fmt.Errorf("--policy %q is not known: use read-only, operator or admin, or --allow service:Action,... for a custom policy", p)
}

func printNewKey(cmd *cobra.Command, g *globals, k agentproto.Credential, verb string) error {
	policy := k.Policy
	if policy == auth.PolicyCustom {
		policy += " (" + strings.Join(k.Allow, ", ") + ")"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s access key %s for %s, policy %s. Its secret is shown only now:\n", verb, k.AccessKeyID, k.Name, policy)
	_, err := fmt.Fprint(cmd.OutOrStdout(), auth.ExportLines(auth.Key{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}, g.endpoint, g.region))
	return err
}

// vesselClient talks to Vessel's own routes (keys, join tokens, hosts),
// signing with the environment's key or the local admin key and trusting
// the control plane's CA as the SDK clients do.
func (g *globals) vesselClient() (*agentproto.Client, error) {
	k, _, err := g.signingKey()
	if err != nil {
		return nil, err
	}
	tc, err := g.tlsConfig()
	if err != nil {
		return nil, err
	}
	c, err := agentproto.NewClient(g.endpoint, k, g.region)
	if err != nil {
		return nil, err
	}
	return c.WithTLS(tc), nil
}

// KeyFileRecord is the file in a server's data directory that records the
// --encryption-key-file it was given (a path, no secret), so that commands
// given that data directory but not the flag, such as `vessel credentials`
// on a replica whose key file is kept elsewhere, use the same key.
const KeyFileRecord = "encryption-key-file"

// recordKeyFile records the master key file of local in its data
// directory when it is not the default one.
func recordKeyFile(local auth.Local) error {
	if local.MasterKeyFile == "" {
		return nil
	}
	path, err := filepath.Abs(local.MasterKeyFile)
	if err != nil {
		return fmt.Errorf("recording --encryption-key-file: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(local.DataDir, KeyFileRecord), []byte(path+"\n"), ""); err != nil {
		return fmt.Errorf("recording --encryption-key-file in %s: %w", local.DataDir, err)
	}
	return nil
}

// recordedKeyFile is the master key file recorded in dataDir, or "".
func recordedKeyFile(dataDir string) string {
	data, err := os.ReadFile(filepath.Join(dataDir, KeyFileRecord))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
