package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/store/etcd"
)

// storeFile is the bbolt store's file in the data directory.
const storeFile = "vessel.db"

// etcdOptions are the flags that put the store on etcd.
type etcdOptions struct {
	endpoints []string
	cacert    string
	cert      string
	key       string
	prefix    string
}

func (o *etcdOptions) addFlags(f *pflag.FlagSet) {
	f.StringSliceVar(&o.endpoints, "etcd", nil, "client URLs of the etcd members that keep the store, comma-separated (e.g. https://10.0.0.1:2379,https://10.0.0.2:2379); without it the store is bbolt in the data directory")
	f.StringVar(&o.cacert, "etcd-cacert", "", "PEM bundle of the CA that signed the etcd members' certificates (with https:// URLs; default: the system's)")
	f.StringVar(&o.cert, "etcd-cert", "", "PEM client certificate to present to etcd (with --etcd-key)")
	f.StringVar(&o.key, "etcd-key", "", "PEM key of --etcd-cert")
	f.StringVar(&o.prefix, "etcd-prefix", etcd.DefaultPrefix, "prefix of every key in etcd, ending with /, so that several installations can share one etcd")
}

// config checks the flags and returns the etcd store's configuration.
func (o *etcdOptions) config() (etcd.Config, error) {
	if len(o.endpoints) == 0 {
		return etcd.Config{}, errdefs.InvalidArgument("--etcd is empty: give the client URLs of the etcd members, e.g. --etcd https://10.0.0.1:2379,https://10.0.0.2:2379")
	}
	cfg := etcd.Config{Endpoints: o.endpoints, Prefix: o.prefix}
	if o.cacert != "" || o.cert != "" || o.key != "" {
		tlsCfg, err := etcd.TLSConfig(o.cacert, o.cert, o.key)
		if err != nil {
			return etcd.Config{}, err
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

// openStore opens the server's store: on etcd with --etcd, else bbolt in
// dataDir. describe says which, for the log.
func (o *etcdOptions) openStore(ctx context.Context, dataDir string, flags *pflag.FlagSet) (st store.Store, describe string, err error) {
	if len(o.endpoints) == 0 {
		for _, name := range []string{"etcd-cacert", "etcd-cert", "etcd-key", "etcd-prefix"} {
			if flags.Changed(name) {
				return nil, "", errdefs.InvalidArgument("--%s is given without --etcd: give --etcd URL,... to keep the store on etcd, or drop it to keep it in the data directory", name)
			}
		}
		path := filepath.Join(dataDir, storeFile)
		b, err := bolt.Open(bolt.Config{Path: path})
		if err != nil {
			return nil, "", fmt.Errorf("opening the store in %s: %w (is another vessel server using this data directory?)", dataDir, err)
		}
		return b, "bbolt " + path, nil
	}
	cfg, err := o.config()
	if err != nil {
		return nil, "", err
	}
	s, err := etcd.Open(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	return s, s.Name(), nil
}

func newStoreCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Manage the control plane's store",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStoreMigrateCommand(g))
	return cmd
}

// migrateOptions are the flags of `vessel store migrate`.
type migrateOptions struct {
	from string
	etcd etcdOptions
}

func newStoreMigrateCommand(g *globals) *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate --from DATA_DIR --etcd URL[,URL...]",
		Short: "Copy a stopped server's store from its data directory into etcd",
		Long: `Copies every record of the bbolt store of a stopped single-process
installation (tasks, task definitions, clusters, services, profiles, hosts,
access keys, join tokens, ...) into etcd under --etcd-prefix, then reads the
copy back and checks it record by record. It refuses a prefix that already
holds records, and a data directory whose server is running.

The access keys stay sealed under the installation's master key: give that
file (DATA_DIR/master.key unless --encryption-key-file said otherwise) to
every server started with --etcd.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStoreMigrate(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "data directory of the stopped installation whose store is copied")
	o.etcd.addFlags(f)
	return cmd
}

func runStoreMigrate(cmd *cobra.Command, g *globals, o *migrateOptions) error {
	if o.from == "" {
		return errdefs.InvalidArgument("--from is empty: give the data directory of the stopped installation, e.g. --from ~/.vessel")
	}
	cfg, err := o.etcd.config()
	if err != nil {
		return err
	}
	path := filepath.Join(o.from, storeFile)
	if _, err := os.Stat(path); err != nil {
		return errdefs.InvalidArgument("--from %s: no store there (%v); give the data directory of a vessel server that ran with bbolt", o.from, err)
	}
	src, err := bolt.Open(bolt.Config{Path: path, Timeout: time.Second})
	if errdefs.IsUnavailable(err) {
		return errdefs.Unavailable("the store %s is locked: the vessel server of %s is running; stop it first, so that nothing changes during the copy", path, o.from)
	}
	if err != nil {
		return err
	}
	defer src.Close()
	ctx := cmd.Context()
	dst, err := etcd.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer dst.Close()
	n, err := store.Copy(ctx, dst, src)
	if errdefs.IsAlreadyExists(err) {
		return errdefs.AlreadyExists("%s already holds records: migrate only into an empty prefix (choose another --etcd-prefix, or empty this one)", dst.Name())
	}
	if err != nil {
		return fmt.Errorf("migrating %s into %s: %w (after %d records)", path, dst.Name(), err, n)
	}
	keyFile := auth.Local{DataDir: o.from, MasterKeyFile: cmp.Or(g.masterKeyFile, recordedKeyFile(o.from))}.MasterKeyPath()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Copied %d records from %s into %s, and verified each.\n", n, path, dst.Name())
	fmt.Fprintf(out, "The access keys in it are sealed under the master key %s: give that file to every server on this etcd:\n", keyFile)
	fmt.Fprintf(out, "  vessel server --etcd %s --etcd-prefix %s --encryption-key-file %s ...\n", strings.Join(o.etcd.endpoints, ","), cfg.Prefix, keyFile)
	if _, err := os.Stat(keyFile); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v: without the master key the copied access keys cannot be opened\n", err)
	}
	return nil
}
