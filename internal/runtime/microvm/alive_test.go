package microvm

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// startMarked starts a copy of the test binary (VESSEL_TEST_SLEEP: it only
// sleeps) with mark on its command line, as the runtime starts the monitor,
// and returns once exec.Cmd.Start has returned. The copy's pages are
// dropped from the page cache first, as on a fresh machine, which keeps the
// child inside execve longer.
func startMarked(t *testing.T, bin, mark string) *exec.Cmd {
	t.Helper()
	if f, err := os.Open(bin); err == nil {
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
	c := exec.Command(bin, "-test.run=^$", mark)
	c.Env = append(os.Environ(), "VESSEL_TEST_SLEEP=1")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// copyTestBinary copies the running test binary to a directory of the
// test's: a large program whose pages the test may drop from the cache.
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(t.TempDir(), "sleeper")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestAliveRightAfterStart checks a process the moment exec.Cmd.Start
// returns, as Create and teardown do with the VM's monitor. Start returns
// once the child's close-on-exec descriptors are closed, which is before
// the kernel has laid out the new program's arguments: /proc/<pid>/cmdline
// is empty until then (and the command name still the parent's for a
// moment). alive must not take that for a process that is gone.
func TestAliveRightAfterStart(t *testing.T) {
	bin := copyTestBinary(t)
	mark := filepath.Join(t.TempDir(), "sandbox-dir") + "/"
	for i := range 100 {
		c := startMarked(t, bin, mark)
		if !alive(c.Process.Pid, mark) {
			data, _ := os.ReadFile("/proc/" + strconv.Itoa(c.Process.Pid) + "/cmdline")
			t.Fatalf("start %d: alive(%d, mark) = false right after Start; its cmdline then: %q",
				i+1, c.Process.Pid, strings.ReplaceAll(string(data), "\x00", " "))
		}
		c.Process.Kill()
		c.Wait()
	}
}

// TestAliveNotFooled checks that alive still says no for a process whose
// command line lacks the mark (a reused pid), one that has exited, and
// pid 0.
func TestAliveNotFooled(t *testing.T) {
	bin := copyTestBinary(t)
	c := startMarked(t, bin, "some-other-sandbox")
	if alive(c.Process.Pid, "/the/sandbox/dir") {
		t.Errorf("alive matched a process without the mark")
	}
	c.Process.Kill()
	c.Wait()
	if alive(c.Process.Pid, "some-other-sandbox") {
		t.Errorf("alive(%d) after the process was killed and reaped", c.Process.Pid)
	}
	if alive(0, "x") {
		t.Errorf("alive(0)")
	}
}

// TestWaitReadyMonitorEnds checks that Create's wait for the guest says
// how the VM's monitor ended (its exit status and the end of its log)
// when it ends before the guest answers, and that a monitor checked the
// moment it was started is not taken for one that stopped.
func TestWaitReadyMonitorEnds(t *testing.T) {
	dir := t.TempDir()
	qemu := startMarked(t, copyTestBinary(t), dir+"/console.log") // stands for the VM
	if err := os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte(strconv.Itoa(qemu.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	monitor := filepath.Join(t.TempDir(), "vessel-guest")
	script := "#!/bin/sh\necho 'vessel-guest monitor: join the sandbox'\"'\"'s cgroup: no space left on device' >&2\nexit 3\n"
	if err := os.WriteFile(monitor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{cfg: Config{GuestBinary: monitor}}
	done, err := r.startMonitor(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = r.waitReady(t.Context(), dir, done)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("waitReady = %v; want the monitor's exit status 3 and its last log line", err)
	}
}
