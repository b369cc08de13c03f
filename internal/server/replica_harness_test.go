package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/sim"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
)

// replicaConfig is what the control plane replicas of a test differ in;
// every replica of a set shares the one etcd, key prefix and admin key.
type replicaConfig struct {
	// members is the size of the etcd cluster (three when zero).
	members int
	// lease, when set, has the replicas elect a leader on etcd with leases
	// this long; leadership, when set, is every replica's Leadership
	// instead. With neither, each replica runs the controllers.
	lease      time.Duration
	leadership server.Leadership
	// keyring has each replica keep its keys in a keyring on the store,
	// sealed with the master key all of them are given, as a vessel server
	// on etcd does; without it each is given the admin key alone.
	keyring bool
	// lagging wraps each replica's store in a laggingStore, whose watch
	// the test can hold back.
	lagging     bool
	hostTimeout time.Duration
	// idle leaves the replicas' controllers stopped (their API answers)
	// until the test calls start.
	idle bool
}

// replica is one control plane process's worth of server (and keyring)
// on the shared etcd, reached through its HTTP endpoint as env is.
type replica struct {
	*env
	// lag is the replica's store when replicaConfig.lagging, else nil.
	lag *laggingStore
	// hooks counts the OnLeadership functions running now.
	hooks atomic.Int32
	// start runs the replica's server (and keyring); stop ends it, as its
	// process would end. stop may be called more than once.
	start, stop func()
}

// replicaPrefix is the etcd key prefix of the test's replicas.
func replicaPrefix(t *testing.T) string {
	return fmt.Sprintf("/vessel-%s/", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
}

// startReplicas starts n replicas on a new etcd cluster, as cfg says.
func startReplicas(t *testing.T, n int, cfg replicaConfig) []*replica {
	t.Helper()
	if cfg.members == 0 {
		cfg.members = 3
	}
	cluster := etcdtest.Start(t, cfg.members)
	dir := t.TempDir()
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sealer *auth.Sealer
	if cfg.keyring {
		if sealer, _, err = auth.LoadMasterKey(filepath.Join(dir, auth.MasterKeyFile), true); err != nil {
			t.Fatal(err)
		}
	}
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = startReplica(t, cluster.Endpoints(), fmt.Sprintf("replica-%d", i), cfg, sealer, keys[0])
	}
	return rs
}

// startReplica starts the replica called name on the etcd at endpoints.
func startReplica(t *testing.T, endpoints []string, name string, cfg replicaConfig, sealer *auth.Sealer, admin auth.Key) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	es, err := etcd.Open(ctx, etcd.Config{Endpoints: endpoints, Prefix: replicaPrefix(t), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{}
	var st store.Store = es
	if cfg.lagging {
		r.lag = newLaggingStore(es)
		st = r.lag
	}
	scfg := server.Config{Store: st, Keys: []auth.Key{admin}, Leadership: cfg.leadership,
		ControllerInterval: 50 * time.Millisecond, HostTimeout: cfg.hostTimeout, Logger: quietLogger()}
	if cfg.lease != 0 {
		if scfg.Leadership, err = es.NewElector(etcd.ElectorConfig{Lease: cfg.lease, Name: name, Logger: quietLogger()}); err != nil {
			t.Fatal(err)
		}
	}
	var ring *keyring.Keyring
	if cfg.keyring {
		if ring, err = keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer, Logger: quietLogger()}); err != nil {
			t.Fatal(err)
		}
		if err := ring.Put(ctx, admin); err != nil {
			t.Fatal(err)
		}
		scfg.Keyring = ring
	}
	srv, err := server.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnLeadership(func(ctx context.Context) {
		r.hooks.Add(1)
		defer r.hooks.Add(-1)
		<-ctx.Done()
	})
	hs := httptest.NewServer(srv.Handler())
	r.env = &env{t: t, srv: srv, url: hs.URL, key: admin}
	r.ecs, r.eks = r.clients(admin)
	var wg sync.WaitGroup
	r.start = func() {
		if ring != nil {
			wg.Add(1)
			go func() { defer wg.Done(); ring.Run(ctx) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); srv.Run(ctx) }()
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			// As a replica whose process ends: its connections close.
			hs.CloseClientConnections()
			hs.Close()
			cancel()
			if r.lag != nil {
				r.lag.release()
			}
			wg.Wait()
			es.Close()
		})
	}
	t.Cleanup(r.stop)
	if !cfg.idle {
		r.start()
	}
	return r
}

// startSimAgent runs the agent of host h1 (2 CPUs, 4 GiB, the sim
// runtime), reporting to cp, until the test ends; retry is its pause after
// a failed call (its default when zero). It returns the host's runtime and
// that runtime's state directory.
func startSimAgent(t *testing.T, cp agentproto.ControlPlane, retry time.Duration) (*sim.Runtime, string) {
	t.Helper()
	return startSimAgentAs(t, "h1", cp, retry)
}

// startSimAgentAs is startSimAgent for host id.
func startSimAgentAs(t testing.TB, id string, cp agentproto.ControlPlane, retry time.Duration) (*sim.Runtime, string) {
	t.Helper()
	simDir := filepath.Join(t.TempDir(), "sim")
	rt, err := sim.New(sim.Config{StateDir: simDir})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Host:         agentproto.Host{ID: id, MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}},
		ControlPlane: cp, Runtimes: map[string]runtime.Runtime{"sim": rt}, HeartbeatInterval: 100 * time.Millisecond,
		RetryInterval: retry, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return rt, simDir
}

// leaderOf waits until exactly one of rs says it leads, and returns it.
func leaderOf(t *testing.T, rs []*replica, timeout time.Duration) int {
	t.Helper()
	leader := -1
	testutil.Eventually(t, timeout, func() error {
		var leaders []int
		for i, r := range rs {
			if healthRole(t, r.url) == "leader" {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("replicas that say they lead: %v, want exactly one", leaders)
		}
		leader = leaders[0]
		return nil
	})
	return leader
}

// laggingStore is one replica's handle on the shared store whose watch
// can be held back: a replica whose watch lags behind the writes another
// replica acknowledged, made to last as long as the test needs.
type laggingStore struct {
	store.Store
	mu   sync.Mutex
	gate chan struct{} // closed while events flow
}

func newLaggingStore(st store.Store) *laggingStore {
	g := make(chan struct{})
	close(g)
	return &laggingStore{Store: st, gate: g}
}

// hold stops delivering watch events until release.
func (l *laggingStore) hold() {
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
}

func (l *laggingStore) release() {
	l.mu.Lock()
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
	l.mu.Unlock()
}

func (l *laggingStore) Watch(ctx context.Context, prefix string, after int64) (<-chan store.Event, error) {
	in, err := l.Store.Watch(ctx, prefix, after)
	if err != nil {
		return nil, err
	}
	out := make(chan store.Event)
	go func() {
		defer close(out)
		for ev := range in {
			l.mu.Lock()
			gate := l.gate
			l.mu.Unlock()
			select {
			case <-gate:
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
