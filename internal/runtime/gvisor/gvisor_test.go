package gvisor_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// cachedRunsc is where scripts/build-runsc leaves the pinned runsc,
// relative to this package.
const cachedRunsc = "../../../.cache/runsc/v0.0.0-20260905035102-160fafc42237/runsc"

// runscPath returns the runsc to test: $VESSEL_RUNSC, else the cached
// build; the test is skipped when there is none.
func runscPath(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the gvisor runtime needs root")
	}
	if _, err := exec.LookPath("conmon"); err != nil {
		t.Skip("conmon not installed")
	}
	p := os.Getenv("VESSEL_RUNSC")
	if p == "" {
		p = cachedRunsc
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

// busyboxApplets are linked to /bin/busybox in the test image.
var busyboxApplets = []string{"sh", "echo", "sleep", "cat", "env", "pwd", "yes", "true", "false",
	"head", "dd", "id", "nc", "wget", "ls", "ps", "kill", "cut", "grep", "seq", "mkdir", "rm"}

// busyboxLayer builds an image layer from the host's static busybox.
func busyboxLayer(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on this host")
	}
	layer := filepath.Join(t.TempDir(), "layer")
	for _, d := range []string{"bin", "etc", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(layer, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(layer, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(layer, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(layer, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return layer
}

// freeSubnet picks a 10.Y.X.0/24 (Y from 90 to 249) that overlaps no
// address of the host.
func freeSubnet(t testing.TB) netip.Prefix {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for range 500 {
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 90+rand.IntN(160), 1+rand.IntN(254)))
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
				if ones, _ := n.Mask.Size(); ones <= 24 {
					if pa, ok := netip.AddrFromSlice(n.IP.Mask(n.Mask)); ok && netip.PrefixFrom(pa.Unmap(), ones).Contains(p.Addr()) {
						used = true
					}
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatal("no free 10.Y.X.0/24 on this host")
	return netip.Prefix{}
}

func newRuntime(t testing.TB, runsc, dir string) *gvisor.Runtime {
	t.Helper()
	rt, err := gvisor.New(gvisor.Config{StateDir: dir, RunscPath: runsc})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// testNetwork opens a network manager with one subnet "t" and returns a
// Network function for the harness.
func testNetwork(t *testing.T) (*network.Manager, func(t *testing.T, spec *runtime.Spec) netip.Addr) {
	nm, err := network.Open(network.Config{StateDir: t.TempDir(),
		Subnets: []network.Subnet{{Name: "t", CIDR: freeSubnet(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nm.RemoveUnusedBridges(context.Background())
		nm.Close()
	})
	return nm, func(t *testing.T, spec *runtime.Spec) netip.Addr {
		a, err := nm.Attach(context.Background(), spec.ID, "t", "")
		if err != nil {
			t.Fatal(err)
		}
		// Registered before the suite's Delete, so it runs after it.
		t.Cleanup(func() {
			if err := nm.Detach(context.Background(), spec.ID); err != nil {
				t.Errorf("Detach(%s): %v", spec.ID, err)
			}
		})
		spec.NetNSPath, spec.EtcDir = a.NetNSPath, a.EtcDir
		return a.IP
	}
}

func TestConformance(t *testing.T) {
	runsc := runscPath(t)
	layer := busyboxLayer(t)
	var current *gvisor.Runtime
	_, attach := testNetwork(t)
	runtimetest.Run(t, runtimetest.Harness{
		Image: "busybox",
		Real:  true,
		New: func(t *testing.T, dir string) runtime.Runtime {
			current = newRuntime(t, runsc, dir)
			return current
		},
		Prepare: func(t *testing.T, spec *runtime.Spec) {
			for i := range spec.Containers {
				spec.Containers[i].Layers = []string{layer}
			}
			spec.EphemeralStorageGiB = 1
		},
		Network: attach,
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
