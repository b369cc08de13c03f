package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/httpserve"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd"
	"vessel.dev/vessel/internal/task"
)

// serverOptions are the flags of `vessel server`.
type serverOptions struct {
	listen               string
	noAgent              bool
	pendingTimeout       time.Duration
	stoppedTaskRetention time.Duration
	hostTimeout          time.Duration
	leaderLease          time.Duration
	logLevel             string
	registryCredentials  string
	secretsKeyFile       string
	logsRetention        time.Duration
	logsDay              time.Duration
	logsMaxGroupBytes    int64
	apiRate              float64
	apiBurst             int
	launchRate           float64
	launchBurst          int
	fleetNetwork         string
	vxlanVNI             int
	vxlanPort            int
	host                 hostOptions
	k8s                  k8sOptions
	kubeProxy            kubeProxyOptions
	dns                  dnsOptions
	tls                  serverTLSOptions
	etcd                 etcdOptions
}

func newServerCommand(g *globals) *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane, with an in-process host agent unless --no-agent",
		Long: `Runs Vessel's control plane: the ECS- and EKS-compatible API (SigV4-signed),
the store (bbolt in the data directory, or etcd with --etcd), the scheduler and the task
lifecycle, and, unless --no-agent, a host agent for this machine.

On first start it creates the admin access key, its secret sealed under a
master key in the data directory (never printed nor logged): ` + "`vessel credentials`" + `
prints it as export lines; ` + "`vessel credentials create`" + ` makes keys with
narrower policies. The data directory is made 0700 at every start.

With --etcd the records live in etcd (under --etcd-prefix) and the data
directory keeps only this machine's files; the master key
(--encryption-key-file) must be the same file on every server of one etcd.
The first server makes the admin access key; every other saves that same key
in its data directory, so ` + "`vessel credentials`" + ` prints it on any of them.
` + "`vessel store migrate`" + ` moves a bbolt installation there. Any number of
servers (--no-agent) on one etcd serve the API; one at a time, elected
through etcd with a lease of --leader-lease, runs the controllers (its
/healthz says "role: leader"), its writes fenced by its leadership.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", DefaultListen, "address the API listens on")
	f.BoolVar(&o.noAgent, "no-agent", false, "run the control plane only; hosts join with `vessel agent --server URL`")
	f.DurationVar(&o.pendingTimeout, "pending-timeout", 5*time.Minute, "how long a task waits for capacity before it is stopped with TaskFailedToStart")
	f.DurationVar(&o.stoppedTaskRetention, "stopped-task-retention", time.Hour, "how long STOPPED tasks stay visible")
	f.DurationVar(&o.hostTimeout, "host-timeout", time.Minute, "how long a host may miss heartbeats before its tasks are stopped")
	f.DurationVar(&o.leaderLease, "leader-lease", etcd.DefaultLeaderLease, "with --etcd: the lease of the replicas' leader election (whole seconds); a leader that stops renewing it is succeeded within this time")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.registryCredentials, "registry-credentials", "", `JSON file of registry credentials, {"NAME or registry host": {"username": "...", "password": "..."}}: what task definitions' repositoryCredentials name, and the execution role's credentials per registry`)
	f.StringVar(&o.secretsKeyFile, "secrets-key-file", "", "the key (32 random bytes, mode 0600) that seals the values of the Secrets Manager and SSM Parameter Store APIs in the store; made on first start; default DATA_DIR/"+secrets.KeyFile+"; with --etcd the same file on every server")
	f.DurationVar(&o.logsRetention, "logs-retention", cwlogs.DefaultRetention, "how long the log store keeps the events of a log group without a retention policy (awslogs, CloudWatch Logs API)")
	f.Int64Var(&o.logsMaxGroupBytes, "logs-max-group-bytes", cwlogs.DefaultMaxGroupBytes, "the bytes of events a log group keeps (storedBytes): beyond, its oldest events are dropped, and the server's log says so")
	f.DurationVar(&o.logsDay, "logs-day", 24*time.Hour, "the length of a day of a log group's retentionInDays: shorter only to test retention")
	f.Float64Var(&o.apiRate, "api-rate", server.DefaultAPIRate, "requests a second each access key may make, sustained (ECS and EKS APIs, logs, exec; not the hosts' agent protocol); 0: no limit")
	f.IntVar(&o.apiBurst, "api-burst", server.DefaultAPIBurst, "requests an access key may make at once, the size of its token bucket")
	f.Float64Var(&o.launchRate, "launch-rate", server.DefaultLaunchRate, "tasks a second the control plane launches, sustained, as Fargate (RunTask, services, pods); 0: no limit")
	f.IntVar(&o.launchBurst, "launch-burst", server.DefaultLaunchBurst, "tasks the control plane launches at once, the size of its token bucket (at least 10, RunTask's largest count)")
	o.host.addFlags(cmd, true)
	f.StringVar(&o.fleetNetwork, "fleet-network", agentproto.BackendVXLAN, "how task traffic goes between the fleet's hosts: vxlan (encapsulated in UDP, wherever hosts reach each other over IP) or host-gw (routes through each host's address, hosts on one L2 segment)")
	f.IntVar(&o.vxlanVNI, "vxlan-vni", server.DefaultVNI, "with --fleet-network vxlan: the VXLAN network identifier of the fleet's tasks")
	f.IntVar(&o.vxlanPort, "vxlan-port", server.DefaultVXLANPort, "with --fleet-network vxlan: the UDP port of the encapsulated traffic between hosts")
	o.k8s.addFlags(cmd, true)
	o.kubeProxy.addFlags(cmd, false)
	o.dns.addFlags(cmd, true)
	o.tls.addFlags(cmd)
	o.etcd.addFlags(cmd.Flags())
	return cmd
}

func runServer(cmd *cobra.Command, g *globals, o *serverOptions) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	o.kubeProxy.kubeconfig = o.k8s.kubeconfig
	if err := o.kubeProxy.validate(); err != nil {
		return err
	}
	if err := o.host.parseWarmPools(); err != nil {
		return err
	}
	if o.noAgent && slices.ContainsFunc(slices.Collect(maps.Values(o.host.warmPools)), func(n int) bool { return n > 0 }) {
		return errdefs.InvalidArgument("--warm-pool is given with --no-agent: the pools are this server's own host's, which runs no tasks; drop --warm-pool, or give it to the agents (vessel agent --warm-pool)")
	}
	if o.kubeProxy.binary != "" && o.noAgent {
		return errdefs.InvalidArgument("--kube-proxy is given with --no-agent: it serves the sandboxes of this server's own host, which runs none; drop --kube-proxy, or give it to the agents (vessel agent --kube-proxy BIN --kubeconfig FILE)")
	}
	if err := prepareDataDir(g.dataDir); err != nil {
		return err
	}
	st, storeName, err := o.etcd.openStore(cmd.Context(), g.dataDir, cmd.Flags())
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("store opened", "store", storeName)
	leadership, err := o.leadership(st, cmd)
	if err != nil {
		return err
	}
	ringCtx, stopRing := context.WithCancel(context.Background())
	defer stopRing()
	ring, localKey, created, err := openKeyring(ringCtx, g.local(), st, log)
	if err != nil {
		return err
	}
	go ring.Run(ringCtx)
	fleet, err := parseSubnets(o.host.subnets, false)
	if err != nil {
		return err
	}
	subnets := networkSubnets(fleet)
	creds, err := loadRegistryCredentials(o.registryCredentials)
	if err != nil {
		return err
	}
	dns, err := o.dns.plan(subnets)
	if err != nil {
		return err
	}
	secretsKey := o.secretsKeyFile
	if secretsKey == "" {
		secretsKey = filepath.Join(g.dataDir, secrets.KeyFile)
	}
	secretsSealer, _, err := auth.LoadMasterKey(secretsKey, true)
	if err != nil {
		return fmt.Errorf("the secrets key (--secrets-key-file): %w", err)
	}
	srv, err := server.New(server.Config{Store: st, Keyring: ring, Keys: []auth.Key{localKey}, Region: g.region, SecretsSealer: secretsSealer, Fleet: server.FleetNetwork{Subnets: fleet, Backend: o.fleetNetwork, VNI: o.vxlanVNI, Port: o.vxlanPort},
		RegistryCredentials: creds,
		PendingTimeout:      o.pendingTimeout, StoppedTaskRetention: o.stoppedTaskRetention,
		HostTimeout: o.hostTimeout, TaskDNS: dns.taskDNS, Logger: log, Leadership: leadership,
		APIRate: o.apiRate, APIBurst: o.apiBurst, LaunchRate: o.launchRate, LaunchBurst: o.launchBurst,
		Logs: cwlogs.Config{DefaultRetention: o.logsRetention, Day: o.logsDay, MaxGroupBytes: o.logsMaxGroupBytes}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	tlsOn, err := o.tls.setUp(g.dataDir, ln)
	if err != nil {
		ln.Close()
		return err
	}
	srv.SetTLS(tlsOn.caPEM, tlsOn.caHash)
	endpoint := endpointURL(ln, tlsOn.config != nil)
	out := cmd.ErrOrStderr()
	if tlsOn.config != nil {
		if tlsOn.generated {
			fmt.Fprintf(out, "The API speaks TLS with a certificate of this server's own CA (%s).\n", caBundlePath(g.dataDir))
		}
		fmt.Fprintf(out, "CA fingerprint (SHA-256): %s\nCA public key hash (what agents pin): %s\n", tlsOn.caFingerprint, tlsOn.caHash)
		ln = tls.NewListener(ln, tlsOn.config)
	}
	if created {
		fmt.Fprintf(out, "Created the admin access key %s, its secret sealed in %s (readable by this user only).\n"+
			"To use the aws CLI or SDKs against Vessel on this machine: eval \"$(vessel credentials --data-dir %s)\"\n"+
			"Keys for other people and tools: vessel credentials create NAME --policy read-only|operator|admin\n",
			localKey.AccessKeyID, g.local().KeyPath(), g.dataDir)
		if tlsOn.generated {
			fmt.Fprintf(out, "export AWS_CA_BUNDLE=%s\n", caBundlePath(g.dataDir))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	httpSrv := httpserve.New(srv.Handler())
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server failed", "err", err)
			stop()
		}
	}()
	// This host's DNS server, fed by the control plane in process: the
	// in-process agent's tasks name it, as a remote agent's name theirs.
	var names *agent.NameFeed
	if dns.serverListens(o.noAgent) {
		if names, err = dns.startNames(ctx, srv, log); err != nil {
			stop()
			httpSrv.Close()
			wg.Wait()
			return err
		}
	}
	o.host.gatewayDNS = dns.gatewayDNS()
	runNames(ctx, &wg, names, o.host.hostID)
	if o.k8s.kubeconfig != "" {
		// With replicas, the bridge runs on the leader only (before Run,
		// so that the first term starts it).
		_, single := leadership.(server.AlwaysLeader)
		if err := startBridge(ctx, &wg, g, &o.k8s, srv, log, stop, !single); err != nil {
			stop()
			httpSrv.Close()
			wg.Wait()
			return err
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Run(ctx)
	}()
	var a *agent.Agent
	if !o.noAgent {
		if host, _, err := net.SplitHostPort(o.listen); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() && !ip.IsLoopback() {
				o.host.addressTarget = net.JoinHostPort(ip.String(), "9") // the address the API listens on
			}
		}
		var names []string
		a, names, err = o.host.newAgent(ctx, g.dataDir, srv, log)
		if err != nil {
			stop()
			httpSrv.Close()
			wg.Wait()
			return err
		}
		fmt.Fprintf(out, "Runtimes on this host: %s\n", strings.Join(names, "; "))
		srv.SetLocalLogSource(a.HostID(), a)
		srv.SetLocalExecer(a.HostID(), a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				log.Error("host agent stopped", "err", err)
			}
		}()
		if err := o.kubeProxy.start(ctx, &wg, g.dataDir, a.HostID(), o.k8s.hostAddress(), subnets, log); err != nil {
			stop()
			httpSrv.Close()
			wg.Wait()
			return err
		}
	}
	log.Info("vessel server ready", "endpoint", endpoint, "data_dir", g.dataDir)
	fmt.Fprintf(out, "Vessel is listening on %s\n", endpoint)
	<-ctx.Done()
	log.Info("shutting down; tasks' sandboxes keep running and are adopted on the next start, warm sandboxes are deleted")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	httpSrv.Shutdown(shutdownCtx)
	wg.Wait()
	if a != nil {
		a.DropPools(context.Background())
	}
	return nil
}

// leadership is how this server decides to run the controllers: on etcd,
// an election among the replicas that share the store; on bbolt, the one
// process always leads.
func (o *serverOptions) leadership(st store.Store, cmd *cobra.Command) (server.Leadership, error) {
	es, ok := st.(*etcd.Store)
	if !ok {
		if cmd.Flags().Changed("leader-lease") {
			return nil, errdefs.InvalidArgument("--leader-lease is given without --etcd: only replicas on etcd elect a leader; drop it, or give --etcd URL,...")
		}
		return server.AlwaysLeader{}, nil
	}
	if o.leaderLease < time.Second {
		return nil, errdefs.InvalidArgument("--leader-lease %v: give at least 1s (default %v)", o.leaderLease, etcd.DefaultLeaderLease)
	}
	return es.NewElector(etcd.ElectorConfig{Lease: o.leaderLease})
}

// loadRegistryCredentials reads the --registry-credentials file.
func loadRegistryCredentials(path string) (map[string]task.RegistryAuth, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry credentials: %w", err)
	}
	var creds map[string]task.RegistryAuth
	if err := json.Unmarshal(data, &creds); err != nil {
		return nil, fmt.Errorf("registry credentials %s: %v; expected {\"NAME or host\": {\"username\": \"...\", \"password\": \"...\"}}", path, err)
	}
	for name, c := range creds {
		if c.Username == "" {
			return nil, fmt.Errorf("registry credentials %s: %q has no username", path, name)
		}
	}
	return creds, nil
}

// prepareDataDir creates the data directory and makes it 0700 whatever
// its mode was: it holds the store, the master key and the sealed keys.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restricting the data directory %s to its owner: %w", dir, err)
	}
	return nil
}

// openKeyring opens the master key (made on first start), the keyring on
// the store, readies the local admin key (keyring.Bootstrap) and records
// the master key file given by flag in the data directory.
func openKeyring(ctx context.Context, local auth.Local, st store.Store, log *slog.Logger) (*keyring.Keyring, auth.Key, bool, error) {
	sealer, _, err := auth.LoadMasterKey(local.MasterKeyPath(), true)
	if err != nil {
		return nil, auth.Key{}, false, err
	}
	ring, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer, Logger: log})
	if err != nil {
		return nil, auth.Key{}, false, otherEncryptionKey(err, local)
	}
	k, created, err := keyring.Bootstrap(ctx, ring, local, log)
	if err != nil {
		return nil, auth.Key{}, false, otherEncryptionKey(err, local)
	}
	if err := recordKeyFile(local); err != nil {
		return nil, auth.Key{}, false, err
	}
	return ring, k, created, nil
}

// otherEncryptionKey says, of a stored key that does not open, which file
// this server was given and which it needs.
func otherEncryptionKey(err error, local auth.Local) error {
	var oe *keyring.OpenError
	if !errors.As(err, &oe) {
		return err
	}
	return fmt.Errorf("%w: the store's access keys were sealed under another encryption key than %s; every server on one store needs the same key: restore that file, or pass --encryption-key-file with the file the first server made (its DATA_DIR/master.key) or was given", err, local.MasterKeyPath())
}
