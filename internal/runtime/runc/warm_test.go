package runc_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// TestWarmLeftovers: Leftovers sees everything a warm runc sandbox holds
// (its directory, ephemeral storage mount and loop device, cgroup), and
// once claimed, under its task's ID, the mapping to it, its cgroup and
// its processes; Delete of the task leaves nothing under either ID. The
// claim raises the warm sandbox's limits (a runc warm sandbox serves any
// size): the cgroup holds the task's.
func TestWarmLeftovers(t *testing.T) {
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, t.TempDir())
	w := runtime.Spec{ID: "warm-left-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1}
	task := runtime.Spec{ID: "warm-left-t", MilliCPU: 2000, MemoryMiB: 2048, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}}
	runtimetest.WarmLeftovers(t, limitsChecker{rt, t, task}, w, task,
		[]string{"directory", "mount", "loop device", "cgroup"},
		[]string{"directory", "mapping", "mount", "loop device", "cgroup", "process"})
}

// limitsChecker checks, when Leftovers is first asked about the claimed
// task, that the warm sandbox's cgroup holds the task's limits.
type limitsChecker struct {
	*runc.Runtime
	t    *testing.T
	task runtime.Spec
}

func (c limitsChecker) Leftovers(id string) []string {
	left := c.Runtime.Leftovers(id)
	if id != c.task.ID || len(left) == 0 {
		return left
	}
	cg, err := toolkit.DetectCgroups()
	if err != nil || cg.V2() {
		return left
	}
	mem := filepath.Join(cg.Controller("memory"), "vessel", "warm-left-w", "memory.limit_in_bytes")
	quota := filepath.Join(cg.Controller("cpu"), "vessel", "warm-left-w", "cpu.cfs_quota_us")
	for path, want := range map[string]string{mem: "2147483648", quota: "200000"} {
		if data, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(data)) != want {
			c.t.Errorf("claimed warm sandbox's %s = %q, %v; want the task's %s", path, data, err, want)
		}
	}
	return left
}

// TestWarmClaimedCalls: a claimed warm sandbox answers Start, Exec,
// Stats, Signal, Wait, Restart and Delete by its task's ID only.
func TestWarmClaimedCalls(t *testing.T) {
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, t.TempDir())
	w := runtime.Spec{ID: "warm-calls-w", MilliCPU: 1000, MemoryMiB: 1024, EphemeralStorageGiB: 1}
	task := runtime.Spec{ID: "warm-calls-t", MilliCPU: 250, MemoryMiB: 512, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer},
			Args: []string{"/bin/sh", "-c", "trap 'exit 143' TERM; echo ready; while true; do sleep 0.1; done"}}}}
	runtimetest.WarmClaimedCalls(t, rt, w, task)
}
