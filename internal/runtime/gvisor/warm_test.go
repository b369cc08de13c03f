package gvisor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// TestWarmLeftovers: Leftovers sees everything a warm gVisor sandbox
// holds (its directory, storage mount and loop device, cgroups, runsc's
// state and the booted sandbox's processes, all named by the warm ID),
// and once claimed, under its task's ID, the mapping to it and the same;
// Delete of the task leaves nothing under either ID.
func TestWarmLeftovers(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, runsc, t.TempDir())
	class := rt.WarmClass()
	w := runtime.Spec{ID: "gwarm-left-w", MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB, EphemeralStorageGiB: 1, Hostname: "box"}
	task := runtime.Spec{ID: "gwarm-left-t", MilliCPU: 500, MemoryMiB: 512, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}}
	runtimetest.WarmLeftovers(t, rt, w, task,
		[]string{"directory", "mount", "loop device", "cgroup", "runsc state", "process"},
		[]string{"directory", "mapping", "mount", "loop device", "cgroup", "process"})
}

// TestWarmHostname: a gVisor sandbox's hostname is fixed when it boots:
// a task that asks for another is refused with a conflict and the warm
// sandbox stays for the next; a task without one, or with the same, runs
// under the warm one.
func TestWarmHostname(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, runsc, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	class := rt.WarmClass()
	w := runtime.Spec{ID: "gwarm-host-w", MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB, EphemeralStorageGiB: 1, Hostname: "box"}
	if err := rt.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	task := runtime.Spec{ID: "gwarm-host-t", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1, LogDir: t.TempDir(), Hostname: "other",
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", "cat /proc/sys/kernel/hostname"}}}}
	t.Cleanup(func() {
		rt.Delete(context.Background(), task.ID)
		rt.Delete(context.Background(), w.ID)
	})
	if err := rt.Claim(ctx, w.ID, task); !errdefs.IsConflict(err) {
		t.Fatalf("Claim with another hostname = %v, want a conflict", err)
	}
	task.Hostname = ""
	if err := rt.Claim(ctx, w.ID, task); err != nil {
		t.Fatalf("Claim without a hostname after a refused one: %v", err)
	}
	if err := rt.Start(ctx, task.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.Wait(ctx, task.ID, "app"); err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	data, _ := os.ReadFile(filepath.Join(task.LogDir, "app.log"))
	out := ""
	if f := strings.SplitN(strings.TrimSpace(string(data)), " ", 4); len(f) == 4 {
		out = f[3]
	}
	if out != "box" {
		t.Errorf("the claimed sandbox's hostname is %q, want the warm one, box", out)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, task.ID)
	if left := rt.Leftovers(w.ID); len(left) > 0 {
		t.Errorf("left behind under the warm ID: %q", left)
	}
}

// TestWarmClaimedCalls: a claimed warm sandbox answers Start, Exec,
// Stats, Signal, Wait, Restart and Delete by its task's ID only.
func TestWarmClaimedCalls(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, runsc, t.TempDir())
	class := rt.WarmClass()
	w := runtime.Spec{ID: "gwarm-calls-w", MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB, EphemeralStorageGiB: 1}
	task := runtime.Spec{ID: "gwarm-calls-t", MilliCPU: 1000, MemoryMiB: 512, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer},
			Args: []string{"/bin/sh", "-c", "trap 'exit 143' TERM; echo ready; while true; do sleep 0.1; done"}}}}
	runtimetest.WarmClaimedCalls(t, rt, w, task)
}
