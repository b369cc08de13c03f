package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// Harness tells the suite how to make the runtime under test.
type Harness struct {
	// New returns a runtime keeping its state in dir. Calling it again with
	// the same dir stands for an agent restart: the new runtime must find
	// the sandboxes the old one made.
	New func(t *testing.T, dir string) runtime.Runtime
	// Image is the image every container of the suite uses; it must have
	// /bin/sh, sleep, echo, pwd, id, dd, yes, nc and a user "nobody"
	// (65534:65534) in /etc/passwd (busybox has them all).
	Image string
	// Timeout bounds each blocking call; 30 s by default.
	Timeout time.Duration

	// Real is set for runtimes that run real processes: the suite then
	// also checks output, environment, limits and exec. Others skip those
	// cases.
	Real bool
	// Prepare, if set, completes each spec before Create: image layers,
	// and anything else the runtime needs. The suite has already set ID,
	// size, containers, labels and a LogDir of its own.
	Prepare func(t *testing.T, spec *runtime.Spec)
	// Network, if set, gives the sandbox a network (sets NetNSPath and
	// EtcDir) and returns its address; it registers its own cleanup. The
	// reachability case is skipped without it.
	Network func(t *testing.T, spec *runtime.Spec) netip.Addr
	// Leftovers, if set, lists what of sandbox id is still on the host
	// (processes, mounts, cgroups, devices...). The suite calls it after
	// every Delete and fails on anything listed.
	Leftovers func(t *testing.T, id string) []string
	// HostCPU, if set, returns the CPU time the host has charged to the
	// whole sandbox so far. The CPU quota case then measures from the host
	// rather than from inside the sandbox, for runtimes whose own clock
	// accounting is coarse (gVisor counts 10 ms ticks).
	HostCPU func(t *testing.T, id string) time.Duration
	// WithheldCapabilities are capabilities (CAP_ names) the runtime never
	// grants a container, even when its Security lists them (gVisor
	// withholds CAP_NET_RAW: its netstack has no raw sockets).
	WithheldCapabilities []string
	// NoSeccompStatus, when set, says why the runtime's /proc does not
	// show a container's seccomp mode; the security case then does not
	// check it.
	NoSeccompStatus string
}

type suite struct {
	Harness
	t    *testing.T
	rt   runtime.Runtime
	dir  string
	logs string // each sandbox's LogDir is logs/<id>
	n    int
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 30 * time.Second
	}
	cases := []struct {
		name string
		fn   func(*suite)
	}{
		{"ExitCodes", testExitCodes},
		{"WaitAfterExitAndTwice", testWaitAfterExit},
		{"SIGTERMStops", testSIGTERM},
		{"SIGKILLAfterIgnoredSIGTERM", testSIGKILL},
		{"SignalExitedContainerIsNotAnError", testSignalExited},
		{"SeveralContainersInOneSandbox", testSeveralContainers},
		{"ContainerNamesThatArePrefixes", testPrefixNames},
		{"ErrorsForMissingThings", testMissing},
		{"InvalidSpecs", testInvalidSpecs},
		{"AdoptionAfterRestart", testAdoption},
		{"RestartExitedContainer", testRestart},
		{"RestartConflicts", testRestartConflicts},
		{"DeleteLeavesNothing", testDelete},
		{"Output", testOutput},
		{"EnvWorkingDirUser", testEnv},
		{"Hostname", testHostname},
		{"Exec", testExec},
		{"ExecStdin", testExecStdin},
		{"ExecTTY", testExecTTY},
		{"MemoryLimitKills", testOOM},
		{"CPUQuota", testCPUQuota},
		{"PidsLimit", testPidsLimit},
		{"Stats", testStats},
		{"NetworkBetweenSandboxes", testNetwork},
		{"VolumeFiles", testVolumeFiles},
		{"VolumeReadOnly", testVolumeReadOnly},
		{"VolumeSharedBetweenContainers", testVolumeShared},
		{"VolumeOwnership", testVolumeOwnership},
		{"VolumeSubPathSwappedBeforeStart", testSubPathSwappedBeforeStart},
		{"VolumeSubPathSwappedBeforeRestart", testSubPathSwappedBeforeRestart},
	}
	cases = append(cases, securityCases...)
	cases = append(cases, warmCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := StateDir(t)
			s := &suite{Harness: h, t: t, dir: dir, logs: t.TempDir(), rt: h.New(t, dir)}
			c.fn(s)
		})
	}
}

// StateDir is a temporary directory for a runtime's state, removed after
// the test once the runtime's pool of formatted images below it has
// stopped refilling (toolkit.StopExt4Pools).
func StateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { toolkit.StopExt4Pools(dir) })
	return dir
}

func (s *suite) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.Timeout)
}

// sandbox creates a sandbox of 0.25 vCPU / 512 MiB with the given
// containers and registers its deletion.
func (s *suite) sandbox(containers ...runtime.ContainerSpec) string {
	s.t.Helper()
	return s.sandboxWith(nil, containers...).ID
}

// sandboxWith is sandbox with a chance to change the spec (after the
// harness's Prepare) before Create; it returns the spec created.
func (s *suite) sandboxWith(change func(*runtime.Spec), containers ...runtime.ContainerSpec) runtime.Spec {
	s.t.Helper()
	s.n++
	// Unique across the suites of several runtimes running at once: their
	// cleanups look for processes and cgroups by sandbox ID.
	id := fmt.Sprintf("rt-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), s.n)
	for i := range containers {
		containers[i].Image = s.Image
	}
	spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, Containers: containers,
		LogDir: filepath.Join(s.logs, id), Labels: map[string]string{"suite": "runtimetest"}}
	if s.Prepare != nil {
		s.Prepare(s.t, &spec)
	}
	if change != nil {
		change(&spec)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Create(ctx, spec); err != nil {
		s.t.Fatalf("Create(%s): %v", id, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
		defer cancel()
		err := s.rt.Delete(ctx, id)
		if err != nil && !errdefs.IsNotFound(err) {
			s.t.Errorf("cleanup Delete(%s): %v", id, err)
		}
		s.leftovers(id)
	})
	return spec
}

// leftovers fails the test if the harness finds anything of sandbox id
// still on the host.
func (s *suite) leftovers(id string) {
	s.t.Helper()
	if s.Leftovers == nil {
		return
	}
	for _, l := range s.Leftovers(s.t, id) {
		s.t.Errorf("sandbox %s left behind: %s", id, l)
	}
}

// service runs until it is signalled, and ends with 143 on SIGTERM. It
// handles SIGTERM itself because a container's main process may be PID 1 of
// its namespace, which the kernel does not end on a signal it has no
// handler for (as on Fargate and Docker without an init process).
const service = "trap 'exit 143' TERM; echo ready; while true; do sleep 0.1; done"

func sh(name, script string) runtime.ContainerSpec {
	return runtime.ContainerSpec{Name: name, Args: []string{"/bin/sh", "-c", script}}
}

func (s *suite) start(id, c string) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Start(ctx, id, c); err != nil {
		s.t.Fatalf("Start(%s, %s): %v", id, c, err)
	}
}

func (s *suite) wait(id, c string) runtime.ExitStatus {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := s.rt.Wait(ctx, id, c)
	if err != nil {
		s.t.Fatalf("Wait(%s, %s): %v", id, c, err)
	}
	return st
}

// running asserts that the container has not exited within d.
func (s *suite) running(id, c string, d time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := s.rt.Wait(ctx, id, c)
	if err == nil {
		s.t.Fatalf("container %s/%s exited with %d, want it still running", id, c, st.Code)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		s.t.Fatalf("Wait(%s, %s) = %v, want the context's deadline", id, c, err)
	}
}

// logged waits until container c of sandbox id has written a line holding
// text to its log, for runtimes that run real processes (a simulated
// sandbox has no output: it returns at once).
func (s *suite) logged(id, c, text string) {
	s.t.Helper()
	if !s.Real {
		return
	}
	path := filepath.Join(s.logs, id, c+".log")
	for deadline := time.Now().Add(s.Timeout); ; time.Sleep(20 * time.Millisecond) {
		if data, _ := os.ReadFile(path); strings.Contains(string(data), text) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("container %s/%s did not log %q within %v", id, c, text, s.Timeout)
		}
	}
}

func (s *suite) signal(id, c string, sig syscall.Signal) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Signal(ctx, id, c, sig); err != nil {
		s.t.Fatalf("Signal(%s, %s, %v): %v", id, c, sig, err)
	}
}

func testExitCodes(s *suite) {
	for _, code := range []int{0, 1, 3, 42} {
		id := s.sandbox(sh("app", fmt.Sprintf("exit %d", code)))
		s.start(id, "app")
		if st := s.wait(id, "app"); st.Code != code {
			s.t.Errorf("exit %d: got code %d", code, st.Code)
		}
	}
}

func testWaitAfterExit(s *suite) {
	id := s.sandbox(sh("app", "sleep 0.2; exit 7"))
	s.start(id, "app")
	first := s.wait(id, "app")
	second := s.wait(id, "app")
	if first.Code != 7 || second.Code != 7 {
		s.t.Fatalf("codes %d then %d, want 7 twice", first.Code, second.Code)
	}
	if first.ExitedAt.IsZero() {
		s.t.Errorf("ExitedAt not set")
	}
}

func testSIGTERM(s *suite) {
	id := s.sandbox(sh("app", service))
	s.start(id, "app")
	s.logged(id, "app", "ready") // the trap is set: a signal before it would be lost
	s.running(id, "app", 300*time.Millisecond)
	s.signal(id, "app", syscall.SIGTERM)
	if st := s.wait(id, "app"); st.Code != 143 {
		s.t.Fatalf("SIGTERM: code %d, want 143", st.Code)
	}
}

func testSIGKILL(s *suite) {
	id := s.sandbox(sh("app", "trap '' TERM; echo ready; while true; do sleep 1; done"))
	s.start(id, "app")
	s.logged(id, "app", "ready")
	s.running(id, "app", 300*time.Millisecond)
	s.signal(id, "app", syscall.SIGTERM)
	s.running(id, "app", 500*time.Millisecond)
	s.signal(id, "app", syscall.SIGKILL)
	if st := s.wait(id, "app"); st.Code != 137 || st.OOMKilled {
		s.t.Fatalf("SIGKILL: code %d, OOMKilled %v; want 137 and false", st.Code, st.OOMKilled)
	}
}

func testSignalExited(s *suite) {
	id := s.sandbox(sh("app", "exit 0"))
	s.start(id, "app")
	s.wait(id, "app")
	s.signal(id, "app", syscall.SIGTERM)
	if st := s.wait(id, "app"); st.Code != 0 {
		s.t.Fatalf("signal after exit changed the code to %d", st.Code)
	}
}

func testSeveralContainers(s *suite) {
	id := s.sandbox(sh("main", "sleep 1000"), sh("side", "exit 5"))
	s.start(id, "main")
	s.start(id, "side")
	if st := s.wait(id, "side"); st.Code != 5 {
		s.t.Fatalf("side: code %d, want 5", st.Code)
	}
	s.running(id, "main", 200*time.Millisecond)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Start(ctx, id, "side"); !errdefs.IsConflict(err) {
		s.t.Errorf("second Start of a container = %v, want a conflict", err)
	}
}

// testPrefixNames: containers whose names are prefixes of each other
// (app, apple; their IDs are too) are each reached by their own name, by
// Start, Signal, Wait and Stats, and once one has exited a signal to it
// reaches neither (an OCI runtime that takes a unique prefix of an ID for
// the ID would reach the other).
func testPrefixNames(s *suite) {
	id := s.sandbox(sh("app", service), sh("apple", service), sh("ap", service))
	for _, c := range []string{"app", "apple", "ap"} {
		s.start(id, c)
	}
	for _, c := range []string{"app", "apple", "ap"} {
		s.logged(id, c, "ready")
	}
	if st, ok := s.rt.(runtime.Statser); ok && s.Real {
		ctx, cancel := s.ctx()
		for _, c := range []string{"app", "apple", "ap"} {
			if _, _, err := st.Stats(ctx, id, c); err != nil {
				s.t.Errorf("Stats(%s, %s): %v", id, c, err)
			}
		}
		cancel()
	}
	// stop ends container c with SIGTERM (code 143), and checks the
	// others still run.
	stop := func(c string, others ...string) {
		s.t.Helper()
		s.signal(id, c, syscall.SIGTERM)
		if st := s.wait(id, c); st.Code != 143 {
			s.t.Fatalf("%s: code %d after SIGTERM, want 143", c, st.Code)
		}
		for _, o := range others {
			s.running(id, o, 200*time.Millisecond)
		}
	}
	stop("app", "apple", "ap")
	// app has exited (it is still there, not deleted): signals to it reach
	// nobody.
	s.signal(id, "app", syscall.SIGTERM)
	s.signal(id, "app", syscall.SIGKILL)
	if st := s.wait(id, "app"); st.Code != 143 {
		s.t.Fatalf("app: code %d after signals to the exited container, want still 143", st.Code)
	}
	s.running(id, "apple", 300*time.Millisecond)
	stop("ap", "apple")
	stop("apple")
}

func testMissing(s *suite) {
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.rt.Wait(ctx, "no-such-sandbox", "app"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Wait on a missing sandbox = %v, want not found", err)
	}
	if err := s.rt.Delete(ctx, "no-such-sandbox"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Delete of a missing sandbox = %v, want not found", err)
	}
	id := s.sandbox(sh("app", "exit 0"))
	if err := s.rt.Start(ctx, id, "nope"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Start of a missing container = %v, want not found", err)
	}
	again := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, LogDir: filepath.Join(s.logs, id+"-again"),
		Containers: []runtime.ContainerSpec{{Name: "app", Image: s.Image, Args: []string{"true"}}}}
	if s.Prepare != nil {
		s.Prepare(s.t, &again)
	}
	err := s.rt.Create(ctx, again)
	if !errdefs.IsAlreadyExists(err) {
		s.t.Errorf("Create of an existing sandbox = %v, want already exists", err)
	}
}

func testAdoption(s *suite) {
	running := s.sandbox(sh("app", service))
	exiting := s.sandbox(sh("app", "sleep 0.5; exit 9"))
	s.start(running, "app")
	s.start(exiting, "app")

	// The agent goes away; a new one starts on the same state.
	s.rt = s.New(s.t, s.dir)
	time.Sleep(700 * time.Millisecond) // let "exiting" exit while nobody waits

	ctx, cancel := s.ctx()
	defer cancel()
	infos, err := s.rt.List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	found := map[string]runtime.SandboxInfo{}
	for _, in := range infos {
		found[in.ID] = in
	}
	for _, id := range []string{running, exiting} {
		in, ok := found[id]
		if !ok {
			s.t.Fatalf("sandbox %s not listed after restart (listed %d)", id, len(infos))
		}
		if in.Labels["suite"] != "runtimetest" {
			s.t.Errorf("sandbox %s lost its labels: %v", id, in.Labels)
		}
	}
	if st := s.wait(exiting, "app"); st.Code != 9 {
		s.t.Errorf("exit code of a container that exited while the agent was away: %d, want 9", st.Code)
	}
	s.running(running, "app", 200*time.Millisecond)
	s.signal(running, "app", syscall.SIGTERM)
	if st := s.wait(running, "app"); st.Code != 143 {
		s.t.Errorf("adopted container: SIGTERM gave %d, want 143", st.Code)
	}
}

func testDelete(s *suite) {
	id := s.sandbox(sh("app", "sleep 1000"), sh("side", service), sh("never", "sleep 1000"))
	s.start(id, "app")
	s.start(id, "side")
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Delete(ctx, id); err != nil {
		s.t.Fatalf("Delete of a running sandbox: %v", err)
	}
	infos, err := s.rt.List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == id {
			s.t.Fatalf("sandbox %s still listed after Delete", id)
		}
	}
	if _, err := s.rt.Wait(ctx, id, "app"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Wait after Delete = %v, want not found", err)
	}
	s.leftovers(id)
	// A fresh runtime on the same state must not find it either.
	again, err := s.New(s.t, s.dir).List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, in := range again {
		if in.ID == id {
			s.t.Fatalf("deleted sandbox %s came back after restart", id)
		}
	}
}

func (s *suite) restarter() runtime.Restarter {
	s.t.Helper()
	r, ok := s.rt.(runtime.Restarter)
	if !ok {
		s.t.Fatalf("runtime %s does not implement runtime.Restarter", s.rt.Name())
	}
	return r
}

func (s *suite) restarts(id, c string) int {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	infos, err := s.rt.List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, in := range infos {
		for _, cs := range in.Containers {
			if in.ID == id && cs.Name == c {
				return cs.Restarts
			}
		}
	}
	s.t.Fatalf("container %s/%s not listed", id, c)
	return 0
}

// testRestart restarts an exited container twice: the new run keeps the
// writable layer, its output goes to the same log, and Wait reports its
// exit; an adopting runtime still counts the restarts.
func testRestart(s *suite) {
	// Real runtimes: the first run leaves a file in the writable layer, the
	// next ones see it. Sim only knows the exit code and timing.
	script := "sleep 0.3; exit 3"
	if s.Real {
		script = "if [ -e /root/ran ]; then echo again; sleep 0.3; exit 5; fi; touch /root/ran; echo first; exit 3"
	}
	spec := s.sandboxWith(nil, sh("app", script))
	id := spec.ID
	s.start(id, "app")
	if st := s.wait(id, "app"); st.Code != 3 {
		s.t.Fatalf("first run: code %d, want 3", st.Code)
	}
	want := 3
	if s.Real {
		want = 5
	}
	for i := 1; i <= 2; i++ {
		ctx, cancel := s.ctx()
		err := s.restarter().Restart(ctx, id, "app")
		cancel()
		if err != nil {
			s.t.Fatalf("Restart #%d: %v", i, err)
		}
		s.running(id, "app", 100*time.Millisecond)
		st := s.wait(id, "app")
		if st.Code != want {
			s.t.Fatalf("run after restart #%d: code %d, want %d", i, st.Code, want)
		}
		if st.ExitedAt.IsZero() {
			s.t.Errorf("run after restart #%d: ExitedAt not set", i)
		}
		if n := s.restarts(id, "app"); n != i {
			s.t.Errorf("List after restart #%d: Restarts %d, want %d", i, n, i)
		}
	}
	if s.Real {
		if out, _ := s.output(spec, "app"); out != "first\nagain\nagain\n" {
			s.t.Errorf("log after two restarts: stdout %q, want \"first\\nagain\\nagain\\n\"", out)
		}
	}
	// A new agent finds the count.
	s.rt = s.New(s.t, s.dir)
	if n := s.restarts(id, "app"); n != 2 {
		s.t.Errorf("List after an agent restart: Restarts %d, want 2", n)
	}
	if st := s.wait(id, "app"); st.Code != want {
		s.t.Errorf("Wait after an agent restart: code %d, want %d", st.Code, want)
	}
}

// testRestartConflicts: only an exited container can be restarted.
func testRestartConflicts(s *suite) {
	id := s.sandbox(sh("app", service), sh("never", "exit 0"))
	s.start(id, "app")
	ctx, cancel := s.ctx()
	defer cancel()
	r := s.restarter()
	if err := r.Restart(ctx, id, "app"); !errdefs.IsConflict(err) {
		s.t.Errorf("Restart of a running container = %v, want a conflict", err)
	}
	if err := r.Restart(ctx, id, "never"); !errdefs.IsConflict(err) {
		s.t.Errorf("Restart of a container never started = %v, want a conflict", err)
	}
	if err := r.Restart(ctx, id, "nope"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Restart of a missing container = %v, want not found", err)
	}
	if err := r.Restart(ctx, "no-such-sandbox", "app"); !errdefs.IsNotFound(err) {
		s.t.Errorf("Restart in a missing sandbox = %v, want not found", err)
	}
	s.running(id, "app", 100*time.Millisecond)
}
