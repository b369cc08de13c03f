package microvm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// warmEnv is a runtime on a state directory of the test's, a busybox
// layer and a network for warm VMs.
type warmEnv struct {
	t     *testing.T
	dir   string
	rt    *microvm.Runtime
	layer string
	net   func(*testing.T, *runtime.Spec)
	n     int
}

func newWarmEnv(t *testing.T) *warmEnv {
	needVM(t)
	e := &warmEnv{t: t, dir: t.TempDir(), layer: runtimetest.BusyboxLayer(t)}
	nw := runtimetest.Networking(t)
	e.net = func(t *testing.T, s *runtime.Spec) { nw(t, s) }
	e.rt = newRuntime(t, e.dir)
	return e
}

func (e *warmEnv) id(prefix string) string {
	e.n++
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), e.n)
}

// warm boots a warm VM of the runtime's class with a network and
// registers its deletion and leftovers check.
func (e *warmEnv) warm() runtime.Spec {
	e.t.Helper()
	c := e.rt.WarmClass()
	spec := runtime.Spec{ID: e.id("warm"), MilliCPU: c.MilliCPU, MemoryMiB: c.MemoryMiB, EphemeralStorageGiB: 1}
	e.net(e.t, &spec)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.rt.Warm(ctx, spec); err != nil {
		e.t.Fatalf("Warm: %v", err)
	}
	e.t.Cleanup(func() {
		if err := e.rt.Delete(context.Background(), spec.ID); err != nil && !errdefs.IsNotFound(err) {
			e.t.Errorf("cleanup Delete(%s): %v", spec.ID, err)
		}
		if left := e.rt.Leftovers(spec.ID); len(left) > 0 {
			e.t.Errorf("warm VM %s left %v", spec.ID, left)
		}
	})
	return spec
}

// task is a one-container task on warm sandbox w's network.
func (e *warmEnv) task(w runtime.Spec, milliCPU, memMiB int64, script string) runtime.Spec {
	id := e.id("task")
	spec := runtime.Spec{ID: id, MilliCPU: milliCPU, MemoryMiB: memMiB, EphemeralStorageGiB: 1,
		NetNSPath: w.NetNSPath, EtcDir: w.EtcDir, Hostname: w.Hostname, LogDir: filepath.Join(e.dir, "logs", id),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{e.layer}, Args: []string{"sh", "-c", script}}}}
	e.t.Cleanup(func() {
		if err := e.rt.Delete(context.Background(), id); err != nil && !errdefs.IsNotFound(err) {
			e.t.Errorf("cleanup Delete(%s): %v", id, err)
		}
		if left := e.rt.Leftovers(id); len(left) > 0 {
			e.t.Errorf("task %s left %v", id, left)
		}
	})
	return spec
}

func (e *warmEnv) listed(id string) (runtime.SandboxInfo, bool) {
	e.t.Helper()
	infos, err := e.rt.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == id {
			return in, true
		}
	}
	return runtime.SandboxInfo{}, false
}

// TestWarmLeftovers: Leftovers names what a warm VM holds on the host
// (its QEMU and monitor, its cgroup named by the warm ID, its directory,
// br0 and tap0 in its namespace), and what a claimed one holds under its
// task's ID; after Delete, nothing.
func TestWarmLeftovers(t *testing.T) {
	e := newWarmEnv(t)
	w := e.warm()
	left := strings.Join(e.rt.Leftovers(w.ID), "\n")
	for _, want := range []string{"directory ", "cgroup ", "qemu-system", "monitor", "tap0", "br0"} {
		if !strings.Contains(left, want) {
			t.Errorf("Leftovers of a running warm VM lack %q:\n%s", want, left)
		}
	}
	spec := e.task(w, 250, 256, "sleep 1000")
	ctx := context.Background()
	if err := e.rt.Claim(ctx, w.ID, spec); err != nil {
		t.Fatal(err)
	}
	left = strings.Join(e.rt.Leftovers(spec.ID), "\n")
	for _, want := range []string{"cgroup ", "qemu-system", "tap0", filepath.Join(e.dir, w.ID)} {
		if !strings.Contains(left, want) {
			t.Errorf("Leftovers of a task in a claimed warm VM lack %q:\n%s", want, left)
		}
	}
	if err := e.rt.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{spec.ID, w.ID} {
		if left := e.rt.Leftovers(id); len(left) > 0 {
			t.Errorf("after Delete(%s), %s left %v", spec.ID, id, left)
		}
	}
}

// TestWarmClaimLimits: a task that claims a VM of the warm class gets
// its own size, not the VM's: its containers are OOM-killed beyond its
// memory, and the host's CPU quota of the VM becomes the task's.
func TestWarmClaimLimits(t *testing.T) {
	e := newWarmEnv(t)
	w := e.warm()
	// busybox tail keeps a line without end in memory: 400 MiB of zeros
	// without a newline, in a task of 128 MiB in a VM of 4 GiB.
	spec := e.task(w, 1000, 128, "head -c 256m /dev/zero | tail -n 1 >/dev/null && echo survived; echo done")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.rt.Claim(ctx, w.ID, spec); err != nil {
		t.Fatal(err)
	}
	quota := cgroupFile(t, "cpu", "vessel-microvm/"+w.ID, "cpu.cfs_quota_us", "cpu.max")
	if !strings.HasPrefix(quota, "100000") {
		t.Errorf("the host's CPU quota of a VM claimed by a task of 1 vCPU is %q, want 100000 (the class's is 200000)", quota)
	}
	if err := e.rt.Start(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Wait(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(spec.LogDir, "app.log"))
	if !strings.Contains(string(log), "done") {
		t.Fatalf("the task's log lacks its end: %q", log)
	}
	if strings.Contains(string(log), "survived") {
		t.Errorf("a task of 128 MiB in a claimed VM of 4 GiB held 256 MiB: %q", log)
	}
	usage, _, err := e.rt.Stats(ctx, spec.ID, "app")
	if err != nil {
		t.Fatal(err)
	}
	if usage.MemoryLimitBytes != 128<<20 {
		t.Errorf("the claimed task's memory limit in the guest is %d bytes, want its own 128 MiB (the VM has 4 GiB)", usage.MemoryLimitBytes)
	}
}

// cgroupFile reads file of the host's cgroup path under controller
// (cgroup v1), or v2's file.
func cgroupFile(t *testing.T, controller, path, v1, v2 string) string {
	t.Helper()
	for _, p := range []string{filepath.Join("/sys/fs/cgroup", controller, path, v1), filepath.Join("/sys/fs/cgroup", path, v2)} {
		if data, err := os.ReadFile(p); err == nil {
			return strings.TrimSpace(string(data))
		}
	}
	t.Fatalf("no cgroup file %s or %s for %s", v1, v2, path)
	return ""
}

// TestWarmClaimCrash: a Claim cut short (the process gone, no clean-up)
// leaves the warm sandbox whole before its commit, and the task's
// sandbox whole after it; never both, never neither.
func TestWarmClaimCrash(t *testing.T) {
	e := newWarmEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Before the commit: the warm record names the task, but the task
	// has no record.
	w := e.warm()
	first := e.task(w, 250, 256, "echo first; sleep 1000")
	reset := microvm.SetClaimCrash("committing")
	err := e.rt.Claim(ctx, w.ID, first)
	reset()
	if err == nil {
		t.Fatal("Claim did not stop at the crash point")
	}
	e.rt = newRuntime(t, e.dir)
	if in, ok := e.listed(w.ID); !ok || !in.Warm {
		t.Fatalf("after a crash before the commit, warm sandbox %s is listed as %+v (listed: %v), want warm", w.ID, in, ok)
	}
	if _, ok := e.listed(first.ID); ok {
		t.Fatalf("after a crash before the commit, task %s is listed", first.ID)
	}
	second := e.task(w, 250, 256, "echo second; exit 0")
	if err := e.rt.Claim(ctx, w.ID, second); err != nil {
		t.Fatalf("Claim after a crash before the commit: %v", err)
	}
	if err := e.rt.Start(ctx, second.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rt.Wait(ctx, second.ID, "app"); err != nil || st.Code != 0 {
		t.Fatalf("the task that claimed the warm VM after a crash exited %+v, %v", st, err)
	}

	// After the commit: the task's record names the VM, whose monitor
	// still is the warm one's.
	w2 := e.warm()
	third := e.task(w2, 250, 256, "sleep 1000")
	reset = microvm.SetClaimCrash("committed")
	err = e.rt.Claim(ctx, w2.ID, third)
	reset()
	if err == nil {
		t.Fatal("Claim did not stop at the crash point")
	}
	e.rt = newRuntime(t, e.dir)
	if _, ok := e.listed(w2.ID); ok {
		t.Errorf("after a crash after the commit, warm sandbox %s is still listed", w2.ID)
	}
	if in, ok := e.listed(third.ID); !ok || in.Warm || len(in.Containers) != 1 {
		t.Fatalf("after a crash after the commit, task %s is listed as %+v (listed: %v), want its sandbox", third.ID, in, ok)
	}
	if err := e.rt.Delete(ctx, w2.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Delete of the claimed warm ID after a crash = %v, want not found", err)
	}
	if err := e.rt.Delete(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{third.ID, w2.ID} {
		if left := e.rt.Leftovers(id); len(left) > 0 {
			t.Errorf("after Delete(%s), %s left %v", third.ID, id, left)
		}
	}
}
