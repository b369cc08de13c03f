package runc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// TestExitCodeSurvivesFullDisk: the chaos run filled the data directory's
// disk while containers ran; those that exited then lost their exit code
// (their task stopped with "lost its monitor (conmon) without an exit
// code"). The state directory here is a small tmpfs, filled while the
// container runs: Wait must still return the code it exits with.
func TestExitCodeSurvivesFullDisk(t *testing.T) {
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	state := t.TempDir()
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=256m"); err != nil {
		t.Fatalf("mounting a tmpfs for the state directory: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	rt := newRuntime(t, filepath.Join(state, "runc"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := runtime.Spec{ID: "full-1", MilliCPU: 1000, MemoryMiB: 256, LogDir: filepath.Join(state, "logs"),
		EphemeralStorageGiB: 1,
		Containers:          []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", "sleep 3; echo bye; exit 7"}}}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Delete(context.Background(), spec.ID) })
	if err := rt.Start(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(state, "fill"))
	st, err := rt.Wait(ctx, spec.ID, "app")
	os.Remove(filepath.Join(state, "fill"))
	if err != nil || st.Code != 7 {
		t.Fatalf("Wait with the disk full: %+v, %v; want exit code 7", st, err)
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}

// fill writes path until its file system has no space left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			return
		}
	}
}
