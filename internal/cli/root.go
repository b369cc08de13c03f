package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsclient"
)

// DefaultListen is where `vessel server` listens and the CLI connects.
const DefaultListen = "127.0.0.1:8600"

// globals are the flags every user command shares.
type globals struct {
	endpoint      string
	dataDir       string
	masterKeyFile string
	region        string
	output        string
}

// local is this machine's master key and local admin key: the master key
// is --encryption-key-file, else the one recorded in the data directory by
// a server given that flag (recordedKeyFile), else <data-dir>/master.key.
func (g *globals) local() auth.Local {
	return auth.Local{DataDir: g.dataDir, MasterKeyFile: cmp.Or(g.masterKeyFile, recordedKeyFile(g.dataDir))}
}

// signingKey is the key the CLI signs with: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY if set, else the local admin key (fromLocal).
func (g *globals) signingKey() (k auth.Key, fromLocal bool, err error) {
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		return auth.Key{AccessKeyID: id, SecretAccessKey: secret}, false, nil
	}
	k, err = g.local().Load()
	return k, err == nil, err
}

func defaultDataDir() string {
	if d := os.Getenv("VESSEL_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".vessel"
	}
	return filepath.Join(home, ".vessel")
}

func defaultEndpoint() string {
	if e := os.Getenv("VESSEL_ENDPOINT"); e != "" {
		return e
	}
	return "http://" + DefaultListen
}

// NewRootCommand returns the `vessel` command with every verb.
func NewRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "vessel",
		Short:         "Vessel: serverless containers on your own machines",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.endpoint, "endpoint", defaultEndpoint(), "control plane URL (env VESSEL_ENDPOINT)")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", defaultDataDir(), "data directory (env VESSEL_DATA_DIR); the CLI reads access keys from it unless AWS_ACCESS_KEY_ID is set")
	root.PersistentFlags().StringVar(&g.masterKeyFile, "encryption-key-file", envOr("VESSEL_ENCRYPTION_KEY_FILE", os.Getenv("VESSEL_MASTER_KEY_FILE")), "file of the 32-byte master key that seals access keys at rest (env VESSEL_ENCRYPTION_KEY_FILE; alias --master-key-file); default <data-dir>/master.key, created by the server's first start; with --etcd every replica must be given the same file")
	// --master-key-file is the flag's former name, still accepted.
	root.SetGlobalNormalizationFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "master-key-file" {
			name = "encryption-key-file"
		}
		return pflag.NormalizedName(name)
	})
	root.PersistentFlags().StringVar(&g.region, "region", envOr("AWS_DEFAULT_REGION", "us-east-1"), "region used in ARNs and signatures")
	root.AddCommand(
		newServerCommand(g),
		newAgentCommand(g),
		newHostCommand(g),
		newRunCommand(g),
		newPsCommand(g),
		newServiceCommand(g),
		newDescribeCommand(g),
		newStopCommand(g),
		newProfileCommand(g),
		newCredentialsCommand(g),
		newLogsCommand(g),
		newExecCommand(g),
		newImageCommand(g),
		NewSizeCommand(),
		newK8sCommand(g),
		newStoreCommand(g),
	)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute(args []string) int {
	root := NewRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	fmt.Fprintln(os.Stderr, "vessel:", describeError(err))
	return 1
}

// exitCode makes Execute exit with a given code and print nothing.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// describeError shortens AWS SDK errors to "Code: message".
func describeError(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// awsConfig returns the SDK configuration: credentials from the environment
// if set, else from the data directory.
func (g *globals) awsConfig() (aws.Config, error) {
	var creds aws.CredentialsProvider
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		creds = credentials.NewStaticCredentialsProvider(id, secret, os.Getenv("AWS_SESSION_TOKEN"))
	} else {
		k, err := g.local().Load()
		if err != nil {
			return aws.Config{}, err
		}
		creds = credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")
	}
	cfg := aws.Config{Region: g.region, Credentials: creds, RetryMaxAttempts: 3, HTTPClient: awsclient.HTTPClient(nil)}
	// An https control plane is trusted through AWS_CA_BUNDLE or the data
	// directory's tls/ca.crt, as the aws CLI trusts AWS_CA_BUNDLE.
	tlsCfg, err := g.tlsConfig()
	if err != nil {
		return aws.Config{}, err
	}
	if tlsCfg != nil {
		cfg.HTTPClient = awsclient.HTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.TLSClientConfig = tlsCfg }))
	}
	return cfg, nil
}

func (g *globals) ecsClient() (*ecs.Client, error) {
	cfg, err := g.awsConfig()
	if err != nil {
		return nil, err
	}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(g.endpoint) }), nil
}

func (g *globals) eksClient() (*eks.Client, error) {
	cfg, err := g.awsConfig()
	if err != nil {
		return nil, err
	}
	return eks.NewFromConfig(cfg, func(o *eks.Options) { o.BaseEndpoint = aws.String(g.endpoint) }), nil
}

// addOutputFlag adds -o/--output (table or json).
func addOutputFlag(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
}

func (g *globals) checkOutput() error {
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("output format %q is not known: use table or json", g.output)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// newLogger returns the process's slog logger at the given level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q is not known: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func background() context.Context { return context.Background() }
