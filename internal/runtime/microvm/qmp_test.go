package microvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testenv"
)

// TestVirtioQueues: a VM's QMP socket gives the state of its control
// channel's queues (here of a VM that has not started, so every index is
// 0), and a VM without one is said to be unreachable, not an error; the
// host's view lists QEMU's threads.
func TestVirtioQueues(t *testing.T) {
	testenv.SkipShort(t, "QEMU")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64 on this host")
	}
	dir := t.TempDir()
	if got := virtioQueues(dir); !strings.HasPrefix(got, "(QMP: ") {
		t.Errorf("without a VM: %q; want what failed", got)
	}
	// Paused before its first instruction: the devices exist, no guest runs.
	cmd := exec.Command(qemu, "-M", "microvm", "-nodefaults", "-no-user-config", "-display", "none", "-accel", "tcg", "-S",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=ctl,path="+filepath.Join(dir, "ctl.sock")+",server=on,wait=off",
		"-device", "virtserialport,chardev=ctl,name=vessel.ctl",
		"-qmp", "unix:"+filepath.Join(dir, qmpSocket)+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var got string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got = virtioQueues(dir); !strings.HasPrefix(got, "(QMP: ") || time.Now().After(deadline) {
			break
		}
	}
	// Queues 4 and 5 are the port's (0 and 1 the console port's, 2 and 3
	// the device's control queues); the vCPU, at reset, runs in 16 bits.
	for _, want := range []string{"q0 avail 0/0 used 0 signalled 0 inuse 0", "q5 avail 0/0 used 0 signalled 0 inuse 0", "vCPU EIP=0000fff0", "vCPU EFL=", "code 0x", "vCPU HLT=0", "APIC LVTT ", "APIC Timer DCR=", "APIC IRR (none)"} {
		if !strings.Contains(got, want) {
			t.Errorf("virtioQueues = %q; want it to hold %q", got, want)
		}
	}
	t.Logf("QEMU says: %s", got)
	// The host's view: where each of QEMU's threads waits.
	if err := os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := (&Runtime{}).hostView(dir); !strings.HasPrefix(got, "QEMU threads "+strconv.Itoa(cmd.Process.Pid)+":") {
		t.Errorf("hostView = %q; want QEMU's threads, its main thread first", got)
	}
}
