package pty

import (
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestOpenRunsACommandOnATerminal(t *testing.T) {
	ptmx, tty, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := SetSize(ptmx, 100, 30); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "stty size; tty >/dev/null && echo is-a-tty")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	out, err := io.ReadAll(Reader(ptmx))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if got := strings.ReplaceAll(string(out), "\r\n", "\n"); got != "30 100\nis-a-tty\n" {
		t.Fatalf("output %q, want \"30 100\\nis-a-tty\\n\"", got)
	}
}
