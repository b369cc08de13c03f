package microvm_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/testenv"
)

var (
	buildOnce           sync.Once
	kernel, guestBinary string
	buildErr            string
)

// needVM builds (once) the guest kernel cache with scripts/build-guest-kernel
// and the static guest binary, or skips when QEMU or the kernel is missing.
func needVM(t testing.TB) {
	t.Helper()
	testenv.SkipShort(t, "QEMU micro-VMs")
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
		microvm.AfterTests(func() { os.RemoveAll(dir) })
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

func TestConformance(t *testing.T) {
	needVM(t)
	layer := runtimetest.BusyboxLayer(t)
	var current *microvm.Runtime
	runtimetest.Run(t, runtimetest.Harness{
		Image: "busybox",
		Real:  true,
		// Under emulation on a loaded host a boot takes more than the
		// suite's default 30 s: beside stress-ng --cpu 2 and another
		// package's tests (load 22 on 2 cores), Create failed with "the
		// guest agent did not answer: context deadline exceeded" while the
		// console showed the guest's clock at 2-3 s (the VM had a tenth of
		// a CPU). The runtime itself allows a boot 60 s (bootTimeout).
		Timeout: 90 * time.Second,
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
