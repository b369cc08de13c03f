package microvm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Accelerators.
const (
	AccelAuto = ""
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

const (
	// kvmProbeTimeout bounds the KVM probe: a working KVM prints the
	// kernel's first line in milliseconds.
	kvmProbeTimeout = 3 * time.Second
	// killWait bounds how long a probe waits for its killed child to end
	// (a process stuck in the kernel may take its time).
	killWait = 5 * time.Second
)

// kvmVerdict is the KVM probe's answer: whether a guest runs under KVM
// here and, either way, why.
type kvmVerdict struct {
	ok  bool
	why string
}

// kvmProbes keeps each probe's answer for the life of the process, by
// QEMU and kernel.
// kvmDevice is KVM's device; tests point it elsewhere.
var kvmDevice = "/dev/kvm"

var kvmProbes struct {
	sync.Mutex
	m map[string]kvmVerdict
}

// probeKVM says whether KVM really works here: /dev/kvm must exist and a
// guest booted under it (the guest kernel, no initramfs) must print its
// first line on the serial console within kvmProbeTimeout. A /dev/kvm
// whose guests hang fails it: QEMU is killed at the timeout, so a hung
// guest costs the probe, never a task. The answer, with its reason, is
// kept for the life of the process.
func probeKVM(qemu, kernel string) (bool, string) {
	key := qemu + "\x00" + kernel
	kvmProbes.Lock()
	defer kvmProbes.Unlock()
	if v, ok := kvmProbes.m[key]; ok {
		return v.ok, v.why
	}
	var v kvmVerdict
	if _, err := os.Stat(kvmDevice); err != nil {
		v.why = "no " + kvmDevice
	} else {
		cmd := exec.Command(qemu, "-M", "microvm,acpi=on,isa-serial=on", "-nodefaults", "-no-user-config",
			"-display", "none", "-cpu", "host", "-m", "128", "-accel", "kvm", "-no-reboot",
			"-kernel", kernel, "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1 "+tscArg(),
			"-serial", "stdio")
		if v.ok, v.why = awaitLine(cmd, "Linux version", kvmProbeTimeout); v.ok {
			v.why = "a probe guest's kernel started under KVM"
		} else {
			v.why = "a probe guest under KVM " + v.why
		}
	}
	if kvmProbes.m == nil {
		kvmProbes.m = map[string]kvmVerdict{}
	}
	kvmProbes.m[key] = v
	return v.ok, v.why
}

// awaitLine starts cmd and waits up to timeout for a line of its standard
// output that contains want. The child is killed and reaped either way
// (and killed with this process should it die first). When the line does
// not come it says why: "printed nothing in <timeout>: hung, killed",
// "ended: <its stderr>", or that it could not start.
func awaitLine(cmd *exec.Cmd, want string, timeout time.Duration) (bool, string) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, "could not start: " + err.Error()
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return false, "could not start: " + err.Error()
	}
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				got <- true
				return
			}
		}
		got <- false
	}()
	ok, why := false, ""
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case ok = <-got:
		if !ok {
			why = "ended"
		}
	case <-timer.C:
		why = fmt.Sprintf("printed nothing in %s: hung, killed", timeout)
	}
	cmd.Process.Kill()
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killWait):
		// Reaped in the background when it ends.
		return ok, strings.TrimPrefix(why+", and did not end when killed", ", ")
	}
	if why == "ended" {
		if msg := strings.Join(strings.Fields(stderr.String()), " "); msg != "" {
			why += ": " + msg
		}
	}
	return ok, why
}
