package toolkit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// warmSandboxes is a Sandboxes on dir whose Destroy removes what the
// frames made (the sandbox's home directory and its task's mapping), as a
// back end's TearDown does, and counts its calls.
func warmSandboxes(dir string, destroyed *int) *toolkit.Sandboxes {
	sb := &toolkit.Sandboxes{Name: "test", Store: toolkit.Store{Dir: dir}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sb.Destroy = func(ctx context.Context, rec *toolkit.ConmonRecord) error {
		*destroyed++
		if err := os.RemoveAll(filepath.Join(dir, rec.HomeID())); err != nil {
			return err
		}
		return sb.Unlink(rec.Spec.ID)
	}
	return sb
}

func taskSpec(id string) runtime.Spec {
	return runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, NetNSPath: "/run/netns/n1",
		Containers: []runtime.ContainerSpec{{Name: "app", Args: []string{"true"}, Layers: []string{"/layers/1"}}}}
}

func warmUp(t *testing.T, sb *toolkit.Sandboxes, id string) {
	t.Helper()
	spec := runtime.Spec{ID: id, MilliCPU: 1000, MemoryMiB: 1024, NetNSPath: "/run/netns/n1"}
	if err := sb.Warm(context.Background(), spec, func(*toolkit.ConmonRecord) error { return nil }); err != nil {
		t.Fatalf("Warm(%s): %v", id, err)
	}
}

// listed returns List's entries by ID.
func listed(t *testing.T, sb *toolkit.Sandboxes) map[string]runtime.SandboxInfo {
	t.Helper()
	infos, err := sb.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]runtime.SandboxInfo{}
	for _, in := range infos {
		out[in.ID] = in
	}
	return out
}

// TestClaimCrash: a Claim cut short at any point leaves either the warm
// sandbox, whole and claimable, or the task's sandbox, which Delete
// removes with the warm sandbox's directory; never both, never neither
// half. The two writes of a Claim are the mapping (a link from the task's
// ID to the warm sandbox's directory) and then the record there, which
// commits.
func TestClaimCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var destroyed int
	sb := warmSandboxes(dir, &destroyed)
	ok := func(*toolkit.ConmonRecord) error { return nil }

	// Cut between the two writes: the mapping is there, the record is
	// still the warm sandbox's.
	warmUp(t, sb, "w1")
	if err := os.Symlink("w1", filepath.Join(dir, "t1")); err != nil {
		t.Fatal(err)
	}
	sb = warmSandboxes(dir, &destroyed) // the agent started again
	l := listed(t, sb)
	if in, found := l["w1"]; !found || !in.Warm {
		t.Fatalf("after a claim cut before its record, the warm sandbox is listed as %+v (listed: %v), want warm", in, found)
	}
	if _, found := l["t1"]; found || sb.Exists("t1") {
		t.Fatalf("after a claim cut before its record, its task's ID names a sandbox (listed: %v)", found)
	}
	if err := sb.Delete(ctx, "t1"); !errdefs.IsNotFound(err) {
		t.Errorf("Delete of the task's ID after a claim cut before its record = %v, want not found", err)
	}
	if err := sb.Claim(ctx, "w1", taskSpec("t1"), nil, ok); err != nil {
		t.Fatalf("Claim over a stale mapping: %v", err)
	}
	l = listed(t, sb)
	if in, found := l["t1"]; !found || in.Warm || len(in.Containers) != 1 {
		t.Errorf("claimed sandbox listed as %+v (listed: %v), want the task's", in, found)
	}
	if _, found := l["w1"]; found {
		t.Errorf("a claimed warm sandbox is still listed under its warm ID")
	}
	if err := sb.Delete(ctx, "w1"); !errdefs.IsNotFound(err) {
		t.Errorf("Delete of a claimed warm ID = %v, want not found", err)
	}
	if err := sb.Delete(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, dir)

	// Cut after the record: the task's sandbox, not ready, which Delete
	// removes whole.
	warmUp(t, sb, "w2")
	func() {
		defer func() { recover() }()
		sb.Claim(ctx, "w2", taskSpec("t2"), nil, func(*toolkit.ConmonRecord) error { panic("the agent dies here") })
	}()
	if destroyed != 1 {
		t.Fatalf("Destroy ran %d times, want once (the first task's Delete): a crash runs no cleanup", destroyed)
	}
	sb = warmSandboxes(dir, &destroyed)
	l = listed(t, sb)
	if _, found := l["w2"]; found {
		t.Errorf("after a claim cut after its record, the warm ID is still listed")
	}
	if _, found := l["t2"]; !found {
		t.Fatalf("after a claim cut after its record, the task's sandbox is not listed")
	}
	if err := sb.Start("t2", "app", func(*toolkit.ConmonRecord) error { return nil }); !errdefs.IsConflict(err) {
		t.Errorf("Start in a sandbox whose claim was cut = %v, want a conflict (not fully created)", err)
	}
	if err := sb.Delete(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, dir)

	// A Claim whose setup fails removes both.
	warmUp(t, sb, "w3")
	failed := errors.New("overlay refused")
	if err := sb.Claim(ctx, "w3", taskSpec("t3"), nil, func(*toolkit.ConmonRecord) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("Claim with a failing setup = %v, want its error", err)
	}
	assertEmpty(t, dir)
}

// TestClaimRefusals: what Claim refuses leaves the warm sandbox as it
// was.
func TestClaimRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var destroyed int
	sb := warmSandboxes(dir, &destroyed)
	ok := func(*toolkit.ConmonRecord) error { return nil }
	warmUp(t, sb, "w1")
	if err := sb.Create(ctx, taskSpec("t0"), ok); err != nil {
		t.Fatal(err)
	}
	other := taskSpec("t1")
	other.NetNSPath = "/run/netns/n2"
	big := taskSpec("t1")
	big.EphemeralStorageGiB = 200
	for _, tc := range []struct {
		name   string
		warmID string
		spec   runtime.Spec
		serve  func(*toolkit.ConmonRecord, *runtime.Spec) error
		kind   func(error) bool
	}{
		{"missing warm sandbox", "w9", taskSpec("t1"), nil, errdefs.IsNotFound},
		{"a task's sandbox as warm", "t0", taskSpec("t1"), nil, errdefs.IsNotFound},
		{"existing task ID", "w1", taskSpec("t0"), nil, errdefs.IsAlreadyExists},
		{"the warm ID as task ID", "w1", taskSpec("w1"), nil, errdefs.IsAlreadyExists},
		{"another network namespace", "w1", other, nil, errdefs.IsConflict},
		{"more ephemeral storage", "w1", big, nil, errdefs.IsConflict},
		{"refused by the back end", "w1", taskSpec("t1"), func(*toolkit.ConmonRecord, *runtime.Spec) error {
			return errdefs.Conflict("too big")
		}, errdefs.IsConflict},
	} {
		if err := sb.Claim(ctx, tc.warmID, tc.spec, tc.serve, ok); !tc.kind(err) {
			t.Errorf("%s: Claim = %v, want another kind of error", tc.name, err)
		}
	}
	if in, found := listed(t, sb)["w1"]; !found || !in.Warm {
		t.Errorf("after refused claims the warm sandbox is listed as %+v (listed: %v)", in, found)
	}
	if _, found := listed(t, sb)["t1"]; found || destroyed != 0 {
		t.Errorf("a refused claim left its task's sandbox (listed: %v) or destroyed one (%d)", found, destroyed)
	}
}

// assertEmpty fails unless dir has no entries.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in the state directory: %s", e.Name())
	}
}
