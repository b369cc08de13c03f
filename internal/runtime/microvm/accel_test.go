package microvm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testenv"
)

// awaitLine, the KVM probe's core, on real QEMU: a guest that prints
// nothing (its CPU held stopped with -S, as a KVM guest that hangs) is
// killed at the timeout and reported hung; a QEMU that ends says why; a
// line that comes is found. The child is gone when it returns.
func TestAwaitLine(t *testing.T) {
	testenv.SkipShort(t, "QEMU")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	base := []string{"-M", "microvm", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		timeout time.Duration
		ok      bool
		why     string
	}{
		{"a guest that hangs is killed at the timeout", append(base, "-serial", "stdio"), "Linux version", time.Second,
			false, "printed nothing in 1s: hung, killed"},
		{"a QEMU that ends says why", []string{"-M", "no-such-machine", "-display", "none"}, "Linux version", time.Minute,
			false, "ended: qemu-system-x86_64: unsupported machine type Use -machine help"},
		{"the line that comes is found", append(base, "-monitor", "stdio"), "QEMU", time.Minute,
			true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(qemu, tc.args...)
			type verdict struct {
				ok  bool
				why string
			}
			done := make(chan verdict, 1)
			go func() {
				ok, why := awaitLine(cmd, tc.want, tc.timeout)
				done <- verdict{ok, why}
			}()
			var v verdict
			select {
			case v = <-done:
			case <-time.After(tc.timeout + 2*killWait):
				cmd.Process.Kill()
				t.Fatalf("awaitLine did not return after its timeout (%s) and the kill's wait (%s)", tc.timeout, killWait)
			}
			if v.ok != tc.ok || !strings.HasPrefix(v.why, tc.why) {
				t.Errorf("awaitLine = %v, %q, want %v, %q", v.ok, v.why, tc.ok, tc.why)
			}
			if err := syscall.Kill(cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("QEMU (pid %d) is still there after awaitLine returned: kill -0: %v", cmd.Process.Pid, err)
			}
		})
	}
}

// The KVM probe on a host whose KVM guests hang: /dev/kvm is there but
// the guest prints nothing (here a stand-in for the device, and QEMU run
// with its CPU held stopped). The probe reports KVM not working, having
// killed the guest at its timeout, and a second probe in the process
// answers from the cache without starting QEMU again.
func TestProbeKVMHung(t *testing.T) {
	testenv.SkipShort(t, "QEMU")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	dir := t.TempDir()
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func(d string) { kvmDevice = d }(kvmDevice)
	kvmDevice = dev
	// The stand-in QEMU notes its PID at each start and becomes a real QEMU whose guest
	// never runs, whatever the probe asked for.
	starts := filepath.Join(dir, "starts")
	hung := filepath.Join(dir, "qemu")
	script := "#!/bin/sh\necho $$ >>" + starts + "\nexec " + qemu +
		" -M microvm -accel tcg -nodefaults -no-user-config -display none -S -serial stdio\n"
	if err := os.WriteFile(hung, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	want := "a probe guest under KVM printed nothing in " + kvmProbeTimeout.String() + ": hung, killed"
	for i := range 2 {
		done := make(chan struct{})
		var ok bool
		var why string
		go func() {
			ok, why = probeKVM(hung, "vmlinux")
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(kvmProbeTimeout + 2*killWait):
			t.Fatalf("probe %d did not return after its timeout (%s) and the kill's wait (%s)", i+1, kvmProbeTimeout, killWait)
		}
		if ok || why != want {
			t.Errorf("probe %d = %v, %q, want false, %q", i+1, ok, why, want)
		}
	}
	b, err := os.ReadFile(starts)
	pids := strings.Fields(string(b))
	if err != nil || len(pids) != 1 {
		t.Fatalf("QEMU started as %q (%v), want once: the second probe is to come from the cache", pids, err)
	}
	pid, err := strconv.Atoi(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the hung probe's QEMU (pid %d) is still there: kill -0: %v", pid, err)
	}
}
