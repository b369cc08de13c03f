package gvisor_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// TestCrossRuntimeNetwork puts a runc sandbox and a gvisor sandbox on one
// subnet: each end's TCP goes through a different stack (the host
// kernel's, gVisor's netstack) over the same bridge, in both directions.
func TestCrossRuntimeNetwork(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	gv := newRuntime(t, runsc, runtimetest.StateDir(t))
	rc, err := runc.New(runc.Config{StateDir: runtimetest.StateDir(t)})
	if err != nil {
		t.Skipf("no runc runtime: %v", err)
	}
	attach := runtimetest.Networking(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logs := t.TempDir()

	type box struct {
		rt   runtime.Runtime
		spec runtime.Spec
	}
	mk := func(rt runtime.Runtime, id, script string) box {
		spec := runtime.Spec{ID: id, MilliCPU: 500, MemoryMiB: 256, EphemeralStorageGiB: 1,
			LogDir: filepath.Join(logs, id),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer},
				Args: []string{"/bin/sh", "-c", script}}}}
		return box{rt, spec}
	}
	client := func(addr, msg string) string {
		return fmt.Sprintf(`i=0; while [ $i -lt 100 ]; do
  echo %s | nc %s 8080 && exit 0
  i=$((i+1)); sleep 0.1
done; exit 1`, msg, addr)
	}
	run := func(server, clientBox box, msg string) {
		t.Helper()
		for _, b := range []*box{&server, &clientBox} {
			ip := attach(t, &b.spec)
			if b == &server {
				clientBox.spec.Containers[0].Args[2] = client(ip.String(), msg)
			}
		}
		for _, b := range []box{server, clientBox} {
			if err := b.rt.Create(ctx, b.spec); err != nil {
				t.Fatalf("%s Create: %v", b.rt.Name(), err)
			}
			t.Cleanup(func() {
				if err := b.rt.Delete(context.Background(), b.spec.ID); err != nil {
					t.Errorf("%s Delete: %v", b.rt.Name(), err)
				}
			})
			if err := b.rt.Start(ctx, b.spec.ID, "app"); err != nil {
				t.Fatalf("%s Start: %v", b.rt.Name(), err)
			}
		}
		if st, err := clientBox.rt.Wait(ctx, clientBox.spec.ID, "app"); err != nil || st.Code != 0 {
			t.Fatalf("%s client: %+v, %v", clientBox.rt.Name(), st, err)
		}
		if st, err := server.rt.Wait(ctx, server.spec.ID, "app"); err != nil || st.Code != 0 {
			t.Fatalf("%s server: %+v, %v", server.rt.Name(), st, err)
		}
		data, _ := os.ReadFile(filepath.Join(server.spec.LogDir, "app.log"))
		if !strings.Contains(string(data), " F "+msg+"\n") {
			t.Errorf("%s server got %q, want %q", server.rt.Name(), data, msg)
		}
	}
	// The server hands the connection to cat, which writes what it reads
	// to the log: a plain "nc -l" would read its stdin's end at once and
	// half-close the connection, and the client's nc, seeing that end
	// before its own stdin, could exit 0 without sending (8 times in 200
	// on the host's own busybox; once in CI).
	const server = "nc -l -p 8080 -e sh -c 'cat >&2'"
	t.Run("runc-to-gvisor", func(t *testing.T) {
		run(mk(gv, "xnet-gv-1", server), mk(rc, "xnet-rc-1", ""), "from-runc")
	})
	t.Run("gvisor-to-runc", func(t *testing.T) {
		run(mk(rc, "xnet-rc-2", server), mk(gv, "xnet-gv-2", ""), "from-gvisor")
	})
}

// TestLimitsBindTheSandbox checks from the host that the sandbox's cgroup
// holds every process of the sandbox and its limits: a busy loop in 0.25
// vCPU uses about a quarter of a CPU by the host's accounting (the
// conformance suite measures it from inside, by gVisor's accounting).
func TestLimitsBindTheSandbox(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, runsc, runtimetest.StateDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := runtime.Spec{ID: "limits-1", MilliCPU: 250, MemoryMiB: 128, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", "while :; do :; done"}}}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(ctx, spec.ID)
	if err := rt.Start(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	cpuacct := "/sys/fs/cgroup/cpuacct/vessel/limits-1/cpuacct.usage"
	if _, err := os.Stat(cpuacct); err != nil {
		t.Skipf("no cgroup v1 cpuacct: %v", err)
	}
	read := func(p string) int64 {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		return n
	}
	time.Sleep(500 * time.Millisecond)
	u0, t0 := read(cpuacct), time.Now()
	time.Sleep(2 * time.Second)
	share := float64(read(cpuacct)-u0) / float64(time.Since(t0).Nanoseconds())
	t.Logf("a busy loop in a 0.25 vCPU gVisor sandbox used %.0f%% of a CPU by the host's accounting", share*100)
	if share > 0.30 {
		t.Errorf("sandbox used %.0f%% of a CPU, want <= 30%%", share*100)
	}
	if got := read("/sys/fs/cgroup/memory/vessel/limits-1/memory.limit_in_bytes"); got != 128<<20 {
		t.Errorf("memory limit %d, want %d", got, 128<<20)
	}
	// Every process of the sandbox (sentry, gofer, systrap stubs) is in
	// its cgroup; none is left in the host's root cgroup.
	procs, _ := os.ReadFile("/sys/fs/cgroup/pids/vessel/limits-1/.sandbox/cgroup.procs")
	if len(strings.Fields(string(procs))) < 2 {
		t.Errorf("sandbox cgroup holds %q, want the sentry and its gofer at least", procs)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}

// TestConfinement checks what a container is allowed inside the sandbox:
// runc's capability set but CAP_NET_RAW, no new privileges, the OCI seccomp profile
// (applied by the sentry, --oci-seccomp), Fargate's file limits, the
// task's PidsLimit as RLIMIT_NPROC, read-only /etc files.
func TestConfinement(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, runsc, runtimetest.StateDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs := t.TempDir()
	script := `grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
echo "nproc $(ulimit -Su)"
mkdir /tmp/m && (mount -t tmpfs none /tmp/m 2>/dev/null && echo mount-ok || echo mount-refused)
(echo x > /etc/hostname) 2>/dev/null && echo etc-writable || echo etc-ro
echo "etc-hostname $(cat /etc/hostname)"`
	spec := runtime.Spec{ID: "conf-1", MilliCPU: 1000, MemoryMiB: 256, LogDir: logs, Hostname: "box",
		EphemeralStorageGiB: 1, PidsLimit: 100,
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", script}}}}
	out := runtimetest.RunApp(t, ctx, rt, spec)
	t.Logf("inside the sandbox:\n%s", out)
	for _, want := range []string{
		// runc's set without CAP_NET_RAW: runsc drops it unless --net-raw
		// (no raw sockets in the sandbox's netstack).
		"CapEff:\t00000000a80405fb", "CapBnd:\t00000000a80405fb", "NoNewPrivs:\t1", "Seccomp:\t2",
		"nofile 1024 ", "nproc 100", "mount-refused", "etc-ro", "etc-hostname box",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q", want)
		}
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}

// TestNewRejects checks New's errors: a missing RunscPath is the caller's
// mistake, a runsc that is not there or does not work makes the runtime
// unavailable on this host.
func TestNewRejects(t *testing.T) {
	if _, err := gvisor.New(gvisor.Config{StateDir: t.TempDir()}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New without RunscPath = %v, want invalid argument", err)
	}
	if _, err := gvisor.New(gvisor.Config{StateDir: t.TempDir(), RunscPath: "/bin/true", Platform: "hyperspace"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New with an unknown platform = %v, want invalid argument", err)
	}
	for _, p := range []string{"/nonexistent/runsc", "/bin/false"} {
		if _, err := gvisor.New(gvisor.Config{StateDir: t.TempDir(), RunscPath: p}); !errdefs.IsUnavailable(err) {
			t.Errorf("New with runsc %s = %v, want unavailable", p, err)
		}
	}
}

// TestRunscLogCapped: runsc writes one log per sandbox, on the sandbox's
// ephemeral storage (bounded by the task's size, not the host's disk),
// emptied once beyond 1 MiB before the next runsc command; no debug log
// directory with a file per command.
func TestRunscLogCapped(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	dir := runtimetest.StateDir(t)
	rt := newRuntime(t, runsc, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := runtime.Spec{ID: "log-1", MilliCPU: 500, MemoryMiB: 256, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer},
			Args: []string{"/bin/sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.1; done"}}}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(ctx, spec.ID)
	if err := rt.Start(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	sb := filepath.Join(dir, spec.ID)
	log := filepath.Join(sb, "rw", "runsc.log")
	if _, err := os.Stat(log); err != nil {
		t.Fatalf("no runsc log on the sandbox's storage: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(sb, "runsc-debug")); len(entries) > 0 {
		t.Errorf("runsc wrote %d debug logs (one per command)", len(entries))
	}
	if !isMountPoint(t, filepath.Join(sb, "rw")) {
		t.Logf("the sandbox's storage is a plain directory here (no loop device): the log is bounded by the cap only")
	}
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 2<<20))
	f.Close()
	if err := rt.Signal(ctx, spec.ID, "app", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.Wait(ctx, spec.ID, "app"); err != nil || st.Code != 143 {
		t.Fatalf("Wait: %+v, %v", st, err)
	}
	if fi, err := os.Stat(log); err != nil || fi.Size() > 1<<20 {
		t.Errorf("runsc log after a command: %v, %v; want at most 1 MiB", fi.Size(), err)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}

func isMountPoint(t *testing.T, path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
