package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testenv"
	"vessel.dev/vessel/internal/testutil"
)

// These tests run an agent with the real runc runtime, a real network
// manager and a busybox layer; only the control plane (a network edge) and
// the image cache are fakes.

// controlPlane is an in-memory agentproto.ControlPlane for one host. It
// applies reports with the server's rule (task.ApplyReport) and keeps
// every container update.
type controlPlane struct {
	mu      sync.Mutex
	tasks   map[string]*task.Task
	rev     int64
	changed chan struct{}
	history []containerReport
	// calls counts the status calls that reached a task (each is one
	// write on the server).
	calls int
	// stale is served once, in the next answer, in place of the current
	// version of its task: an answer made before the task's last change.
	stale *task.Task
}

type containerReport struct {
	at time.Time
	u  agentproto.ContainerUpdate
}

var _ agentproto.ControlPlane = (*controlPlane)(nil)

func newControlPlane() *controlPlane {
	return &controlPlane{tasks: map[string]*task.Task{}, changed: make(chan struct{})}
}

func (cp *controlPlane) bump() {
	cp.rev++
	close(cp.changed)
	cp.changed = make(chan struct{})
}

func (cp *controlPlane) RegisterHost(ctx context.Context, h agentproto.Host) error { return nil }
func (cp *controlPlane) Heartbeat(ctx context.Context, hostID string) error        { return nil }

func (cp *controlPlane) Assignments(ctx context.Context, hostID string, after int64) (agentproto.Assignments, error) {
	cp.mu.Lock()
	if after == cp.rev {
		ch := cp.changed
		cp.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		cp.mu.Lock()
	}
	defer cp.mu.Unlock()
	as := agentproto.Assignments{Revision: cp.rev}
	for _, t := range cp.tasks {
		if cp.stale != nil && cp.stale.ID == t.ID {
			as.Tasks = append(as.Tasks, *cp.stale)
			continue
		}
		if !t.Stopped() {
			as.Tasks = append(as.Tasks, *t.Clone())
		}
	}
	cp.stale = nil
	return as, nil
}

func (cp *controlPlane) ReportStatuses(ctx context.Context, hostID string, tasks [][]agentproto.StatusUpdate) ([]error, error) {
	errs := make([]error, len(tasks))
	for i, reports := range tasks {
		errs[i] = cp.ReportStatus(ctx, hostID, reports...)
	}
	return errs, nil
}

func (cp *controlPlane) ReportStatus(ctx context.Context, hostID string, reports ...agentproto.StatusUpdate) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(reports) == 0 {
		return errdefs.InvalidArgument("no report")
	}
	t := cp.tasks[reports[0].TaskID]
	if t == nil {
		return errdefs.NotFound("task %s not found", reports[0].TaskID)
	}
	if t.Stopped() {
		return nil
	}
	cp.calls++
	// As the server: the reports merge into a copy, kept only if whole.
	next := t.Clone()
	changed := false
	for _, u := range reports {
		for _, cu := range u.Containers {
			cp.history = append(cp.history, containerReport{at: time.Now(), u: cu})
		}
		c, err := next.ApplyReport(u, time.Now())
		if err != nil {
			return err
		}
		changed = changed || c
	}
	if changed {
		*t = *next
		cp.bump()
	}
	return nil
}

func (cp *controlPlane) add(t *task.Task) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.tasks[t.ID] = t
	cp.bump()
}

// get returns a copy of the task.
func (cp *controlPlane) get(id string) *task.Task {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.tasks[id].Clone()
}

func (cp *controlPlane) stop(id string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if t := cp.tasks[id]; t != nil && !t.Stopped() {
		t.RequestStop(task.StopCodeUserInitiated, "test ended", time.Now())
		cp.bump()
	}
}

// reports returns the container updates of name received so far.
func (cp *controlPlane) reports(name string) []containerReport {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []containerReport
	for _, r := range cp.history {
		if r.u.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// images serves the busybox layer for every reference.
type images struct{ layer string }

func (i images) Get(ctx context.Context, ref string) (*image.Image, error) {
	return &image.Image{Ref: ref, Digest: "sha256:" + fmt.Sprintf("%064d", 0), Layers: []string{i.layer}}, nil
}

func (i images) Pull(ctx context.Context, ref string, o image.PullOptions) (*image.Image, error) {
	return i.Get(ctx, ref)
}

type env struct {
	t   *testing.T
	dir string // the agent's state
	cp  *controlPlane
	n   int
	rt  runtime.Runtime
	nm  *network.Manager
	a   *agent.Agent
	cfg agent.Config
	// stopAgent ends a's Run as a crash would: its tasks and pools stay.
	stopAgent func()
}

// start starts an agent with e.cfg.
func (e *env) start() {
	e.t.Helper()
	a, err := agent.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	e.a, e.rt = a, e.cfg.Runtimes["runc"]
	e.stopAgent = sync.OnceFunc(func() { cancel(); <-done })
}

// restart stops e's agent as a crash would and starts a new one on the
// same state, with a runc runtime of its own.
func (e *env) restart() {
	e.t.Helper()
	e.stopAgent()
	rt, err := runc.New(runc.Config{StateDir: filepath.Join(e.dir, "runc")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cfg.Runtimes = map[string]runtime.Runtime{"runc": rt}
	e.start()
}

func needRunc(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t, "real runc sandboxes")
	if os.Geteuid() != 0 {
		t.Skip("the runc runtime needs root")
	}
	for _, b := range []string{"runc", "conmon"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}

// newEnv starts an agent on runc with a restart back-off of base (doubling
// up to 8×base). Its tasks are stopped, and the agent with them, when the
// test ends.
func newEnv(t *testing.T, base time.Duration) *env {
	t.Helper()
	return newEnvWith(t, base, nil)
}

// newEnvWith is newEnv with a hook to adjust the agent's configuration.
func newEnvWith(t *testing.T, base time.Duration, configure func(*agent.Config)) *env {
	t.Helper()
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	dir := runtimetest.StateDir(t)
	rt, err := runc.New(runc.Config{StateDir: filepath.Join(dir, "runc")})
	if err != nil {
		t.Fatal(err)
	}
	nm, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"),
		Subnets: []network.Subnet{{Name: "t", CIDR: runtimetest.FreeSubnet(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	cp := newControlPlane()
	cp.rev = 1 // the agent's first poll answers at once, as the server's does
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := agent.Config{
		Host:         agentproto.Host{ID: "h1", MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"runc"}},
		ControlPlane: cp, Runtimes: map[string]runtime.Runtime{"runc": rt},
		Images: images{layer}, Network: nm, LogDir: filepath.Join(dir, "logs"), TaskDir: filepath.Join(dir, "tasks"),
		RestartBackoff: base, MaxRestartBackoff: 8 * base, Logger: logger,
	}
	if configure != nil {
		configure(&cfg)
	}
	e := &env{t: t, dir: dir, cp: cp, nm: nm, cfg: cfg}
	e.start()
	t.Cleanup(func() {
		cp.mu.Lock()
		var ids []string
		for id := range cp.tasks {
			ids = append(ids, id)
		}
		cp.mu.Unlock()
		for _, id := range ids {
			cp.stop(id)
		}
		for _, id := range ids {
			e.waitFor(id, 60*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
		}
		e.stopAgent()
		e.a.DropPools(context.Background()) // as a graceful stop does
		nm.RemoveUnusedBridges(context.Background())
		nm.Close()
	})
	return e
}

// run places a one-container task "app" running script with the policy;
// change adjusts the container.
func (e *env) run(policy, script string, change func(*task.Container)) string {
	e.t.Helper()
	e.n++
	id := fmt.Sprintf("ag-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), e.n)
	c := task.Container{Name: "app", Image: "busybox", Essential: true,
		EntryPoint: []string{"/bin/sh", "-c", script}, StopTimeout: 2 * time.Second}
	if change != nil {
		change(&c)
	}
	t := &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
		CPUUnits: 256, MemoryMiB: 512, HostID: "h1", Subnet: "t", RestartPolicy: policy,
		LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
		Containers: []task.Container{c}}
	if err := t.ValidateRestartAndProbes(); err != nil {
		e.t.Fatal(err)
	}
	e.cp.add(t)
	return id
}

// waitFor polls the task until ok holds, and fails the test after timeout.
func (e *env) waitFor(id string, timeout time.Duration, what string, ok func(*task.Task) bool) *task.Task {
	e.t.Helper()
	var t *task.Task
	testutil.Eventually(e.t, timeout, func() error {
		if t = e.cp.get(id); !ok(t) {
			return fmt.Errorf("task %s: waiting for %s; task is %s, container %+v", id, what, t, t.Containers[0])
		}
		return nil
	})
	return t
}

func TestRestartAlwaysWithBackoff(t *testing.T) {
	base := 300 * time.Millisecond
	e := newEnv(t, base)
	id := e.run(task.RestartAlways, "echo run; exit 3", nil)
	got := e.waitFor(id, 30*time.Second, "3 restarts", func(t *task.Task) bool { return t.Containers[0].RestartCount >= 3 })
	if got.LastStatus != task.StatusRunning || got.DesiredStatus != task.StatusRunning {
		t.Errorf("task is %s, want it RUNNING while its container restarts", got)
	}
	c := got.Containers[0]
	if c.LastExitCode == nil || *c.LastExitCode != 3 || c.LastFinishedAt.IsZero() || c.LastStartedAt.IsZero() {
		t.Errorf("last state: exit code %v, started %v, finished %v; want 3 and both times", c.LastExitCode, c.LastStartedAt, c.LastFinishedAt)
	}
	// The restarts come after 1, 2 and 4 times the base (each run is
	// short): the gaps between them grow.
	var at []time.Time
	for _, r := range e.cp.reports("app") {
		if r.u.RestartCount > len(at) {
			at = append(at, r.at)
		}
	}
	if len(at) < 3 {
		t.Fatalf("%d restarts reported, want 3", len(at))
	}
	slack := 50 * time.Millisecond
	if gap := at[1].Sub(at[0]); gap < 2*base-slack {
		t.Errorf("second restart %s after the first, want at least the doubled back-off %s", gap, 2*base)
	}
	if gap := at[2].Sub(at[1]); gap < 4*base-slack {
		t.Errorf("third restart %s after the second, want at least %s", gap, 4*base)
	}
}

func TestNoRestartWhenPolicySaysSo(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	for _, tc := range []struct {
		policy, script string
		code           int
	}{
		{task.RestartOnFailure, "sleep 0.2; exit 0", 0},
		{task.RestartNever, "sleep 0.2; exit 4", 4},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			id := e.run(tc.policy, tc.script, nil)
			got := e.waitFor(id, 30*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
			c := got.Containers[0]
			if c.RestartCount != 0 {
				t.Errorf("restart count %d, want 0", c.RestartCount)
			}
			if c.ExitCode == nil || *c.ExitCode != tc.code {
				t.Errorf("exit code %v, want %d", c.ExitCode, tc.code)
			}
			if got.StopCode != task.StopCodeEssentialContainerExited {
				t.Errorf("stop code %q, want %s", got.StopCode, task.StopCodeEssentialContainerExited)
			}
		})
	}
}

func TestRestartOnFailureRestartsAFailure(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	// Fails on its first run, succeeds on the next: the writable layer is
	// kept across the restart.
	id := e.run(task.RestartOnFailure, "if [ -e /root/failed ]; then exit 0; fi; touch /root/failed; exit 2", nil)
	got := e.waitFor(id, 30*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	c := got.Containers[0]
	if c.RestartCount != 1 || c.ExitCode == nil || *c.ExitCode != 0 || c.LastExitCode == nil || *c.LastExitCode != 2 {
		t.Errorf("restart count %d, exit code %v, last exit code %v; want 1, 0 and 2", c.RestartCount, c.ExitCode, c.LastExitCode)
	}
}

func TestLivenessExecProbeRestarts(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	// Healthy for about a second each run, then the probe's file goes.
	id := e.run(task.RestartAlways, "touch /tmp/healthy; sleep 1; rm /tmp/healthy; sleep 1000", func(c *task.Container) {
		c.StopTimeout = time.Second
		c.LivenessProbe = &task.Probe{Exec: []string{"cat", "/tmp/healthy"}, Period: 200 * time.Millisecond,
			Timeout: 2 * time.Second, FailureThreshold: 2}
	})
	got := e.waitFor(id, 40*time.Second, "a restart", func(t *task.Task) bool { return t.Containers[0].RestartCount >= 1 })
	c := got.Containers[0]
	if got.LastStatus != task.StatusRunning {
		t.Errorf("task is %s, want RUNNING", got)
	}
	// sh as PID 1 ignores SIGTERM: SIGKILL after the stop timeout.
	if c.LastExitCode == nil || (*c.LastExitCode != 137 && *c.LastExitCode != 143) {
		t.Errorf("last exit code %v, want 137 or 143 (killed)", c.LastExitCode)
	}
	if d := c.LastFinishedAt.Sub(c.LastStartedAt); d < time.Second {
		t.Errorf("the killed run lasted %s; the liveness probe passed for its first second", d)
	}
}

func TestReadinessHTTPProbe(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	// Serves after a second, for about three seconds, then answers 404.
	script := "mkdir -p /www; echo ok >/www/index.html; sleep 1; /bin/busybox httpd -f -p 8080 -h /www & " +
		"sleep 4; rm /www/index.html; sleep 1000"
	id := e.run(task.RestartAlways, script, func(c *task.Container) {
		c.ReadinessProbe = &task.Probe{HTTPGet: &task.HTTPGetProbe{Path: "/index.html", Port: 8080},
			Period: 200 * time.Millisecond, FailureThreshold: 1}
	})
	e.waitFor(id, 30*time.Second, "started", func(t *task.Task) bool { return t.Containers[0].Started })
	if got := e.cp.get(id); got.Containers[0].Ready {
		t.Errorf("ready before the server listens")
	}
	e.waitFor(id, 10*time.Second, "ready", func(t *task.Task) bool { return t.Containers[0].Ready })
	got := e.waitFor(id, 10*time.Second, "not ready", func(t *task.Task) bool { return !t.Containers[0].Ready })
	if c := got.Containers[0]; c.RestartCount != 0 || c.LastStatus != task.StatusRunning {
		t.Errorf("a failing readiness probe restarted or stopped the container: %+v", c)
	}
}
