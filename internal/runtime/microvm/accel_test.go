package microvm

import (
	"errors"
	"os/exec"
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
			false, "printed nothing in 1s (hung)"},
		{"a QEMU that ends says why", []string{"-M", "no-such-machine", "-display", "none"}, "Linux version", time.Minute,
			false, "ended (qemu-system-x86_64: unsupported machine type Use -machine help"},
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
