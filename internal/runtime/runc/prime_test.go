package runc_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// primingRuntime primes each warm sandbox it makes with the containers
// of task (as the agent would: the warm sandbox's ID, namespace and
// hostname, no log directory) and, after each Claim, checks which
// containers runc holds: with kept, the primed ones under the warm
// sandbox's names and none under the task's; without, the opposite.
type primingRuntime struct {
	*runc.Runtime
	t    *testing.T
	task runtime.Spec
	kept bool
}

func (p primingRuntime) Warm(ctx context.Context, spec runtime.Spec) error {
	if err := p.Runtime.Warm(ctx, spec); err != nil {
		return err
	}
	primed := spec
	primed.Containers, primed.Hostname = p.task.Containers, p.task.ID
	if err := p.Prime(ctx, primed); err != nil {
		return err
	}
	for _, c := range p.task.Containers {
		if st := runcState(p.Runtime, spec.ID+"-"+c.Name); st != "created" {
			p.t.Errorf("primed container %s-%s is %q in runc, want created", spec.ID, c.Name, st)
		}
	}
	return nil
}

func (p primingRuntime) Claim(ctx context.Context, warmID string, spec runtime.Spec) error {
	if err := p.Runtime.Claim(ctx, warmID, spec); err != nil {
		return err
	}
	for _, c := range spec.Containers {
		primed, own := runcState(p.Runtime, warmID+"-"+c.Name), runcState(p.Runtime, spec.ID+"-"+c.Name)
		if p.kept && (primed != "created" || own != "") {
			p.t.Errorf("after the claim, runc has %s-%s %q and %s-%s %q; want the primed one created and none of the task's",
				warmID, c.Name, primed, spec.ID, c.Name, own)
		}
		if !p.kept && primed != "" {
			p.t.Errorf("after a claim of other containers, runc still has the primed %s-%s (%q)", warmID, c.Name, primed)
		}
	}
	return nil
}

// runcState is runc's status of container cid, or "" when runc does
// not know it.
func runcState(r *runc.Runtime, cid string) string {
	out, err := exec.Command("runc", "--root", r.RuncRoot(), "state", cid).Output()
	if err != nil {
		return ""
	}
	_, rest, _ := strings.Cut(string(out), `"status": "`)
	st, _, _ := strings.Cut(rest, `"`)
	return st
}

func primeTask(t *testing.T, id, script string) runtime.Spec {
	return runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{runtimetest.BusyboxLayer(t)},
			Args: []string{"/bin/sh", "-c", script}, Env: []string{"WHO=task"}}}}
}

const readyScript = "trap 'exit 143' TERM; echo ready; while true; do sleep 0.1; done"

// TestPrimedClaimedCalls: a warm sandbox primed with its task's
// containers keeps them at the claim (runc's created containers under
// the warm names), and the claimed sandbox answers every call by the
// task's ID: Start runs the primed process, whose output reaches the
// task's log; Exec, Stats, Signal, Wait and Restart (a new run under the
// same names, its output appended) work, and the warm ID answers nothing.
func TestPrimedClaimedCalls(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	task := primeTask(t, "prime-calls-t", readyScript)
	w := runtime.Spec{ID: "prime-calls-w", MilliCPU: 1000, MemoryMiB: 1024, EphemeralStorageGiB: 1}
	runtimetest.WarmClaimedCalls(t, primingRuntime{rt, t, task, true}, w, task)
}

// TestPrimedLeftovers: Leftovers sees what a primed sandbox holds (its
// conmon and runc init, runc's state) under the warm ID, and under the
// task's once claimed; Delete of the task leaves nothing under either.
func TestPrimedLeftovers(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	task := primeTask(t, "prime-left-t", "sleep 1000")
	w := runtime.Spec{ID: "prime-left-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1}
	runtimetest.WarmLeftovers(t, primingRuntime{rt, t, task, true}, w, task,
		[]string{"directory", "mount", "loop device", "cgroup", "runc state", "process"},
		[]string{"directory", "mapping", "mount", "loop device", "cgroup", "runc state", "process"})
}

// TestPrimedClaimOfOtherContainers: a claim whose containers differ from
// the primed ones (here the environment) deletes those first and runs
// its own: the output is the task's, no primed container is left, and
// Delete leaves nothing.
func TestPrimedClaimOfOtherContainers(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	primed := primeTask(t, "prime-other-t", "echo I am $WHO")
	task := primed
	task.Containers = []runtime.ContainerSpec{primed.Containers[0]}
	task.Containers[0].Env = []string{"WHO=another"}
	w := runtime.Spec{ID: "prime-other-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1}
	p := primingRuntime{rt, t, primed, false}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), w.ID)
	if err := p.Claim(ctx, w.ID, task); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), task.ID)
	if log := runToEnd(t, ctx, rt, task); !strings.Contains(log, "I am another") || strings.Contains(log, "I am task") {
		t.Errorf("log %q; want the claim's own container's output alone", log)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, task.ID)
	if left := rt.Leftovers(w.ID); len(left) > 0 {
		t.Errorf("the warm ID left %q", left)
	}
}

// TestPrimedEtcRewritten: a container binds /etc/hostname when it is
// created; when the file holds something else at the claim (a task's
// hostname written by the network's re-key), the primed containers are
// not used: the task's container sees the file as it is at the claim.
func TestPrimedEtcRewritten(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	etc := t.TempDir()
	write := func(hostname string) {
		for f, content := range map[string]string{"hosts": "127.0.0.1\tlocalhost\n", "hostname": hostname + "\n", "resolv.conf": ""} {
			// Replaced, not rewritten in place, as the network does.
			tmp := filepath.Join(etc, "."+f)
			if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(etc, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("before")
	task := primeTask(t, "prime-etc-t", "cat /etc/hostname")
	task.EtcDir, task.Hostname = etc, "prime-etc-t"
	w := runtime.Spec{ID: "prime-etc-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1, EtcDir: etc}
	p := primingRuntime{rt, t, task, false}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), w.ID)
	write("after")
	if err := p.Claim(ctx, w.ID, task); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), task.ID)
	if log := runToEnd(t, ctx, rt, task); strings.TrimSpace(log) != "after" {
		t.Errorf("the container read /etc/hostname %q; want the file as it was at the claim, %q", log, "after")
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, task.ID)
}

// TestPrimeRefused: what Prime refuses, each leaving the warm sandbox as
// it was (a later claim works), and a Delete of a primed sandbox that no
// task claimed leaves nothing (its conmon and runc init included).
func TestPrimeRefused(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	task := primeTask(t, "prime-ref-t", "true")
	w := runtime.Spec{ID: "prime-ref-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1}
	if err := rt.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), w.ID)
	primed := func(change func(*runtime.Spec)) runtime.Spec {
		s := w
		s.Containers = []runtime.ContainerSpec{task.Containers[0]}
		change(&s)
		return s
	}
	for _, c := range []struct {
		name   string
		spec   runtime.Spec
		isKind func(error) bool
		says   string
	}{
		{"a log directory", primed(func(s *runtime.Spec) { s.LogDir = t.TempDir() }), errdefs.IsInvalidArgument, "log directory"},
		{"volumes", primed(func(s *runtime.Spec) {
			s.Containers[0].Mounts = []runtime.Mount{{Source: t.TempDir(), Destination: "/data"}}
		}), errdefs.IsInvalidArgument, "volumes"},
		{"another namespace", primed(func(s *runtime.Spec) { s.NetNSPath = "/run/netns/other" }), errdefs.IsConflict, "network namespace"},
		{"no warm sandbox", primed(func(s *runtime.Spec) { s.ID = "prime-ref-none" }), errdefs.IsNotFound, "no warm sandbox"},
	} {
		err := rt.Prime(ctx, c.spec)
		if err == nil || !c.isKind(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Prime with %s = %v; want an error of its kind saying %q", c.name, err, c.says)
		}
	}
	if err := rt.Prime(ctx, primed(func(*runtime.Spec) {})); err != nil {
		t.Fatal(err)
	}
	if err := rt.Prime(ctx, primed(func(*runtime.Spec) {})); !errdefs.IsConflict(err) {
		t.Errorf("a second Prime = %v, want a conflict", err)
	}
	if err := rt.Start(ctx, w.ID, "app"); !errdefs.IsNotFound(err) {
		t.Errorf("Start of a primed warm sandbox's container = %v, want not found (it is its claim's)", err)
	}
	list, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == w.ID && (!s.Warm || len(s.Containers) > 0) {
			t.Errorf("List shows the primed sandbox as %+v; want warm, with no containers", s)
		}
	}
	if left := rt.Leftovers(w.ID); len(runtimetest.LeftoverProcesses(left, "conmon")) == 0 {
		t.Errorf("a primed sandbox's Leftovers list no conmon: %q", left)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, w.ID)
}

// runToEnd starts the task's container "app", waits for it to exit 0
// and returns the text of its log, one line per record.
func runToEnd(t *testing.T, ctx context.Context, rt *runc.Runtime, task runtime.Spec) string {
	t.Helper()
	if err := rt.Start(ctx, task.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.Wait(ctx, task.ID, "app"); err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	return runtimetest.LogText(task.LogDir, "app")
}

// TestPrimeFailureDeletes: a Prime that fails once it began (here a
// layer that is not there) leaves nothing of the warm sandbox, and says
// so with an error of no kind that would mean it is left as it was.
func TestPrimeFailureDeletes(t *testing.T) {
	needRunc(t)
	rt := newRuntime(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := runtime.Spec{ID: "prime-fail-w", MilliCPU: 250, MemoryMiB: 256, EphemeralStorageGiB: 1}
	if err := rt.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), w.ID)
	spec := w
	spec.Containers = []runtime.ContainerSpec{{Name: "app", Layers: []string{filepath.Join(t.TempDir(), "missing")}, Args: []string{"true"}}}
	err := rt.Prime(ctx, spec)
	if err == nil || errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
		t.Fatalf("Prime with a missing layer = %v; want an error of no kind (the sandbox is gone)", err)
	}
	if left := rt.Leftovers(w.ID); len(left) > 0 {
		t.Errorf("a failed Prime left %q", left)
	}
}
