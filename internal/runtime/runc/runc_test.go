package runc_test

import (
	"os"
	"os/exec"
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/testenv"
)

func needRunc(t testing.TB) {
	t.Helper()
	testenv.SkipShort(t, "real runc sandboxes")
	if os.Geteuid() != 0 {
		t.Skip("the runc runtime needs root")
	}
	for _, b := range []string{"runc", "conmon"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}

func newRuntime(t testing.TB, dir string) *runc.Runtime {
	t.Helper()
	rt, err := runc.New(runc.Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestConformance(t *testing.T) {
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	var current *runc.Runtime
	runtimetest.Run(t, runtimetest.Harness{
		Image: "busybox",
		Real:  true,
		New: func(t *testing.T, dir string) runtime.Runtime {
			current = newRuntime(t, dir)
			return current
		},
		Prepare: runtimetest.WithLayer(layer),
		Network: runtimetest.Networking(t),
		Leftovers: func(t *testing.T, id string) []string {
			return current.Leftovers(id)
		},
	})
}
