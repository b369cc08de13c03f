package runc_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// TestConfinement checks what a container is allowed: the default
// capability set, no new privileges, a seccomp filter that refuses
// namespace and mount calls, Fargate's file limits clamped to the host's.
func TestConfinement(t *testing.T) {
	needRunc(t)
	layer := runtimetest.BusyboxLayer(t)
	rt := newRuntime(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs := t.TempDir()
	script := `grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
mkdir /tmp/m && (mount -t tmpfs none /tmp/m 2>/dev/null && echo mount-ok || echo mount-refused)
cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable || echo kcore-masked
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable || echo procsys-ro
hostname_file=$(cat /etc/hostname); echo "etc-hostname $hostname_file"`
	spec := runtime.Spec{ID: "conf-1", MilliCPU: 1000, MemoryMiB: 256, LogDir: logs, Hostname: "box",
		EphemeralStorageGiB: 1,
		Containers:          []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", script}}}}
	out := runtimetest.RunApp(t, ctx, rt, spec)
	var hard uint64 = 65535
	if h := hostNofileHard(t); h < hard {
		hard = h
	}
	for _, want := range []string{
		"CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2",
		"nofile 1024 " + strconv.FormatUint(hard, 10), "mount-refused", "kcore-masked", "procsys-ro", "etc-hostname box",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	runtimetest.DeleteLeavesNothing(t, ctx, rt, spec.ID)
}

func hostNofileHard(t *testing.T) uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	return rl.Max
}
