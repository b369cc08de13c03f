package toolkit_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// TestWaitInterruptedStart: an agent killed while it starts a container
// leaves the sandbox's record saying the container was started, and its
// conmon, which waited for the agent, gone. The chaos run found such a
// task stopped with EssentialContainerExited and no exit code; the
// container never ran, so Wait must say its start was interrupted (the
// agent stops the task with TaskFailedToStart). A container that had
// started and then lost its conmon is still reported as such.
func TestWaitInterruptedStart(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		interrupted bool
	}{{"start interrupted", true}, {"monitor lost after the start", false}} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &toolkit.Sandboxes{Name: "runc", Store: toolkit.Store{Dir: t.TempDir()}}
			id := "task1"
			rec := &toolkit.ConmonRecord{Record: toolkit.Record{Spec: runtime.Spec{ID: id, Containers: []runtime.ContainerSpec{{Name: "app"}}},
				Ready: true, Started: map[string]bool{"app": true}}}
			if tc.interrupted {
				rec.Launching = map[string]bool{"app": true}
			}
			if err := os.MkdirAll(sb.BundleDir(id, "app"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := sb.Save(rec); err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(sb.BundleDir(id, "app"), "conmon.pid")
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(dead.Process.Pid)), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := sb.Wait(ctx, id, "app")
			if err == nil || ctx.Err() != nil {
				t.Fatalf("Wait: %v, want an error at once (no conmon, no exit file)", err)
			}
			if got := errors.Is(err, runtime.ErrStartInterrupted); got != tc.interrupted {
				t.Fatalf("Wait: %v; errors.Is(err, ErrStartInterrupted) = %v, want %v", err, got, tc.interrupted)
			}
		})
	}
}
