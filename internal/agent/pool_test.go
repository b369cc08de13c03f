package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/runtime/sim"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testenv"
	"vessel.dev/vessel/internal/testutil"
)

// These tests run the agent's warm pools with the sim runtime presented as
// one that runs real processes (netSim), so that every warm sandbox and
// task gets a real network attachment (namespace, veth, lease) from a real
// network.Manager: what the pool does to the network is real, the
// sandboxes are the sim's.

// netSim is the sim runtime as a real one: the agent attaches its tasks
// and warm sandboxes to the network and pulls their images (a fake cache).
type netSim struct {
	*sim.Runtime
	class runtime.WarmClass

	mu sync.Mutex
	// conflicts is how many claims to turn down with ErrConflict.
	conflicts int
	// warmNS records the namespace each warm sandbox was given.
	warmNS map[string]string
	// claimNS records the namespace each claim was given, by task.
	claimNS map[string]string
	// startGate, when set, holds every Start until it is closed.
	startGate chan struct{}
	// warms counts the warm sandboxes made.
	warms int
	// warmSize records the size each warm sandbox was made with.
	warmSize map[string][2]int64
}

func (r *netSim) Start(ctx context.Context, id, name string) error {
	r.mu.Lock()
	gate := r.startGate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.Runtime.Start(ctx, id, name)
}

func (r *netSim) warmCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warms
}

func (r *netSim) Simulated() bool              { return false }
func (r *netSim) WarmClass() runtime.WarmClass { return r.class }
func (r *netSim) Unwrap() runtime.Runtime      { return r.Runtime }

// SizedWarmClass makes netSim a runtime.SizedWarmer: its sandboxes of any
// size are counted for the default class's idle memory.
func (r *netSim) SizedWarmClass(milliCPU, memoryMiB int64) (runtime.WarmClass, error) {
	return runtime.WarmClass{MilliCPU: milliCPU, MemoryMiB: memoryMiB, IdleMemoryMiB: r.class.IdleMemoryMiB}, nil
}

func (r *netSim) warmed(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ns, ok := r.warmNS[id]
	return ns, ok
}
func (r *netSim) claimed(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ns, ok := r.claimNS[id]
	return ns, ok
}

func (r *netSim) Warm(ctx context.Context, spec runtime.Spec) error {
	if spec.NetNSPath == "" || spec.EtcDir == "" {
		return errdefs.InvalidArgument("warm sandbox %s has no network namespace", spec.ID)
	}
	if err := r.Runtime.Warm(ctx, spec); err != nil {
		return err
	}
	r.mu.Lock()
	r.warmNS[spec.ID] = spec.NetNSPath
	r.warmSize[spec.ID] = [2]int64{spec.MilliCPU, spec.MemoryMiB}
	r.warms++
	r.mu.Unlock()
	return nil
}

func (r *netSim) Claim(ctx context.Context, warmID string, spec runtime.Spec) error {
	r.mu.Lock()
	if r.conflicts > 0 {
		r.conflicts--
		r.mu.Unlock()
		return errdefs.Conflict("warm sandbox %s cannot take task %s (injected)", warmID, spec.ID)
	}
	want, known := r.warmNS[warmID] // unknown: made by an earlier process
	size := r.warmSize[warmID]
	r.mu.Unlock()
	if known && (spec.MilliCPU > size[0] || spec.MemoryMiB > size[1]) {
		return fmt.Errorf("claim of %s (made at %v) for %s of %d milli-CPU and %d MiB: the agent picked a warm sandbox too small", warmID, size, spec.ID, spec.MilliCPU, spec.MemoryMiB)
	}
	if known && spec.NetNSPath != want {
		return fmt.Errorf("claim of %s for %s in namespace %s; Warm was given %s", warmID, spec.ID, spec.NetNSPath, want)
	}
	if err := r.Runtime.Claim(ctx, warmID, spec); err != nil {
		return err
	}
	r.mu.Lock()
	r.claimNS[spec.ID] = spec.NetNSPath
	r.mu.Unlock()
	return nil
}

// poolEnv is an agent with a pool of netSim sandboxes, on a real network.
type poolEnv struct {
	t    *testing.T
	dir  string
	cp   *controlPlane
	rt   *netSim
	nm   *network.Manager
	a    *agent.Agent
	stop func() // stops the agent (as a kill: sandboxes and pools stay)
	// halt stops the agent's Run and leaves its network manager open
	// (what a graceful stop does before DropPools).
	halt   func()
	n      int
	subnet netip.Prefix
}

type poolOptions struct {
	size      int
	memoryMiB int64
	class     runtime.WarmClass
	// dir reuses the state of an earlier env (a restart).
	dir string
	// subnet is subnet "t"'s CIDR (the pool's), picked once per test.
	subnet netip.Prefix
	// placed are tasks placed on the host before the agent starts.
	placed []*task.Task
	// pools are more pools beside the sim's (ParseWarmPools's names).
	pools map[string]int
}

func requireNetns(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t, "real network namespaces")
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
}

// newPoolEnv starts an agent on o's state (fresh if o.dir is empty) with a
// pool of o.size netSim sandboxes on subnet "t". The agent, and then every
// sandbox, warm sandbox and attachment left, go when the test ends.
func newPoolEnv(t *testing.T, o poolOptions) *poolEnv {
	t.Helper()
	requireNetns(t)
	dir := o.dir
	fresh := dir == ""
	if fresh {
		dir = t.TempDir()
	}
	if o.memoryMiB == 0 {
		o.memoryMiB = 8192
	}
	if o.class == (runtime.WarmClass{}) {
		o.class = runtime.WarmClass{MilliCPU: 1000, MemoryMiB: 1024, IdleMemoryMiB: 256}
	}
	s, err := sim.New(sim.Config{StateDir: filepath.Join(dir, "sim")})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rt := &netSim{Runtime: s, class: o.class, warmNS: map[string]string{}, claimNS: map[string]string{}, warmSize: map[string][2]int64{}}
	subnets := []network.Subnet{{Name: "t", CIDR: o.subnet}, {Name: "u", CIDR: runtimetest.FreeSubnet(t)}}
	nm, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"), Subnets: subnets, DNSServers: []string{"10.89.255.53"}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cp := newControlPlane()
	cp.rev = 1 // the agent's first poll answers at once, as the server's does
	for _, t := range o.placed {
		cp.add(t)
	}
	a, err := agent.New(agent.Config{
		Host:         agentproto.Host{ID: "h1", MilliCPU: 4000, MemoryMiB: o.memoryMiB, Runtimes: []string{"sim"}},
		ControlPlane: cp, Runtimes: map[string]runtime.Runtime{"sim": rt},
		Images: images{"/nonexistent"}, Network: nm, LogDir: filepath.Join(dir, "logs"), TaskDir: filepath.Join(dir, "tasks"),
		WarmPools: poolSizes(o), WarmSubnet: "t", WarmRetry: 50 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	e := &poolEnv{t: t, dir: dir, cp: cp, rt: rt, nm: nm, a: a, subnet: o.subnet}
	var once, halted sync.Once
	e.halt = func() { halted.Do(func() { cancel(); <-done }) }
	e.stop = func() { once.Do(func() { e.halt(); nm.Close() }) }
	if fresh {
		// After every agent on dir stopped (cleanups run last first).
		t.Cleanup(func() { cleanupPoolState(t, dir, subnets) })
	}
	t.Cleanup(e.stop)
	return e
}

// poolSizes is the agent's WarmPools for o.
func poolSizes(o poolOptions) map[string]int {
	out := map[string]int{"sim": o.size}
	for name, n := range o.pools {
		out[name] = n
	}
	return out
}

// cleanupPoolState deletes every sandbox and attachment left in dir.
func cleanupPoolState(t *testing.T, dir string, subnets []network.Subnet) {
	s, err := sim.New(sim.Config{StateDir: filepath.Join(dir, "sim")})
	if err == nil {
		infos, _ := s.List(context.Background())
		for _, in := range infos {
			s.Delete(context.Background(), in.ID)
		}
	}
	nm, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"), Subnets: subnets})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	if err := nm.Reconcile(context.Background(), func(string) bool { return false }); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	nm.RemoveUnusedBridges(context.Background())
	nm.Close()
	network.RemoveFirewall(filepath.Join(dir, "network"))
}

// run places a one-container task on subnet with memMiB of memory.
func (e *poolEnv) run(subnet string, memMiB int64) string {
	e.t.Helper()
	return e.runSized(subnet, 256, memMiB)
}

// runSized places a one-container task on subnet of the given size.
func (e *poolEnv) runSized(subnet string, cpuUnits, memMiB int64) string {
	e.t.Helper()
	e.n++
	id := fmt.Sprintf("pool-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), e.n)
	t := &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
		CPUUnits: cpuUnits, MemoryMiB: memMiB, HostID: "h1", Subnet: subnet, Runtime: "sim",
		LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
		Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true, EntryPoint: []string{"sleep", "1000"}}}}
	e.cp.add(t)
	return id
}

func (e *poolEnv) waitFor(id string, what string, ok func(*task.Task) bool) *task.Task {
	e.t.Helper()
	var t *task.Task
	testutil.Eventually(e.t, 30*time.Second, func() error {
		if t = e.cp.get(id); !ok(t) {
			return fmt.Errorf("task %s: waiting for %s; task is %s", id, what, t)
		}
		return nil
	})
	return t
}

func (e *poolEnv) running(id string) *task.Task {
	e.t.Helper()
	return e.waitFor(id, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning || t.Stopped() })
}

func (e *poolEnv) pool() agentproto.WarmPool {
	ps := e.a.WarmPools()
	if len(ps) != 1 {
		e.t.Fatalf("WarmPools() = %+v; want the sim pool alone", ps)
	}
	return ps[0]
}

// waitPool waits until the pool holds ready warm sandboxes.
func (e *poolEnv) waitPool(ready int) agentproto.WarmPool {
	e.t.Helper()
	var p agentproto.WarmPool
	testutil.Eventually(e.t, 30*time.Second, func() error {
		if p = e.pool(); p.Ready != ready {
			return fmt.Errorf("pool %+v; want %d ready", p, ready)
		}
		return nil
	})
	return p
}

// warmIDs lists the warm sandboxes the runtime holds.
func (e *poolEnv) warmIDs() []string {
	e.t.Helper()
	infos, err := e.rt.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		if in.Warm {
			out = append(out, in.ID)
		}
	}
	slices.Sort(out)
	return out
}

// TestWarmPoolClaimAndRefill: a task takes a warm sandbox (its address is
// the warm sandbox's, its sandbox the claimed one, in the namespace made
// for it), the pool returns to its size, and the task's end releases the
// attachment it took.
func TestWarmPoolClaimAndRefill(t *testing.T) {
	e := newPoolEnv(t, poolOptions{size: 2, subnet: runtimetest.FreeSubnet(t)})
	e.waitPool(2)
	before := e.warmIDs()
	ips := map[string]string{}
	for _, id := range before {
		att, ok := e.nm.Get(id)
		if !ok {
			t.Fatalf("warm sandbox %s has no attachment", id)
		}
		ips[att.IP.String()] = id
		if !strings.HasPrefix(id, agent.WarmIDPrefix+"sim-") {
			t.Errorf("warm sandbox ID %q does not say it is one (%ssim-...)", id, agent.WarmIDPrefix)
		}
	}
	id := e.run("t", 512)
	got := e.running(id)
	if got.LastStatus != task.StatusRunning {
		t.Fatalf("task is %s; want RUNNING", got)
	}
	warmID, ok := ips[got.IP]
	if !ok {
		t.Fatalf("task's address %s is none of the warm sandboxes' %v: it did not take one", got.IP, ips)
	}
	ns, claimed := e.rt.claimed(id)
	if warmNS, _ := e.rt.warmed(warmID); !claimed || ns != warmNS {
		t.Errorf("task claimed in namespace %q (claimed %v); the warm sandbox was made in %q", ns, claimed, warmNS)
	}
	if att, ok := e.nm.Get(id); !ok || att.IP.String() != got.IP {
		t.Errorf("the attachment is not the task's: %+v, %v", att, ok)
	}
	if _, ok := e.nm.Get(warmID); ok {
		t.Errorf("the warm sandbox %s still holds an attachment after its task took it", warmID)
	}
	p := e.waitPool(2)
	if p.Hits != 1 || p.Misses != 0 || p.Target != 2 || p.MemoryMiB != 2*256 {
		t.Errorf("pool %+v; want 1 hit, no miss, target 2, 512 MiB", p)
	}
	after := e.warmIDs()
	if slices.Contains(after, warmID) || len(after) != 2 {
		t.Errorf("warm sandboxes after the refill %v; want 2, without the claimed %s", after, warmID)
	}

	e.cp.stop(id)
	e.waitFor(id, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, ok := e.nm.LookupIP(netip.MustParseAddr(got.IP)); ok {
			return fmt.Errorf("address %s still leased after the task stopped", got.IP)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "network", "netns", warmID)); !os.IsNotExist(err) {
			return fmt.Errorf("the task's namespace (made as %s) is still there: %v", warmID, err)
		}
		return nil
	})
}

// TestWarmPoolRefillWaitsForTheHitsStart: the refill of a claimed warm
// sandbox waits until the task that took it has started its containers
// (making a sandbox would take the host's CPU from that start), then
// makes the replacement.
func TestWarmPoolRefillWaitsForTheHitsStart(t *testing.T) {
	e := newPoolEnv(t, poolOptions{size: 1, subnet: runtimetest.FreeSubnet(t)})
	e.waitPool(1)
	gate := make(chan struct{})
	e.rt.mu.Lock()
	e.rt.startGate = gate
	e.rt.mu.Unlock()
	warms := e.rt.warmCount()
	id := e.run("t", 512)
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, ok := e.rt.claimed(id); !ok {
			return fmt.Errorf("task %s has not claimed the warm sandbox yet", id)
		}
		return nil
	})
	// The claim is made and the start held: long enough for a refill
	// that did not wait (the pool's heartbeat is 50 ms, a sim sandbox is
	// made in milliseconds) to have made the replacement.
	time.Sleep(500 * time.Millisecond)
	if n := e.rt.warmCount(); n != warms {
		t.Fatalf("%d warm sandboxes made while the hit's task was still starting; want none until it started", n-warms)
	}
	if p := e.pool(); p.Ready != 0 || p.Hits != 1 {
		t.Fatalf("pool %+v while the hit's task starts; want none ready and 1 hit", p)
	}
	close(gate)
	if got := e.running(id); got.LastStatus != task.StatusRunning {
		t.Fatalf("task is %s; want RUNNING", got)
	}
	e.waitPool(1)
	if n := e.rt.warmCount(); n != warms+1 {
		t.Errorf("%d warm sandboxes made after the start; want the one replacement", n-warms)
	}
}

// TestWarmPoolMisses: tasks the pool cannot serve (another subnet, larger
// than the warm class) start cold and are counted as misses; the pool is
// left whole.
func TestWarmPoolMisses(t *testing.T) {
	e := newPoolEnv(t, poolOptions{size: 1, subnet: runtimetest.FreeSubnet(t)})
	e.waitPool(1)
	warm := e.warmIDs()
	other := e.run("u", 512)
	big := e.run("t", 2048) // the class serves 1024 MiB at most
	for _, id := range []string{other, big} {
		if got := e.running(id); got.LastStatus != task.StatusRunning {
			t.Fatalf("task %s is %s; want RUNNING (cold)", id, got)
		}
		if _, claimed := e.rt.claimed(id); claimed {
			t.Errorf("task %s took a warm sandbox it cannot use", id)
		}
	}
	p := e.pool()
	if p.Hits != 0 || p.Misses != 2 || p.Ready != 1 {
		t.Errorf("pool %+v; want 2 misses, no hit, 1 ready", p)
	}
	if now := e.warmIDs(); !slices.Equal(now, warm) {
		t.Errorf("warm sandboxes %v; want %v untouched", now, warm)
	}
}

// TestWarmPoolConflictGivesBack: a claim the runtime turns down
// (ErrConflict) puts the warm sandbox back, with its attachment under its
// own ID, and the task starts cold with an address of its own.
func TestWarmPoolConflictGivesBack(t *testing.T) {
	e := newPoolEnv(t, poolOptions{size: 1, subnet: runtimetest.FreeSubnet(t)})
	e.waitPool(1)
	warm := e.warmIDs()
	att, _ := e.nm.Get(warm[0])
	e.rt.mu.Lock()
	e.rt.conflicts = 1
	e.rt.mu.Unlock()
	id := e.run("t", 512)
	got := e.running(id)
	if got.LastStatus != task.StatusRunning {
		t.Fatalf("task is %s; want RUNNING (cold)", got)
	}
	if got.IP == att.IP.String() || got.IP == "" {
		t.Errorf("task's address %q; want one of its own, not the warm sandbox's %s", got.IP, att.IP)
	}
	back, ok := e.nm.Get(warm[0])
	if !ok || back.IP != att.IP || back.NetNSPath != att.NetNSPath {
		t.Errorf("the warm sandbox's attachment after the refusal: %+v, %v; want it back as %+v", back, ok, att)
	}
	p := e.pool()
	if p.Ready != 1 || p.Misses != 1 || p.Hits != 0 {
		t.Errorf("pool %+v; want the warm sandbox back, 1 miss", p)
	}
	if now := e.warmIDs(); !slices.Equal(now, warm) {
		t.Errorf("warm sandboxes %v; want %v", now, warm)
	}
	// The entry given back serves the next task.
	id2 := e.run("t", 512)
	if got := e.running(id2); got.IP != att.IP.String() {
		t.Errorf("the next task's address %s; want the warm sandbox's %s", got.IP, att.IP)
	}
}

// TestWarmPoolAdoption: a new agent on the same state (the old one killed)
// adopts the warm sandboxes whose attachment is there, deletes a warm
// sandbox without one and frees an attachment without a sandbox; a task
// whose attachment was moved before the agent died (killed between the
// move and the claim) starts in it.
func TestWarmPoolAdoption(t *testing.T) {
	cidr := runtimetest.FreeSubnet(t)
	e := newPoolEnv(t, poolOptions{size: 2, subnet: cidr})
	e.waitPool(2)
	kept := e.warmIDs()
	ctx := context.Background()
	// A warm sandbox whose attachment is gone, an attachment whose warm
	// sandbox is gone.
	if err := e.rt.Runtime.Warm(ctx, runtime.Spec{ID: "warm-sim-noattach"}); err != nil {
		t.Fatal(err)
	}
	dead, err := e.nm.Attach(ctx, "warm-sim-nosandbox", "t", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.stop()

	// Killed between the move and the claim: the lease is the task's, the
	// warm sandbox still unclaimed.
	e2 := newPoolEnv(t, poolOptions{size: 2, subnet: cidr, dir: e.dir})
	e2.waitPool(2)
	if now := e2.warmIDs(); !slices.Equal(now, kept) {
		t.Errorf("warm sandboxes after the restart %v; want the 2 adopted %v (and the one without attachment deleted)", now, kept)
	}
	if _, ok := e2.nm.Get("warm-sim-nosandbox"); ok {
		t.Error("the attachment without a warm sandbox was kept")
	}
	if _, err := os.Stat(dead.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("its namespace %s is still there: %v", dead.NetNSPath, err)
	}
	// The adopted ones serve tasks.
	id := e2.run("t", 512)
	got := e2.running(id)
	if _, claimed := e2.rt.claimed(id); !claimed || got.LastStatus != task.StatusRunning {
		t.Errorf("a task after the restart: %s, claimed %v; want RUNNING in an adopted warm sandbox", got, claimed)
	}
	e2.stop()

	// Moved but not claimed, then killed.
	e3 := newPoolEnv(t, poolOptions{size: 2, subnet: cidr, dir: e.dir})
	e3.waitPool(2)
	victim := e3.warmIDs()[0]
	e3.stop()
	nm, err := network.Open(network.Config{StateDir: filepath.Join(e.dir, "network"),
		Subnets: []network.Subnet{{Name: "t", CIDR: cidr}}})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := nm.Rekey(ctx, victim, "pool-moved-1", network.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nm.Close()
	tk := &task.Task{ID: "pool-moved-1", ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/pool-moved-1", Cluster: "default",
		CPUUnits: 256, MemoryMiB: 512, HostID: "h1", Subnet: "t", Runtime: "sim",
		LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
		Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true, EntryPoint: []string{"sleep", "1000"}}}}
	e4 := newPoolEnv(t, poolOptions{size: 2, subnet: cidr, dir: e.dir, placed: []*task.Task{tk}})
	got = e4.running(tk.ID)
	if got.LastStatus != task.StatusRunning || got.IP != moved.IP.String() {
		t.Errorf("the task whose attachment was moved: %s at %s; want RUNNING at %s", got, got.IP, moved.IP)
	}
	e4.waitPool(2)
	if slices.Contains(e4.warmIDs(), victim) {
		t.Errorf("warm sandbox %s, whose attachment a task took, was kept", victim)
	}
	if att, ok := e4.nm.Get(tk.ID); !ok || att.NetNSPath != moved.NetNSPath {
		t.Errorf("the task's attachment %+v, %v; want the moved one", att, ok)
	}
}

// TestWarmPoolSizeClasses: beside the runtime's own class (1 vCPU, 1
// GiB here), a pool of a size class (2 vCPU, 4 GB) serves the tasks the
// smaller one cannot; each task takes from the smallest class that serves
// it, a task larger than every class starts cold, each pool reports its
// class, hits and misses, and a restart adopts each warm sandbox into its
// own class's pool.
func TestWarmPoolSizeClasses(t *testing.T) {
	cidr := runtimetest.FreeSubnet(t)
	o := poolOptions{size: 1, subnet: cidr, pools: map[string]int{"sim:2/4": 1}, memoryMiB: 32768}
	e := newPoolEnv(t, o)
	pools := func(e *poolEnv) map[string]agentproto.WarmPool {
		out := map[string]agentproto.WarmPool{}
		for _, p := range e.a.WarmPools() {
			out[p.Runtime+" "+p.Class] = p
		}
		return out
	}
	waitReady := func(e *poolEnv) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() error {
			ps := pools(e)
			if len(ps) != 2 || ps["sim 1/1"].Ready != 1 || ps["sim 2/4"].Ready != 1 {
				return fmt.Errorf("pools %+v; want sim 1/1 and sim 2/4 with one ready each", ps)
			}
			return nil
		})
	}
	waitReady(e)
	small := e.runSized("t", 1024, 1024) // 1 vCPU, 1 GiB: the own class
	mid := e.runSized("t", 2048, 4096)   // 2 vCPU, 4 GiB: only the sized class
	big := e.runSized("t", 2048, 8192)   // larger than every class
	for _, id := range []string{small, mid, big} {
		if got := e.running(id); got.LastStatus != task.StatusRunning {
			t.Fatalf("task %s is %s; want RUNNING", id, got)
		}
	}
	for id, warm := range map[string]bool{small: true, mid: true, big: false} {
		if _, claimed := e.rt.claimed(id); claimed != warm {
			t.Errorf("task %s took a warm sandbox: %v; want %v", id, claimed, warm)
		}
	}
	waitReady(e)
	ps := pools(e)
	if p := ps["sim 1/1"]; p.Hits != 1 || p.Misses != 0 {
		t.Errorf("the own class's pool %+v; want 1 hit (the small task), no miss", p)
	}
	if p := ps["sim 2/4"]; p.Hits != 1 || p.Misses != 1 {
		t.Errorf("the sized pool %+v; want 1 hit (the 2 vCPU task) and 1 miss (the larger one, counted by the largest class)", p)
	}
	// Each warm sandbox is labelled with its pool, and a restart adopts
	// it there.
	infos, err := e.rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]int{}
	for _, in := range infos {
		if in.Warm {
			labels[in.Labels[agent.LabelWarm]]++
		}
	}
	if labels["sim"] != 1 || labels["sim:2/4"] != 1 || len(labels) != 2 {
		t.Errorf("warm sandboxes by pool label %v; want one of sim and one of sim:2/4", labels)
	}
	kept := e.warmIDs()
	e.stop()
	o.dir = e.dir
	e2 := newPoolEnv(t, o)
	waitReady(e2)
	if now := e2.warmIDs(); !slices.Equal(now, kept) {
		t.Errorf("warm sandboxes after the restart %v; want the 2 adopted %v", now, kept)
	}
	mid2 := e2.runSized("t", 2048, 4096)
	if got := e2.running(mid2); got.LastStatus != task.StatusRunning {
		t.Fatalf("task %s is %s; want RUNNING", mid2, got)
	}
	if _, claimed := e2.rt.claimed(mid2); !claimed {
		t.Error("a 2 vCPU task after the restart did not take the adopted warm sandbox of its class")
	}
}

// TestWarmPoolDropOnStop: after the agent's Run returns (a graceful
// stop), DropPools deletes the ready warm sandboxes and their
// attachments; a task's sandbox, claimed from the pool, and its
// attachment stay.
func TestWarmPoolDropOnStop(t *testing.T) {
	e := newPoolEnv(t, poolOptions{size: 2, subnet: runtimetest.FreeSubnet(t)})
	e.waitPool(2)
	id := e.run("t", 512)
	e.running(id)
	e.waitPool(2)
	warm := e.warmIDs()
	e.halt()
	if n := e.a.DropPools(context.Background()); n != 2 {
		t.Errorf("DropPools deleted %d warm sandboxes; want 2", n)
	}
	if left := e.warmIDs(); len(left) > 0 {
		t.Errorf("warm sandboxes left: %v", left)
	}
	for _, w := range warm {
		if _, ok := e.nm.Get(w); ok {
			t.Errorf("warm sandbox %s's attachment is left", w)
		}
	}
	infos, err := e.rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(infos, func(in runtime.SandboxInfo) bool { return in.ID == id }) {
		t.Errorf("the task's sandbox %s is gone: %+v", id, infos)
	}
	if _, ok := e.nm.Get(id); !ok {
		t.Errorf("the task's attachment is gone")
	}
	if n := e.a.DropPools(context.Background()); n != 0 {
		t.Errorf("a second DropPools deleted %d", n)
	}
}

// TestWarmPoolShrinksUnderMemory: tasks filling the host's memory empty
// the pool before any of them fails; when they end, it fills again.
func TestWarmPoolShrinksUnderMemory(t *testing.T) {
	// 2048 MiB allocatable; 3 warm sandboxes of 512 MiB idle each.
	e := newPoolEnv(t, poolOptions{size: 3, memoryMiB: 2048, subnet: runtimetest.FreeSubnet(t),
		class: runtime.WarmClass{MemoryMiB: 4096, IdleMemoryMiB: 512}})
	e.waitPool(3)
	var ids []string
	for range 4 {
		ids = append(ids, e.run("t", 512))
	}
	for _, id := range ids {
		if got := e.running(id); got.LastStatus != task.StatusRunning {
			t.Fatalf("task %s is %s; want RUNNING: the pool must give way", id, got)
		}
	}
	p := e.waitPool(0)
	if p.MemoryMiB != 0 {
		t.Errorf("pool %+v; want no memory held with the host full", p)
	}
	// It stays empty while the tasks hold the memory.
	time.Sleep(300 * time.Millisecond)
	if p := e.pool(); p.Ready != 0 || len(e.warmIDs()) != 0 {
		t.Errorf("pool %+v with %d warm sandboxes while the tasks hold all memory; want none", p, len(e.warmIDs()))
	}
	for _, id := range ids[:2] {
		e.cp.stop(id)
		e.waitFor(id, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	}
	// 1024 MiB free again: two warm sandboxes fit, not three.
	e.waitPool(2)
	time.Sleep(300 * time.Millisecond)
	if p := e.pool(); p.Ready != 2 {
		t.Errorf("pool %+v; want 2 (what 1024 MiB free holds)", p)
	}
}

// noWarm is a runtime without warm sandboxes.
type noWarm struct{ runtime.Runtime }

func (noWarm) Simulated() bool { return true }

// sizedSim is the sim runtime with warm sandboxes of a size
// (runtime.SizedWarmer), its own class 0.25 vCPU 0.5 GB.
type sizedSim struct{ *sim.Runtime }

func (sizedSim) WarmClass() runtime.WarmClass {
	return runtime.WarmClass{MilliCPU: 250, MemoryMiB: 512, IdleMemoryMiB: 16}
}

func (sizedSim) SizedWarmClass(milliCPU, memoryMiB int64) (runtime.WarmClass, error) {
	return runtime.WarmClass{MilliCPU: milliCPU, MemoryMiB: memoryMiB, IdleMemoryMiB: 16}, nil
}

func TestWarmPoolConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{"runc"}, "use RUNTIME=N"},
		{[]string{"runc=two"}, "not a whole number"},
		{[]string{"runc=-1"}, "0 (off) or more"},
		{[]string{"nosuch=1"}, "is not known"},
		{[]string{"runc=1,runc=2"}, "given twice"},
		{[]string{"=1"}, "use RUNTIME=N"},
		{[]string{"gvisor:3/4=1"}, "valid cpu values"},
		{[]string{"gvisor:2/40=1"}, "valid memory values for cpu 2048"},
		{[]string{"gvisor:2=1"}, "e.g. 2/4"},
		{[]string{"nosuch:2/4=1"}, "is not known"},
		{[]string{"gvisor:16/120=1,gvisor:16.0/120=2"}, "\"gvisor:16/120\" is given twice"},
	} {
		_, err := agent.ParseWarmPools(tc.values)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseWarmPools(%q) = %v; want an invalid argument saying %q", tc.values, err, tc.want)
		}
	}
	got, err := agent.ParseWarmPools([]string{"runc=2,gvisor=1", "microvm=0", "gvisor:.25/.5=3,microvm:16/120=1"})
	if err != nil || got["runc"] != 2 || got["gvisor"] != 1 || got["microvm"] != 0 || got["gvisor:0.25/0.5"] != 3 || got["microvm:16/120"] != 1 || len(got) != 5 {
		t.Errorf("ParseWarmPools = %v, %v", got, err)
	}

	s, err := sim.New(sim.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	base := agent.Config{Host: agentproto.Host{ID: "h1", MilliCPU: 1000, MemoryMiB: 1024}, ControlPlane: newControlPlane()}
	for _, tc := range []struct {
		rt    runtime.Runtime
		pools map[string]int
		want  string
	}{
		{s, map[string]int{"runc": 1}, "not available on this host"},
		{noWarm{s}, map[string]int{"sim": 1}, "cannot prepare sandboxes ahead"},
		{s, map[string]int{"sim": -1}, "below 0"},
		{s, map[string]int{"sim:2/4": 1}, "serve tasks of every size; give sim=N"},
		{sizedSim{s}, map[string]int{"sim:0.25/0.5": 1}, "runtime sim's own warm class; give sim=N"},
		{sizedSim{s}, map[string]int{"sim:2/4": 1}, "cannot be placed on this host, which can give tasks 1000 milli-CPU and 1024 MiB"},
	} {
		cfg := base
		cfg.Runtimes = map[string]runtime.Runtime{"sim": tc.rt}
		cfg.WarmPools = tc.pools
		_, err := agent.New(cfg)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with pools %v = %v; want an invalid argument saying %q", tc.pools, err, tc.want)
		}
	}
	cfg := base
	cfg.Runtimes = map[string]runtime.Runtime{"sim": s}
	cfg.WarmPools = map[string]int{"sim": 2}
	if _, err := agent.New(cfg); err != nil {
		t.Errorf("New with a sim pool: %v", err)
	}
	cfg.Runtimes = map[string]runtime.Runtime{"sim": sizedSim{s}}
	cfg.WarmPools = map[string]int{"sim": 2, "sim:0.5/1": 1}
	if _, err := agent.New(cfg); err != nil {
		t.Errorf("New with a sized sim pool: %v", err)
	}
}
