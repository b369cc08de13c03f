package gvisor_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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

// TestWarmHostname: a claim gives the booted sandbox the task's hostname
// (runsc has one UTS name per sandbox, set at boot), which every
// container of the task then has; a task without one runs under the
// warm one; a warm sandbox without the hostname setter (made by an older
// agent) refuses another hostname with a conflict and stays for the
// next task.
func TestWarmHostname(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	dir := t.TempDir()
	rt := newRuntime(t, runsc, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	class := rt.WarmClass()
	warm := func(id, hostname string) runtime.Spec {
		w := runtime.Spec{ID: id, MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB, EphemeralStorageGiB: 1, Hostname: hostname}
		if err := rt.Warm(ctx, w); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Delete(context.Background(), id) })
		return w
	}
	printHostname := func(name string) runtime.ContainerSpec {
		return runtime.ContainerSpec{Name: name, Layers: []string{layer}, Args: []string{"/bin/sh", "-c", "hostname evil 2>/dev/null; cat /proc/sys/kernel/hostname; hostname"}}
	}
	task := func(id, hostname string, names ...string) runtime.Spec {
		s := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1, LogDir: t.TempDir(), Hostname: hostname}
		for _, n := range names {
			s.Containers = append(s.Containers, printHostname(n))
		}
		t.Cleanup(func() { rt.Delete(context.Background(), id) })
		return s
	}
	// run starts every container of claimed task s and returns each one's
	// output lines.
	run := func(s runtime.Spec) map[string][]string {
		out := map[string][]string{}
		for _, c := range s.Containers {
			if err := rt.Start(ctx, s.ID, c.Name); err != nil {
				t.Fatal(err)
			}
			if st, err := rt.Wait(ctx, s.ID, c.Name); err != nil || st.Code != 0 {
				t.Fatalf("%s: Wait = %+v, %v", c.Name, st, err)
			}
			data, _ := os.ReadFile(filepath.Join(s.LogDir, c.Name+".log"))
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if f := strings.SplitN(line, " ", 4); len(f) == 4 {
					out[c.Name] = append(out[c.Name], f[3])
				}
			}
		}
		return out
	}

	w1 := warm("gwarm-host-w1", "box")
	pod := task("gwarm-host-t1", "web-7f9c4d-x2x", "app", "sidecar")
	if err := rt.Claim(ctx, w1.ID, pod); err != nil {
		t.Fatalf("Claim with another hostname: %v", err)
	}
	for name, lines := range run(pod) {
		if want := []string{"web-7f9c4d-x2x", "web-7f9c4d-x2x"}; !slices.Equal(lines, want) {
			t.Errorf("container %s of the claimed sandbox: hostname %q, want the task's %q", name, lines, want)
		}
	}

	w2 := warm("gwarm-host-w2", "box2")
	if err := os.Remove(filepath.Join(dir, w2.ID, "pause", "rootfs", "sethostname")); err != nil {
		t.Fatal(err)
	}
	old := task("gwarm-host-t2", "other", "app")
	if err := rt.Claim(ctx, w2.ID, old); !errdefs.IsConflict(err) {
		t.Fatalf("Claim with another hostname of a warm sandbox without the setter = %v, want a conflict", err)
	}
	old.Hostname = ""
	if err := rt.Claim(ctx, w2.ID, old); err != nil {
		t.Fatalf("Claim without a hostname after a refused one: %v", err)
	}
	if got := run(old)["app"]; !slices.Equal(got, []string{"box2", "box2"}) {
		t.Errorf("a task without a hostname: %q, want the warm one, box2", got)
	}
	for _, id := range []string{pod.ID, old.ID} {
		runtimetest.DeleteLeavesNothing(t, ctx, rt, id)
	}
	for _, id := range []string{w1.ID, w2.ID} {
		if left := rt.Leftovers(id); len(left) > 0 {
			t.Errorf("left behind under warm ID %s: %q", id, left)
		}
	}
}
