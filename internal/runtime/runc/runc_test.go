package runc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

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
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer")
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

func needRunc(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the runc runtime needs root")
	}
	for _, b := range []string{"runc", "conmon"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}

// freeSubnet picks a 10.89.X.0/24 that overlaps no address of the host
// (other tests may hold a bridge on 10.89.0.0/16: then 10.Y.X.0/24 with Y
// from 90 to 249).
func freeSubnet(t testing.TB) netip.Prefix {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		second := 89
		if i >= 50 {
			second = 90 + rand.IntN(160)
		}
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", second, 1+rand.IntN(254)))
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
	layer := busyboxLayer(t)
	var current *runc.Runtime

	nm, err := network.Open(network.Config{StateDir: t.TempDir(),
		Subnets: []network.Subnet{{Name: "t", CIDR: freeSubnet(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nm.RemoveUnusedBridges(context.Background())
		nm.Close()
	})

	runtimetest.Run(t, runtimetest.Harness{
		Image: "busybox",
		Real:  true,
		New: func(t *testing.T, dir string) runtime.Runtime {
			current = newRuntime(t, dir)
			return current
		},
		Prepare: func(t *testing.T, spec *runtime.Spec) {
			for i := range spec.Containers {
				spec.Containers[i].Layers = []string{layer}
			}
			spec.EphemeralStorageGiB = 1
		},
		Network: func(t *testing.T, spec *runtime.Spec) netip.Addr {
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
		},
		Leftovers: func(t *testing.T, id string) []string {
			return current.Leftovers(id)
		},
	})
}
