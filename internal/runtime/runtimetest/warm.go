package runtimetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// The cases of runtime.Warmer, for runtimes that keep warm sandboxes
// (the others skip them).
var warmCases = []struct {
	name string
	fn   func(*suite)
}{
	{"WarmClaim", testWarmClaim},
	{"WarmNothingCrossesTasks", testWarmNothingCrosses},
	{"WarmAdoptionAfterRestart", testWarmAdoption},
	{"WarmDeleteLeavesNothing", testWarmDelete},
	{"WarmClaimRefused", testWarmClaimRefused},
	{"WarmSizedClass", testWarmSizedClass},
}

func (s *suite) warmer() runtime.Warmer {
	s.t.Helper()
	w, ok := s.rt.(runtime.Warmer)
	if !ok {
		s.t.Skipf("runtime %s keeps no warm sandboxes (runtime.Warmer)", s.rt.Name())
	}
	return w
}

// warm makes a warm sandbox of the runtime's class, with a network when
// the harness gives one, and registers its deletion (a claimed one is
// deleted under its task's ID by claim's cleanup; both are checked for
// leftovers).
func (s *suite) warm() runtime.Spec {
	s.t.Helper()
	class := s.warmer().WarmClass()
	return s.warmSized(class.MilliCPU, class.MemoryMiB)
}

// warmSized is warm with a warm sandbox of the given size (1 vCPU and 1
// GiB for a 0).
func (s *suite) warmSized(milliCPU, memoryMiB int64) runtime.Spec {
	s.t.Helper()
	w := s.warmer()
	s.n++
	id := fmt.Sprintf("rt-%s-%d-w%d", time.Now().Format("150405"), os.Getpid(), s.n)
	spec := runtime.Spec{ID: id, MilliCPU: milliCPU, MemoryMiB: memoryMiB,
		Labels: map[string]string{"suite": "runtimetest", "warm": "yes"}}
	if spec.MilliCPU == 0 {
		spec.MilliCPU = 1000
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 1024
	}
	if s.Network != nil {
		s.Network(s.t, &spec)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := w.Warm(ctx, spec); err != nil {
		s.t.Fatalf("Warm(%s): %v", id, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := s.ctx()
		defer cancel()
		if err := s.rt.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			s.t.Errorf("cleanup Delete(%s): %v", id, err)
		}
		s.leftovers(id)
	})
	return spec
}

// claimSpec is the spec of a task of 0.25 vCPU / 512 MiB with the given
// containers, prepared by the harness, on warm sandbox w's network.
func (s *suite) claimSpec(w runtime.Spec, containers ...runtime.ContainerSpec) runtime.Spec {
	s.t.Helper()
	s.n++
	id := fmt.Sprintf("rt-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), s.n)
	for i := range containers {
		containers[i].Image = s.Image
	}
	spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, Containers: containers,
		LogDir: filepath.Join(s.logs, id), Labels: map[string]string{"suite": "runtimetest", "task": id}}
	if s.Prepare != nil {
		s.Prepare(s.t, &spec)
	}
	spec.NetNSPath, spec.EtcDir, spec.Hostname = w.NetNSPath, w.EtcDir, w.Hostname
	return spec
}

// claim claims warm sandbox w for spec and registers the task's deletion.
func (s *suite) claim(w, spec runtime.Spec) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.warmer().Claim(ctx, w.ID, spec); err != nil {
		s.t.Fatalf("Claim(%s, %s): %v", w.ID, spec.ID, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := s.ctx()
		defer cancel()
		if err := s.rt.Delete(ctx, spec.ID); err != nil && !errdefs.IsNotFound(err) {
			s.t.Errorf("cleanup Delete(%s): %v", spec.ID, err)
		}
		s.leftovers(spec.ID)
		s.leftovers(w.ID)
	})
}

// listed returns what List says of id, and whether it is there.
func (s *suite) listed(id string) (runtime.SandboxInfo, bool) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	infos, err := s.rt.List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == id {
			return in, true
		}
	}
	return runtime.SandboxInfo{}, false
}

// testWarmClaim: a warm sandbox is listed as warm with no containers; a
// task claims it, runs in it under its own ID with its own labels and
// logs; the warm ID is gone and cannot be claimed again.
func testWarmClaim(s *suite) {
	w := s.warm()
	in, ok := s.listed(w.ID)
	if !ok || !in.Warm || len(in.Containers) != 0 || in.Labels["warm"] != "yes" {
		s.t.Fatalf("warm sandbox %s listed as %+v (listed: %v), want Warm, no containers, its labels", w.ID, in, ok)
	}
	spec := s.claimSpec(w, sh("app", "echo claimed; sleep 0.2; exit 3"), sh("side", service))
	s.claim(w, spec)
	if _, ok := s.listed(w.ID); ok {
		s.t.Errorf("warm sandbox %s still listed after its claim", w.ID)
	}
	in, ok = s.listed(spec.ID)
	if !ok || in.Warm || len(in.Containers) != 2 || in.Labels["task"] != spec.ID {
		s.t.Fatalf("claimed sandbox %s listed as %+v (listed: %v), want not warm, two containers, the task's labels", spec.ID, in, ok)
	}
	s.start(spec.ID, "side")
	s.start(spec.ID, "app")
	if st := s.wait(spec.ID, "app"); st.Code != 3 {
		s.t.Errorf("a claimed sandbox's container exited %d, want 3", st.Code)
	}
	s.logged(spec.ID, "app", "claimed")
	s.running(spec.ID, "side", 200*time.Millisecond)
	ctx, cancel := s.ctx()
	defer cancel()
	again := s.claimSpec(w, sh("app", "exit 0"))
	if err := s.warmer().Claim(ctx, w.ID, again); !errdefs.IsNotFound(err) {
		s.t.Errorf("a second Claim of warm sandbox %s = %v, want not found", w.ID, err)
	}
	if _, ok := s.listed(again.ID); ok {
		s.t.Errorf("a refused Claim left sandbox %s", again.ID)
	}
	if err := s.rt.Delete(ctx, w.ID); !errdefs.IsNotFound(err) {
		s.t.Errorf("Delete of a claimed warm ID = %v, want not found", err)
	}
	if err := s.rt.Delete(ctx, spec.ID); err != nil {
		s.t.Fatalf("Delete(%s): %v", spec.ID, err)
	}
	s.leftovers(spec.ID)
	s.leftovers(w.ID)
}

// testWarmNothingCrosses: a task that ran in a warm sandbox leaves
// nothing for the task of the next one: not a file in its root or in
// /tmp, not a process. (The network side, a connection and an address,
// is the agent's and its tests'.)
func testWarmNothingCrosses(s *suite) {
	s.needReal()
	w1, w2 := s.warm(), s.warm()
	first := s.claimSpec(w1, sh("app", "echo secret > /tmp/left; echo secret > /left; "+
		"(exec sleep 4321 &); echo ready; sleep 1000"))
	s.claim(w1, first)
	s.start(first.ID, "app")
	s.logged(first.ID, "app", "ready")
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Delete(ctx, first.ID); err != nil {
		s.t.Fatalf("Delete(%s): %v", first.ID, err)
	}
	s.leftovers(first.ID)
	s.leftovers(w1.ID)
	second := s.claimSpec(w2, sh("app", "cat /tmp/left /left 2>/dev/null; ps -o args 2>/dev/null || ps; echo done"))
	s.claim(w2, second)
	s.start(second.ID, "app")
	if st := s.wait(second.ID, "app"); st.Code != 0 {
		s.t.Fatalf("the second task exited %d", st.Code)
	}
	out, _ := s.output(second, "app")
	if !strings.Contains(out, "done") {
		s.t.Fatalf("the second task's output %q lacks its end", out)
	}
	if strings.Contains(out, "secret") {
		s.t.Errorf("a task read a file the task of another warm sandbox wrote: %q", out)
	}
	if strings.Contains(out, "4321") {
		s.t.Errorf("a task sees a process of the task of another warm sandbox: %q", out)
	}
}

// testWarmAdoption: a runtime started again on the same state lists a
// warm sandbox as warm and lets a task claim it; a claimed one is found
// by its task's ID.
func testWarmAdoption(s *suite) {
	w1, w2 := s.warm(), s.warm()
	spec := s.claimSpec(w1, sh("app", service))
	s.claim(w1, spec)
	s.start(spec.ID, "app")
	s.logged(spec.ID, "app", "ready")

	s.rt = s.New(s.t, s.dir)
	if in, ok := s.listed(w2.ID); !ok || !in.Warm {
		s.t.Fatalf("after a restart warm sandbox %s is listed as %+v (listed: %v), want Warm", w2.ID, in, ok)
	}
	if _, ok := s.listed(w1.ID); ok {
		s.t.Errorf("after a restart the claimed warm ID %s is listed", w1.ID)
	}
	if in, ok := s.listed(spec.ID); !ok || in.Warm || in.Labels["task"] != spec.ID {
		s.t.Fatalf("after a restart claimed sandbox %s is listed as %+v (listed: %v)", spec.ID, in, ok)
	}
	s.running(spec.ID, "app", 200*time.Millisecond)
	next := s.claimSpec(w2, sh("app", "echo adopted; exit 0"))
	s.claim(w2, next)
	s.start(next.ID, "app")
	if st := s.wait(next.ID, "app"); st.Code != 0 {
		s.t.Errorf("a task in a warm sandbox adopted after a restart exited %d", st.Code)
	}
	s.logged(next.ID, "app", "adopted")
}

// testWarmDelete: a warm sandbox nobody claimed is deleted with
// everything it holds, and is not found again, also after a restart.
func testWarmDelete(s *suite) {
	w := s.warm()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Delete(ctx, w.ID); err != nil {
		s.t.Fatalf("Delete of warm sandbox %s: %v", w.ID, err)
	}
	s.leftovers(w.ID)
	if _, ok := s.listed(w.ID); ok {
		s.t.Fatalf("warm sandbox %s still listed after Delete", w.ID)
	}
	s.rt = s.New(s.t, s.dir)
	if _, ok := s.listed(w.ID); ok {
		s.t.Fatalf("deleted warm sandbox %s came back after a restart", w.ID)
	}
	spec := s.claimSpec(w, sh("app", "exit 0"))
	if err := s.warmer().Claim(ctx, w.ID, spec); !errdefs.IsNotFound(err) {
		s.t.Errorf("Claim of a deleted warm sandbox = %v, want not found", err)
	}
}

// testWarmClaimRefused: a task larger than the warm class is refused
// with a conflict and leaves the warm sandbox to the next task; a task
// whose ID exists is refused likewise.
func testWarmClaimRefused(s *suite) {
	w := s.warm()
	ctx, cancel := s.ctx()
	defer cancel()
	class := s.warmer().WarmClass()
	if class.MemoryMiB > 0 {
		big := s.claimSpec(w, sh("app", "exit 0"))
		big.MemoryMiB = class.MemoryMiB + 1024
		if err := s.warmer().Claim(ctx, w.ID, big); !errdefs.IsConflict(err) {
			s.t.Errorf("Claim of %d MiB from a class of %d MiB = %v, want a conflict", big.MemoryMiB, class.MemoryMiB, err)
		}
		if _, ok := s.listed(big.ID); ok {
			s.t.Errorf("a refused Claim left sandbox %s", big.ID)
		}
	}
	existing := s.sandbox(sh("app", "exit 0"))
	taken := s.claimSpec(w, sh("app", "exit 0"))
	taken.ID = existing
	if err := s.warmer().Claim(ctx, w.ID, taken); !errdefs.IsAlreadyExists(err) {
		s.t.Errorf("Claim for an existing sandbox's ID = %v, want already exists", err)
	}
	if in, ok := s.listed(w.ID); !ok || !in.Warm {
		s.t.Fatalf("after refused claims warm sandbox %s is listed as %+v (listed: %v), want it warm still", w.ID, in, ok)
	}
	spec := s.claimSpec(w, sh("app", "echo served; exit 0"))
	s.claim(w, spec)
	s.start(spec.ID, "app")
	if st := s.wait(spec.ID, "app"); st.Code != 0 {
		s.t.Errorf("the task that claimed the warm sandbox after refusals exited %d", st.Code)
	}
	s.logged(spec.ID, "app", "served")
}

// testWarmSizedClass: a runtime whose warm sandboxes are each made at one
// size (runtime.SizedWarmer, a pool per size class) makes one at 1 vCPU
// and 2 GiB, smaller than its own class: a task of 2 vCPU, which its own
// class would serve, is refused with a conflict, and a task of the size
// runs and sees the memory the sandbox was made with, not its own
// class's.
func testWarmSizedClass(s *suite) {
	sw, ok := s.rt.(runtime.SizedWarmer)
	if !ok {
		s.t.Skipf("runtime %s's warm sandboxes have no size of their own (runtime.SizedWarmer)", s.rt.Name())
	}
	s.needReal()
	class, err := sw.SizedWarmClass(1000, 2048)
	if err != nil || class.MilliCPU != 1000 || class.MemoryMiB != 2048 || class.IdleMemoryMiB <= 0 {
		s.t.Fatalf("SizedWarmClass(1000, 2048) = %+v, %v; want that size, with the idle memory it holds", class, err)
	}
	if _, err := sw.SizedWarmClass(0, 2048); !errdefs.IsInvalidArgument(err) {
		s.t.Errorf("SizedWarmClass(0, 2048) = %v; want an invalid argument", err)
	}
	w := s.warmSized(1000, 2048)
	ctx, cancel := s.ctx()
	defer cancel()
	big := s.claimSpec(w, sh("app", "exit 0"))
	big.MilliCPU, big.MemoryMiB = 2000, 2048
	if err := sw.Claim(ctx, w.ID, big); !errdefs.IsConflict(err) {
		s.t.Errorf("Claim of 2 vCPU from a warm sandbox made at 1 vCPU = %v, want a conflict", err)
	}
	if _, ok := s.listed(big.ID); ok {
		s.t.Errorf("a refused Claim left sandbox %s", big.ID)
	}
	spec := s.claimSpec(w, sh("app", "cat /proc/meminfo"))
	spec.MilliCPU, spec.MemoryMiB = 1000, 2048
	s.claim(w, spec)
	s.start(spec.ID, "app")
	if st := s.wait(spec.ID, "app"); st.Code != 0 {
		s.t.Fatalf("the task of the sized class exited %d", st.Code)
	}
	out, _ := s.output(spec, "app")
	var kb int64
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	// A VM's kernel keeps some of its memory; gVisor shows the size.
	if mib := kb >> 10; mib < 1024 || mib > 2048+512 {
		s.t.Errorf("the task sees MemTotal %d MiB; want about the 2048 MiB its warm sandbox was made with (its own class: %d MiB)\n%s",
			mib, sw.WarmClass().MemoryMiB, out)
	}
}
