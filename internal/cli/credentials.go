package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/auth"
)

// credentialsOptions holds the flags of `vessel credentials`; it has none
// beyond the global ones.
type credentialsOptions struct{}

func newCredentialsCommand(g *globals) *cobra.Command {
	o := &credentialsOptions{}
	return &cobra.Command{
		Use:   "credentials",
		Short: "Print shell exports that point AWS tools at Vessel",
		Long: `Prints export lines with the first access key in the data directory, for the
aws CLI and the AWS SDKs, e.g.: eval "$(vessel credentials)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, g)
		},
	}
}

func (o *credentialsOptions) run(cmd *cobra.Command, g *globals) error {
	keys, err := auth.Load(g.dataDir)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(cmd.OutOrStdout(), auth.ExportLines(keys[0], g.endpoint, g.region))
	if err == nil {
		err = printCABundle(cmd, g)
	}
	return err
}
