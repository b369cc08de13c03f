package gvisor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPauseELF runs the pause program on the host: it must start and keep
// running until killed.
func TestPauseELF(t *testing.T) {
	elf, ok := pauseELF()
	if !ok {
		t.Skip("no pause program for this architecture")
	}
	p := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(p, elf, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Kill()
	<-done
}

// TestSethostnameELF runs the hostname setter on the host, in a UTS
// namespace of its own: the name it is given is the namespace's
// hostname after it, and a name longer than the kernel takes ends it
// with EINVAL's number.
func TestSethostnameELF(t *testing.T) {
	elf, ok := sethostnameELF()
	if !ok {
		t.Skip("no hostname setter for this architecture")
	}
	p := filepath.Join(t.TempDir(), "sethostname")
	if err := os.WriteFile(p, elf, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(name string) (string, error) {
		cmd := exec.Command("/bin/sh", "-c", `"$0" "$1" || exit $?; cat /proc/sys/kernel/hostname`, p, name)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	if got, err := run("pod-7f9c"); err != nil || got != "pod-7f9c" {
		t.Fatalf("after the setter the hostname is %q (%v), want pod-7f9c", got, err)
	}
	var exit *exec.ExitError
	if _, err := run(strings.Repeat("a", 65)); !errors.As(err, &exit) || exit.ExitCode() != int(syscall.EINVAL) {
		t.Fatalf("a 65-character name: %v, want exit status %d (EINVAL)", err, syscall.EINVAL)
	}
	if host, _ := os.Hostname(); host == "pod-7f9c" {
		t.Fatal("the setter changed the host's own hostname")
	}
}

// TestParseEventStats reads what runsc events --stats printed for a
// container of a sandbox (captured from runsc), and refuses output that is
// no stats event.
func TestParseEventStats(t *testing.T) {
	out := []byte(`{"type":"stats","id":"rt-135155-4389-1-idle","data":{"cpu":{"usage":{"total":183361888}},"memory":{"usage":{"limit":0,"usage":2035712,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0}},"pids":{"current":1},"network_interfaces":null}}` + "\n")
	u, err := parseEventStats(out)
	if err != nil || u.CPUNanos != 183361888 || u.MemoryBytes != 2035712 {
		t.Fatalf("parseEventStats = %+v, %v; want 183361888 ns of CPU and 2035712 bytes", u, err)
	}
	for _, bad := range []string{"", "container not found", `{"type":"oom","id":"x"}`} {
		if _, err := parseEventStats([]byte(bad)); err == nil {
			t.Errorf("parseEventStats(%q) gave no error", bad)
		}
	}
}
