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
