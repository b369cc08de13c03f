package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// DefaultCluster always exists.
const DefaultCluster = task.DefaultCluster

// DefaultSubnet is the subnet tasks use when they name none.
const DefaultSubnet = "subnet-default"

// Config configures the control plane.
type Config struct {
	// Store holds everything. Required.
	Store store.Store
	// Keys are the access keys that may sign requests; or Keyring. Keys[0]
	// also signs the control plane's calls to remote agents (logs, exec).
	Keys []auth.Key
	// Keyring holds the keys that may sign requests; it takes precedence
	// over Keys. One of the two is required.
	Keyring auth.Keyring
	// Region and AccountID appear in ARNs; us-east-1 and a fixed
	// 12-digit account by default.
	Region    string
	AccountID string
	// Subnets the control plane knows; DefaultSubnet when empty, the
	// names of Fleet.Subnets when those are given.
	Subnets []string
	// Fleet defines the fleet's subnets (each host serving one gets a
	// slice of it, slices.go) and the network between its hosts.
	Fleet FleetNetwork
	// RegistryCredentials are the execution role's registry credentials,
	// by name (what a task definition's repositoryCredentials names) or by
	// registry host (used for any image of that registry).
	RegistryCredentials map[string]task.RegistryAuth
	// StoppedTaskRetention is how long STOPPED tasks stay visible; 1 h by
	// default.
	StoppedTaskRetention time.Duration
	// PendingTimeout is how long a task may wait for capacity before it is
	// stopped with TaskFailedToStart; 5 min by default.
	PendingTimeout time.Duration
	// HostTimeout is how long a host may miss heartbeats before it is lost
	// and its tasks stopped; 60 s by default.
	HostTimeout time.Duration
	// ControllerInterval is the controller's periodic pass; 1 s by default.
	// It also runs whenever tasks or hosts change.
	ControllerInterval time.Duration
	// TaskDNS, when set, gives the resolver configuration of an ECS task
	// of the cluster (RunTask): the control plane's DNS server and the
	// cluster's zone as search domain (internal/discovery). nil, or a nil
	// result, leaves tasks with their host's resolvers.
	TaskDNS func(cluster string) *task.DNSConfig
	// APIRate and APIBurst bound each access key's requests (per second,
	// and the bucket's size); an APIRate of 0 means no limit. `vessel
	// server` uses DefaultAPIRate and DefaultAPIBurst.
	APIRate  float64
	APIBurst int
	// LaunchRate and LaunchBurst bound task launches of the control plane
	// (tasks per second, and the bucket's size) as Fargate's do; a
	// LaunchRate of 0 means no limit. `vessel server` uses
	// DefaultLaunchRate and DefaultLaunchBurst.
	LaunchRate  float64
	LaunchBurst int
	// ServiceThrottle slows down services whose tasks keep failing to
	// start; defaults as ECS's.
	ServiceThrottle ServiceThrottle
	// SecretsSealer, when set, is the key of the secrets store kept in
	// Store (internal/secrets), apart from the access keys' master key:
	// the control plane then serves the Secrets Manager and SSM Parameter
	// Store APIs (X-Amz-Target secretsmanager.* and AmazonSSM.*) and
	// resolves tasks' secrets for their hosts' agents; nil refuses both.
	SecretsSealer *auth.Sealer
	// Logs configures the log store (internal/cwlogs) behind the
	// CloudWatch Logs API and the awslogs driver; Store, Region,
	// AccountID, Logger and Now are the server's own.
	Logs cwlogs.Config
	// Leadership says when this replica runs the controllers; nil:
	// AlwaysLeader (a single process). Replicas on one etcd share the
	// etcd store's Elector, so that exactly one runs them, its writes
	// fenced by its leadership.
	Leadership Leadership
	Logger     *slog.Logger
	Now        func() time.Time
}

// Server is the control plane.
type Server struct {
	cfg   Config
	store store.Store
	// own is what the replica knows of its own writes through store.
	own    *ownWrites
	log    *slog.Logger
	verify *auth.Verifier
	// keyring is what verify looks keys up in, and what the credential
	// routes manage (credMu serialises those).
	keyring auth.Keyring
	credMu  sync.Mutex
	metrics *metrics

	apiLimiter *keyLimiter   // nil: no request limit
	launches   *launchBucket // nil: no launch limit
	// caPEM and caHash are the CA the API's certificate chains to and its
	// SubjectPublicKeyInfo hash (SetTLS); empty on plain HTTP.
	caPEM   []byte
	caHash  string
	started time.Time

	// pulse is closed and replaced whenever a task or host changes; the
	// controller and agents' long polls wait on it.
	pulseMu sync.Mutex
	pulse   chan struct{}

	// unplaced remembers why pending tasks could not be placed, for the
	// message of a later TaskFailedToStart.
	unplacedMu sync.Mutex
	unplaced   map[string]string

	// tasks mirrors the stored tasks for the controller and long polls.
	tasks *taskCache
	// secrets is the secrets store; nil without Config.SecretsSealer.
	secrets *secrets.Service
	// cwlogs is the log store of the awslogs driver and the CloudWatch
	// Logs API.
	cwlogs *cwlogs.Service
	// names are the tasks' names for the hosts' DNS servers (names.go).
	names namesCache

	logs  logSources
	execs execers

	// heartbeats are when this replica last heard from each host;
	// hbStored when it last stored one (hosts.go).
	hbMu       sync.Mutex
	heartbeats map[string]time.Time
	hbStored   map[string]time.Time

	leader leaderState

	// netChanges counts the changes of the hosts' and slices' records
	// seen (slices.go): HostNetwork's long polls look again when it moves.
	netChanges atomic.Int64
}

// New checks cfg and returns a control plane; nothing runs until Run and
// Handler are used.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errdefs.InvalidArgument("server: Store is required")
	}
	if len(cfg.Keys) == 0 && cfg.Keyring == nil {
		return nil, errdefs.InvalidArgument("server: at least one access key is required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "000000000000"
	}
	if len(cfg.AccountID) != 12 {
		return nil, errdefs.InvalidArgument("server: AccountID %q must have 12 digits", cfg.AccountID)
	}
	if err := cfg.Fleet.fill(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if names := cfg.Fleet.names(); len(names) > 0 {
		if len(cfg.Subnets) > 0 && !slices.Equal(cfg.Subnets, names) {
			return nil, errdefs.InvalidArgument("server: Subnets %v are not the names of Fleet.Subnets %v; give one of the two", cfg.Subnets, names)
		}
		cfg.Subnets = names
	}
	if len(cfg.Subnets) == 0 {
		cfg.Subnets = []string{DefaultSubnet}
	}
	if cfg.StoppedTaskRetention <= 0 {
		cfg.StoppedTaskRetention = time.Hour
	}
	if cfg.PendingTimeout <= 0 {
		cfg.PendingTimeout = 5 * time.Minute
	}
	if cfg.HostTimeout <= 0 {
		cfg.HostTimeout = 60 * time.Second
	}
	if cfg.ControllerInterval <= 0 {
		cfg.ControllerInterval = time.Second
	}
	if cfg.APIRate < 0 || cfg.LaunchRate < 0 || cfg.APIBurst < 0 || cfg.LaunchBurst < 0 {
		return nil, errdefs.InvalidArgument("server: APIRate %g, APIBurst %d, LaunchRate %g and LaunchBurst %d must not be negative (0 rate: no limit)",
			cfg.APIRate, cfg.APIBurst, cfg.LaunchRate, cfg.LaunchBurst)
	}
	if cfg.APIRate > 0 && cfg.APIBurst == 0 {
		cfg.APIBurst = max(1, int(2*cfg.APIRate))
	}
	if cfg.LaunchRate > 0 && cfg.LaunchBurst == 0 {
		cfg.LaunchBurst = max(1, int(5*cfg.LaunchRate))
	}
	if cfg.LaunchRate > 0 && cfg.LaunchBurst < MaxRunTaskCount {
		return nil, errdefs.InvalidArgument("server: LaunchBurst %d is smaller than RunTask's largest count %d: such a RunTask could never launch",
			cfg.LaunchBurst, MaxRunTaskCount)
	}
	if err := cfg.ServiceThrottle.Fill(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Leadership == nil {
		cfg.Leadership = AlwaysLeader{}
	}
	ring := cfg.Keyring
	if ring == nil {
		if _, err := auth.NewVerifier(auth.VerifierConfig{Keys: cfg.Keys}); err != nil {
			return nil, err
		}
		ring = &hostKeyring{fixed: auth.NewStaticKeyring(cfg.Keys...), store: cfg.Store}
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Keyring: ring, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	own := &ownWrites{}
	s := &Server{cfg: cfg, own: own, store: timedStore{Store: cfg.Store, m: m, own: own}, log: cfg.Logger, verify: v, keyring: ring, metrics: m,
		started: cfg.Now(), pulse: make(chan struct{}), unplaced: map[string]string{},
		heartbeats: map[string]time.Time{}, hbStored: map[string]time.Time{}, tasks: newTaskCache(),
		apiLimiter: newKeyLimiter(cfg.APIRate, cfg.APIBurst), launches: newLaunchBucket(cfg.LaunchRate, cfg.LaunchBurst)}
	if cfg.SecretsSealer != nil {
		if s.secrets, err = secrets.New(secrets.Config{Store: cfg.Store, Sealer: cfg.SecretsSealer, Region: cfg.Region,
			AccountID: cfg.AccountID, Logger: cfg.Logger, Now: cfg.Now}); err != nil {
			return nil, err
		}
	}
	lc := cfg.Logs
	lc.Store, lc.Region, lc.AccountID, lc.Logger, lc.Now = cfg.Store, cfg.Region, cfg.AccountID, cfg.Logger, cfg.Now
	if s.cwlogs, err = cwlogs.New(lc); err != nil {
		return nil, err
	}
	if err := s.ensureDefaultCluster(context.Background()); err != nil {
		return nil, err
	}
	m.reg.MustRegister(newWarmPoolCollector(s)) // warmpools.go
	return s, nil
}

// Handler returns the HTTP handler: /healthz and /metrics unauthenticated,
// everything else SigV4-signed and allowed by the signing key's policy
// (authorize.go): the ECS JSON API (POST / with X-Amz-Target),
// the EKS REST API (/clusters...) and the agent protocol (/agent/v1/...).
// After verification each access key's requests, but the agent protocol's,
// take a token of its bucket (APIRate).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler())
	s.routeJoin(mux)
	api := http.NewServeMux()
	api.HandleFunc("POST /{$}", s.serveECS)
	s.routeEKS(api)
	s.routeAgent(api)
	s.routeWarmPools(api)
	s.routeNames(api)
	s.routeTaskSecrets(api)
	s.routeTaskLogEvents(api)
	s.routeLogs(api)
	s.routeExec(api)
	s.routeBridge(api)
	s.routeCredentials(api)
	s.routeHostAdmin(api)
	s.routeHosts(api)
	api.HandleFunc("/", s.noRoute)
	mux.Handle("/", s.verify.Middleware(s.throttle(s.authorize(api)), s.writeAuthError))
	return s.metrics.instrument(s.cleanPaths(mux))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.store.List(r.Context(), "meta/"); err != nil {
		http.Error(w, "store unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	role := "follower"
	if s.IsLeader() {
		role = "leader"
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Vessel-Role", role)
	fmt.Fprintf(w, "ok\nrole: %s\n", role)
}

// notify wakes the controller and agents' long polls.
func (s *Server) notify() {
	s.pulseMu.Lock()
	close(s.pulse)
	s.pulse = make(chan struct{})
	s.pulseMu.Unlock()
}

func (s *Server) pulseChan() <-chan struct{} {
	s.pulseMu.Lock()
	defer s.pulseMu.Unlock()
	return s.pulse
}

// Run runs the store watch, and the controllers while this replica leads
// (Config.Leadership), until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.watchStore(ctx)
	}()
	go func() {
		defer wg.Done()
		s.cwlogs.Run(ctx)
	}()
	s.runControllers(ctx)
	wg.Wait()
	return nil
}

// watchStore keeps the task cache and turns store changes, including those
// made by other control plane replicas, into pulses.
func (s *Server) watchStore(ctx context.Context) {
	for ctx.Err() == nil {
		kvs, rev, err := s.store.List(ctx, "")
		if err != nil {
			s.log.Error("store watch: listing failed", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		s.tasks.reset(kvs, rev)
		s.networkChanged() // changes may have been missed meanwhile
		ch, err := s.store.Watch(ctx, "", rev)
		if err != nil {
			s.log.Error("store watch failed", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		apply := func(ev store.Event) {
			s.tasks.apply(ev)
			if isNetworkKey(ev.KV.Key) {
				s.networkChanged()
			}
		}
		for ev := range ch {
			apply(ev)
			// Coalesce: apply what is already queued before waking anyone.
			for more := true; more; {
				select {
				case ev, ok := <-ch:
					if !ok {
						more = false
						break
					}
					apply(ev)
				default:
					more = false
				}
			}
			s.notify()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// newID returns a 32-hex-digit ID, as ECS task IDs are.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// newToken returns a short random string for resource IDs.
func newToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, n)
	for i := range out {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		out[i] = alphabet[k.Int64()]
	}
	return string(out)
}
