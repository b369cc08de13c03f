package runtimetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// WarmLeftovers checks that a back end's Leftovers sees what a warm
// sandbox holds, so that the conformance cases' leftover checks would
// catch it: rt warms w, and Leftovers(w.ID) must list a line starting
// with each of warmHolds ("directory", "mount", "loop device", "cgroup",
// "runsc state", "process", ...). Then task claims it and starts its
// container "app"; Leftovers(task.ID) must list each of claimedHolds
// (the mapping of the task's ID, its cgroup, its processes...). After
// Delete(task.ID), neither ID leaves anything. t fails at once when a
// call fails.
func WarmLeftovers(t *testing.T, rt LeftoverLister, w, task runtime.Spec, warmHolds, claimedHolds []string) {
	t.Helper()
	warmer, ok := rt.(runtime.Warmer)
	if !ok {
		t.Fatalf("runtime %s keeps no warm sandboxes", rt.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := warmer.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt.Delete(ctx, task.ID)
		rt.Delete(ctx, w.ID)
	})
	holds := func(id string, want []string) {
		t.Helper()
		left := rt.Leftovers(id)
		for _, prefix := range want {
			found := false
			for _, l := range left {
				found = found || strings.HasPrefix(l, prefix)
			}
			if !found {
				t.Errorf("Leftovers(%s) lists no %q line: %q", id, prefix, left)
			}
		}
	}
	holds(w.ID, warmHolds)
	if err := warmer.Claim(ctx, w.ID, task); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, task.ID, "app"); err != nil {
		t.Fatal(err)
	}
	holds(task.ID, claimedHolds)
	if err := rt.Delete(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{task.ID, w.ID} {
		if left := rt.Leftovers(id); len(left) > 0 {
			t.Errorf("after Delete(%s), %s left behind: %q", task.ID, id, left)
		}
	}
}

// WarmClaimedCalls checks that a claimed warm sandbox answers every call
// by its task's ID: rt warms w and task claims it; task's container "app"
// must print "ready" and then exit 0 once it receives SIGTERM (as
// service does). Start, Exec, Stats (the sandbox's memory limit is the
// task's), Signal, Wait and Restart go by task.ID, and each of them by
// w.ID is an error of kind errdefs.ErrNotFound.
func WarmClaimedCalls(t *testing.T, rt LeftoverLister, w, task runtime.Spec) {
	t.Helper()
	warmer := rt.(runtime.Warmer)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := warmer.Warm(ctx, w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt.Delete(ctx, task.ID)
		rt.Delete(ctx, w.ID)
	})
	if err := warmer.Claim(ctx, w.ID, task); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, w.ID, "app"); !errdefs.IsNotFound(err) {
		t.Errorf("Start by the claimed warm ID = %v, want not found", err)
	}
	if err := rt.Start(ctx, task.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if ex, ok := rt.(runtime.Execer); ok {
		var out strings.Builder
		code, err := ex.Exec(ctx, task.ID, "app", runtime.ExecProcess{Args: []string{"/bin/sh", "-c", "echo exec-ok"}, Stdout: &out})
		if err != nil || code != 0 || !strings.Contains(out.String(), "exec-ok") {
			t.Errorf("Exec in a claimed sandbox = %d, %v, %q", code, err, out.String())
		}
		if _, err := ex.Exec(ctx, w.ID, "app", runtime.ExecProcess{Args: []string{"true"}}); !errdefs.IsNotFound(err) {
			t.Errorf("Exec by the claimed warm ID = %v, want not found", err)
		}
	}
	if st, ok := rt.(runtime.Statser); ok {
		u, _, err := st.Stats(ctx, task.ID, "")
		if err != nil || u.MemoryLimitBytes != task.MemoryMiB<<20 {
			t.Errorf("Stats of a claimed sandbox = %+v, %v; want its task's memory limit %d", u, err, task.MemoryMiB<<20)
		}
	}
	readyTimes(t, task, 1)
	if err := rt.Signal(ctx, task.ID, "app", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.Wait(ctx, task.ID, "app"); err != nil || st.Code != 143 {
		t.Fatalf("Wait after SIGTERM = %+v, %v; want 143", st, err)
	}
	if re, ok := rt.(runtime.Restarter); ok {
		if err := re.Restart(ctx, task.ID, "app"); err != nil {
			t.Fatalf("Restart in a claimed sandbox: %v", err)
		}
		readyTimes(t, task, 2)
		if err := rt.Signal(ctx, task.ID, "app", syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st, err := rt.Wait(ctx, task.ID, "app"); err != nil || st.Code != 143 {
			t.Fatalf("Wait after a restart and SIGTERM = %+v, %v; want 143", st, err)
		}
	}
	if err := rt.Delete(ctx, w.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Delete by the claimed warm ID = %v, want not found", err)
	}
	DeleteLeavesNothing(t, ctx, rt, task.ID)
	if left := rt.Leftovers(w.ID); len(left) > 0 {
		t.Errorf("left behind under the warm ID: %q", left)
	}
}

// readyTimes waits (10 s at most) until the log of task's container "app"
// says "ready" n times: its SIGTERM trap is set.
func readyTimes(t *testing.T, task runtime.Spec, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(filepath.Join(task.LogDir, "app.log"))
		if strings.Count(string(data), " ready") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container app of %s did not say ready %d times: %q", task.ID, n, data)
		}
	}
}
