package gvisor

import (
	"os"
	"os/exec"
	"path/filepath"
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
