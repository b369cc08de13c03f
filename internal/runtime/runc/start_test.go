package runc_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// createdContainer makes a container with "runc create" under r's state
// root (a bundle of runc spec's defaults over the busybox layer running
// sleep) and returns its init's PID; the test deletes it.
func createdContainer(t *testing.T, r *runc.Runtime, cid string) int {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("runc", "spec", "-b", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	runtimetest.BareBundle(t, filepath.Join(dir, "config.json"), runtimetest.BusyboxLayer(t))
	pidFile := filepath.Join(dir, "pid")
	// The container's stdio is /dev/null, so that nothing waits on it.
	if err := exec.Command("runc", "--root", r.RuncRoot(), "create", "--bundle", dir, "--pid-file", pidFile, cid).Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	t.Cleanup(func() { exec.Command("runc", "--root", r.RuncRoot(), "delete", "--force", cid).Run() })
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func newStartRuntime(t *testing.T) *runc.Runtime {
	t.Helper()
	needRunc(t)
	return newRuntime(t, t.TempDir())
}

func runcStatus(t *testing.T, r *runc.Runtime, cid string) string {
	t.Helper()
	out, err := exec.Command("runc", "--root", r.RuncRoot(), "state", cid).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	for _, f := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(f), ":"); ok && k == `"status"` {
			return strings.Trim(strings.TrimSpace(v), `",`)
		}
	}
	t.Fatalf("no status in runc state: %s", out)
	return ""
}

// TestStartRunsTheCreatedProcess: start does what "runc start" does: the
// container's process runs and runc reports the container running.
func TestStartRunsTheCreatedProcess(t *testing.T) {
	r := newStartRuntime(t)
	pid := createdContainer(t, r, "start-ok")
	if st := runcStatus(t, r, "start-ok"); st != "created" {
		t.Fatalf("status before the start %q, want created", st)
	}
	if err := r.StartCreated(context.Background(), "start-ok", "start-ok", pid); err != nil {
		t.Fatal(err)
	}
	if st := runcStatus(t, r, "start-ok"); st != "running" {
		t.Fatalf("status after the start %q, want running", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if strings.HasPrefix(string(cmd), "sleep\x001000") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's init (PID %d) runs %q, not the container's sleep", pid, cmd)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStartOfADeadInit: a container whose init was killed before the
// start is an error at once, not a wait for the start's timeout.
func TestStartOfADeadInit(t *testing.T) {
	r := newStartRuntime(t)
	pid := createdContainer(t, r, "start-dead")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := r.StartCreated(ctx, "start-dead", "start-dead", pid)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "ended before its process ran") {
		t.Fatalf("start of a killed init: %v (context: %v); want an error saying it ended", err, ctx.Err())
	}
}

// TestStartGivesUpAtItsDeadline: an init that never opens its end (here a
// fifo nobody writes, beside a live process) ends the start at the
// context's deadline, and the start's blocked open is ended too.
func TestStartGivesUpAtItsDeadline(t *testing.T) {
	r := newStartRuntime(t)
	dir := filepath.Join(r.RuncRoot(), "start-stuck")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, runc.ExecFifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.StartCreated(ctx, "start-stuck", "start-stuck", os.Getpid()); err != context.DeadlineExceeded {
		t.Fatalf("start: %v; want the context's deadline", err)
	}
	// No reader is left on the fifo: a writer's non-blocking open finds none.
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
		t.Fatal("a reader is still open on the fifo after the start gave up")
	}
}
