package microvm_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm"
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

var (
	buildOnce           sync.Once
	kernel, guestBinary string
	buildErr            string
)

// needVM builds (once) the guest kernel cache with scripts/build-guest-kernel
// and the static guest binary, or skips when QEMU or the kernel is missing.
func needVM(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the microvm runtime needs root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	buildOnce.Do(func() {
		root, _ := filepath.Abs("../../..")
		out, err := exec.Command(filepath.Join(root, "scripts", "build-guest-kernel")).Output()
		if err != nil {
			buildErr = fmt.Sprintf("guest kernel cache missing and scripts/build-guest-kernel failed: %v", err)
			return
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "kernel="); ok {
				kernel = v
			}
		}
		dir, err := os.MkdirTemp("", "vessel-guest-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		guestBinary = filepath.Join(dir, "vessel-guest")
		cmd := exec.Command("go", "build", "-o", guestBinary, "./cmd/vessel-guest")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Sprintf("build vessel-guest: %v: %s", err, out)
		}
	})
	if kernel == "" || buildErr != "" {
		t.Skip(buildErr)
	}
}

// stateCache is one cache dir for the whole run: root images and the
// initramfs are built once.
func newRuntime(t testing.TB, dir string) *microvm.Runtime {
	t.Helper()
	rt, err := microvm.New(microvm.Config{StateDir: dir, KernelPath: kernel, GuestBinary: guestBinary})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// freeSubnet picks a 10.Y.X.0/24 that overlaps no address of the host.
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

func TestConformance(t *testing.T) {
	needVM(t)
	layer := busyboxLayer(t)
	var current *microvm.Runtime

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
