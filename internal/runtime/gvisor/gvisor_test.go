package gvisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/testenv"
)

// cachedRunsc is where scripts/build-runsc leaves the pinned runsc in
// the cache ($VESSEL_CACHE, else the repository's .cache).
const cachedRunsc = "runsc/v0.0.0-20260905035102-160fafc42237/runsc"

// runscPath returns the runsc to test: $VESSEL_RUNSC, else the cached
// build; the test is skipped when there is none.
func runscPath(t testing.TB) string {
	t.Helper()
	testenv.SkipShort(t, "real gVisor sandboxes")
	if os.Geteuid() != 0 {
		t.Skip("the gvisor runtime needs root")
	}
	if _, err := exec.LookPath("conmon"); err != nil {
		t.Skip("conmon not installed")
	}
	p := os.Getenv("VESSEL_RUNSC")
	if p == "" {
		cache := os.Getenv("VESSEL_CACHE")
		if cache == "" {
			cache = "../../../.cache"
		}
		p = filepath.Join(cache, cachedRunsc)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("no runsc at %s (set VESSEL_RUNSC or run scripts/build-runsc): %v", abs, err)
	}
	return abs
}

func newRuntime(t testing.TB, runsc, dir string) *gvisor.Runtime {
	t.Helper()
	rt, err := gvisor.New(gvisor.Config{StateDir: dir, RunscPath: runsc})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestConformance(t *testing.T) {
	runsc := runscPath(t)
	layer := runtimetest.BusyboxLayer(t)
	var current *gvisor.Runtime
	runtimetest.Run(t, runtimetest.Harness{
		Image: "busybox",
		Real:  true,
		New: func(t *testing.T, dir string) runtime.Runtime {
			current = newRuntime(t, runsc, dir)
			return current
		},
		Prepare: runtimetest.WithLayer(layer),
		Network: runtimetest.Networking(t),
		// runsc drops CAP_NET_RAW unless --net-raw: the netstack has no
		// raw sockets.
		WithheldCapabilities: []string{"CAP_NET_RAW"},
		Leftovers: func(t *testing.T, id string) []string {
			return current.Leftovers(id)
		},
		HostCPU: func(t *testing.T, id string) time.Duration {
			// The host's accounting of the task cgroup, which holds the
			// sentry, gofers and stubs.
			for _, p := range []string{"/sys/fs/cgroup/cpuacct/vessel/" + id + "/cpuacct.usage",
				"/sys/fs/cgroup/cpu,cpuacct/vessel/" + id + "/cpuacct.usage"} {
				if b, err := os.ReadFile(p); err == nil {
					n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
					if err == nil {
						return time.Duration(n)
					}
				}
			}
			if b, err := os.ReadFile("/sys/fs/cgroup/vessel/" + id + "/cpu.stat"); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						return time.Duration(n) * time.Microsecond
					}
				}
			}
			t.Fatalf("no CPU accounting found for sandbox %s", id)
			return 0
		},
	})
}
