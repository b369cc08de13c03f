package microvm_test

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/runtime/toolkit"
	"vessel.dev/vessel/internal/testutil"
)

func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestQEMUConfinement: QEMU runs as the unprivileged vessel-qemu user
// under its own seccomp filter; QEMU and the VM's monitor are in the
// sandbox's cgroup; the console log is held to its cap.
func TestQEMUConfinement(t *testing.T) {
	needVM(t)
	state := runtimetest.StateDir(t)
	rt, err := microvm.New(microvm.Config{StateDir: state, KernelPath: kernel, GuestBinary: guestBinary, ConsoleMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A container is part of every valid spec; this test only creates
	// the VM and never starts it.
	spec := runtime.Spec{ID: "qconf", MilliCPU: 1000, MemoryMiB: 128, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{runtimetest.BusyboxLayer(t)}, Args: []string{"sleep", "1000"}}}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), spec.ID)
	dir := filepath.Join(state, spec.ID)
	qemu, mon := toolkit.ReadPid(filepath.Join(dir, "qemu.pid")), toolkit.ReadPid(filepath.Join(dir, "monitor.pid"))
	if qemu == 0 || mon == 0 {
		t.Fatalf("pids: qemu %d, monitor %d", qemu, mon)
	}
	u, err := user.Lookup(microvm.DefaultQEMUUser)
	if err != nil {
		t.Fatalf("the QEMU user was not made: %v", err)
	}
	want := u.Uid + "\t" + u.Uid + "\t" + u.Uid + "\t" + u.Uid
	if got := statusField(t, qemu, "Uid"); got != want || u.Uid == "0" {
		t.Errorf("QEMU's Uid: %q, want %q (%s)", got, want, microvm.DefaultQEMUUser)
	}
	if got := statusField(t, qemu, "CapEff"); got != "0000000000000000" {
		t.Errorf("QEMU's CapEff: %s, want none", got)
	}
	if got := statusField(t, qemu, "Seccomp"); got != "2" {
		t.Errorf("QEMU's Seccomp: %s, want 2 (filter)", got)
	}
	for name, pid := range map[string]int{"QEMU": qemu, "monitor": mon} {
		data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
		if !strings.Contains(string(data), "/vessel-microvm/"+spec.ID+"\n") {
			t.Errorf("%s is not in the sandbox's cgroup:\n%s", name, data)
		}
	}
	// A console that floods: the monitor empties the log past its cap.
	console := filepath.Join(dir, "console.log")
	f, err := os.OpenFile(console, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(strings.Repeat("flood\n", 100_000)))
	f.Close()
	testutil.Eventually(t, time.Minute, func() error {
		st, err := os.Stat(console)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 64<<10 {
			return fmt.Errorf("console.log stays at %d bytes, over its cap of 64 KiB", st.Size())
		}
		return nil
	})
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}
