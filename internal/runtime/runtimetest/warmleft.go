package runtimetest

import (
	"context"
	"strings"
	"testing"
	"time"

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
