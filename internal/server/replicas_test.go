package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

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

// apiReplica is one control plane process's worth of server, keyring and
// HTTP endpoint, on the shared etcd.
type apiReplica struct {
	url  string
	srv  *server.Server
	st   *laggingStore
	ecs  *ecs.Client
	stop func()
}

// startReplica starts a replica on the etcd at endpoints under prefix,
// with the master key every replica is given and the admin key.
func startReplica(t *testing.T, endpoints []string, prefix string, sealer *auth.Sealer, admin auth.Key) *apiReplica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	es, err := etcd.Open(ctx, etcd.Config{Endpoints: endpoints, Prefix: prefix, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	st := newLaggingStore(es)
	ring, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Put(ctx, admin); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Keyring: ring, Keys: []auth.Key{admin},
		ControllerInterval: 50 * time.Millisecond, Logger: quietLogger(),
		// These replicas have no elector, so each runs the controllers
		// (leadership_test.go tests replicas that elect a leader): the
		// one the agent does not talk to must not count the host lost
		// while the test runs.
		HostTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ring.Run(ctx) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	r := &apiReplica{url: hs.URL, srv: srv, st: st}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			// As a replica whose process ends: its connections close.
			hs.CloseClientConnections()
			hs.Close()
			cancel()
			st.release()
			wg.Wait()
			es.Close()
		})
	}
	t.Cleanup(r.stop)
	e := &env{t: t, url: hs.URL}
	r.ecs, _ = e.clients(admin)
	return r
}

// replicaSet is n replicas on a real three-member etcd.
func replicaSet(t *testing.T, n int) ([]*apiReplica, auth.Key) {
	t.Helper()
	cluster := etcdtest.Start(t, 3)
	dir := t.TempDir()
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _, err := auth.LoadMasterKey(filepath.Join(dir, auth.MasterKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("/vessel-%s/", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	out := make([]*apiReplica, n)
	for i := range out {
		out[i] = startReplica(t, cluster.Endpoints(), prefix, sealer, keys[0])
	}
	return out, keys[0]
}

// TestReplicasReadYourWrites: a write acknowledged by one replica is seen
// by a read on another at once, even while that replica's watch lags
// (held back here, so that "at once" does not depend on timing).
func TestReplicasReadYourWrites(t *testing.T) {
	rs, admin := replicaSet(t, 2)
	a, b := rs[0], rs[1]
	ea := &env{t: t, url: a.url, key: admin, ecs: a.ecs}
	eb := &env{t: t, url: b.url, key: admin, ecs: b.ecs}
	def := ea.register("web", "256", "512", "sleep", "3600")

	b.st.hold()
	defer b.st.release()

	// A task run through A is described and listed by B.
	arn := ea.run(def)
	if got := eb.describe(arn); aws.ToString(got.TaskArn) != arn {
		t.Fatalf("DescribeTasks on B: got %s, want %s", aws.ToString(got.TaskArn), arn)
	}
	// So is it by a bridge starting on B (its first task watch).
	var w agentproto.TaskWatch
	if err := eb.vesselClient(admin).Call(ctx(t), "GET", "/vessel/v1/tasks?cluster=default&after=0", nil, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Tasks) != 1 || !strings.HasSuffix(arn, "/"+w.Tasks[0].ID) {
		t.Fatalf("the task watch on B: %d task(s) at revision %d; want %s", len(w.Tasks), w.Revision, arn)
	}
	list, err := b.ecs.ListTasks(ctx(t), &ecs.ListTasksInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.TaskArns) != 1 || list.TaskArns[0] != arn {
		t.Fatalf("ListTasks on B: %v, want [%s]", list.TaskArns, arn)
	}

	// A service's task counts, made through A, are B's too.
	if _, err := a.ecs.CreateService(ctx(t), &ecs.CreateServiceInput{ServiceName: aws.String("svc"),
		TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var onA int32
	testutil.Eventually(t, 20*time.Second, func() error {
		out, err := a.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Services: []string{"svc"}})
		if err != nil {
			return err
		}
		s := out.Services[0]
		if onA = s.RunningCount + s.PendingCount; onA == 0 {
			return fmt.Errorf("service svc has no task yet on A")
		}
		return nil
	})
	out, err := b.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Services: []string{"svc"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Services) != 1 {
		t.Fatalf("DescribeServices on B: %d services, failures %v", len(out.Services), out.Failures)
	}
	if s := out.Services[0]; s.RunningCount+s.PendingCount < onA {
		t.Errorf("DescribeServices on B: %d running, %d pending; A counts %d task(s) (running + pending)", s.RunningCount, s.PendingCount, onA)
	}

	// A key created through A signs requests to B.
	cred, err := ea.vesselClient(admin).CreateCredential(ctx(t), agentproto.CreateCredentialRequest{Name: "ci", Policy: auth.PolicyAdmin})
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := eb.clients(auth.Key{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey})
	if _, err := fresh.ListClusters(ctx(t), &ecs.ListClustersInput{}); err != nil {
		t.Fatalf("B refuses the key created through A: %v", err)
	}
}

// TestAgentMovesToAnotherReplica: an agent given two replicas' URLs keeps
// its task running, and reporting, when the replica it used stops.
func TestAgentMovesToAnotherReplica(t *testing.T) {
	rs, admin := replicaSet(t, 2)
	a, b := rs[0], rs[1]
	ea := &env{t: t, url: a.url, key: admin, ecs: a.ecs}
	eb := &env{t: t, url: b.url, key: admin, ecs: b.ecs}

	client, err := agentproto.NewClient(a.url+","+b.url, admin, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	client.WithCallTimeout(2 * time.Second)
	simDir := filepath.Join(t.TempDir(), "sim")
	rt, err := sim.New(sim.Config{StateDir: simDir})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Config{
		Host:         agentproto.Host{ID: "h1", MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}},
		ControlPlane: client, Runtimes: map[string]runtime.Runtime{"sim": rt}, HeartbeatInterval: 100 * time.Millisecond,
		RetryInterval: 100 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	agentDone := make(chan struct{})
	go func() { ag.Run(actx); close(agentDone) }()
	t.Cleanup(func() { acancel(); <-agentDone })

	// B's watch lags from before the task is run: when the agent moves
	// there, B's cache has not seen the task the agent runs.
	b.st.hold()
	defer b.st.release()
	def := ea.register("web", "256", "512", "sleep", "3600")
	arn := ea.run(def)
	before := ea.waitStatus(arn, "RUNNING")
	if client.Endpoint() != a.url {
		t.Fatalf("the agent uses %s, want the first replica %s", client.Endpoint(), a.url)
	}
	sandboxes, err := rt.List(ctx(t))
	if err != nil || len(sandboxes) != 1 {
		t.Fatalf("sandboxes on the host: %v, %v; want 1", sandboxes, err)
	}
	// The simulated sandbox's state file is rewritten on every change to
	// the sandbox (created again, started, stopped).
	stateFile := filepath.Join(simDir, sandboxes[0].ID+".json")
	state, err := os.Stat(stateFile)
	if err != nil {
		t.Fatal(err)
	}

	// B never answers an agent that saw the task with a set without it
	// (which would tear the sandbox down), however far its cache lags.
	var seen agentproto.Assignments
	if err := ea.vesselClient(admin).Call(ctx(t), "GET", "/agent/v1/hosts/h1/assignments?after=0&wait=1s", nil, &seen); err != nil || len(seen.Tasks) != 1 {
		t.Fatalf("assignments on A: %+v, %v; want the task", seen, err)
	}
	// Nor an agent that starts (its first poll, after revision 0, deletes
	// the sandboxes that are not in the answer).
	for _, after := range []int64{seen.Revision, 0} {
		var onB agentproto.Assignments
		path := fmt.Sprintf("/agent/v1/hosts/h1/assignments?after=%d&wait=1s", after)
		if err := eb.vesselClient(admin).Call(ctx(t), "GET", path, nil, &onB); err != nil {
			t.Fatal(err)
		}
		if len(onB.Tasks) != 1 || onB.Tasks[0].ID != seen.Tasks[0].ID || onB.Revision < seen.Revision {
			t.Fatalf("assignments on the lagging B after revision %d: %d task(s) at revision %d; want the task at %d or later",
				after, len(onB.Tasks), onB.Revision, seen.Revision)
		}
	}

	a.stop()

	// The agent moves to B: its heartbeats and long poll go there.
	testutil.Eventually(t, 20*time.Second, func() error {
		if client.Endpoint() != b.url {
			return fmt.Errorf("the agent still uses %s", client.Endpoint())
		}
		return nil
	})
	b.st.release()
	// The sandbox was neither restarted nor torn down.
	if now, err := os.Stat(stateFile); err != nil || !os.SameFile(now, state) || !now.ModTime().Equal(state.ModTime()) {
		t.Fatalf("the sandbox changed while the agent moved to another replica: %v", err)
	}
	if got := eb.describe(arn); aws.ToString(got.LastStatus) != "RUNNING" || !aws.ToTime(got.StartedAt).Equal(aws.ToTime(before.StartedAt)) {
		t.Fatalf("task on B: %s started %v; want RUNNING, started %v", aws.ToString(got.LastStatus), got.StartedAt, before.StartedAt)
	}
	// Its reports reach B: stopping the task through B, the agent stops
	// the sandbox and reports STOPPED there.
	if _, err := b.ecs.StopTask(ctx(t), &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("done")}); err != nil {
		t.Fatal(err)
	}
	eb.waitStatus(arn, "STOPPED")
}
