package microvm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// confineScript prints what confines the process: its capabilities,
// no_new_privs and seccomp mode, whether namespace and mount calls are
// refused, /dev, /proc's masked and read-only paths, and whether mounts
// of the VM outside the root are visible (they are not after pivot_root).
const confineScript = `grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
busybox unshare -u true 2>&1 | grep -q 'Operation not permitted' && echo unshare-eperm || echo unshare-allowed
mkdir -p /tmp/m; busybox mount -t tmpfs none /tmp/m 2>/dev/null && echo mount-ok || echo mount-refused
echo "dev: $(ls /dev | grep -v '^core$' | tr '\n' ' ')"
echo "kcore: $(busybox head -c 16 /proc/kcore 2>/dev/null | busybox wc -c)"
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable || echo procsys-ro
echo x > /sys/kernel/profiling 2>/dev/null && echo sys-writable || echo sys-ro
echo "outside-mounts: $(grep -c -E ' /(rw|images|containers)[/ ]' /proc/self/mountinfo)"
echo "id: $(id)"`

func logLines(t *testing.T, dir, name string) string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	var out strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.SplitN(l, " ", 4); len(f) == 4 {
			out.WriteString(f[3] + "\n")
		}
	}
	return out.String()
}

func pick(out string, prefixes ...string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				got = append(got, l)
			}
		}
	}
	return got
}

// TestConfinementMatchesRunc: the same container under runc and in a
// micro-VM has the same capabilities, no_new_privs, seccomp mode and /dev;
// in the VM namespace and mount calls fail with EPERM, /proc/kcore is
// masked, /proc/sys and /sys are read-only, and the VM's own mounts are
// out of reach. Further containers of the same VM check the rest of
// runtime.Security: a capability set of its own, a read-only root,
// supplemental groups, an init as PID 1, and runAsNonRoot.
func TestConfinementMatchesRunc(t *testing.T) {
	needVM(t)
	layer := runtimetest.BusyboxLayer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var runcOut string
	if rrt, err := runc.New(runc.Config{StateDir: runtimetest.StateDir(t)}); err != nil {
		t.Logf("runc unavailable, comparing with the expected values only: %v", err)
	} else {
		spec := runtime.Spec{ID: "conf-runc", MilliCPU: 1000, MemoryMiB: 256, EphemeralStorageGiB: 1, LogDir: t.TempDir(),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", confineScript}}}}
		runcOut = runtimetest.RunApp(t, ctx, rrt, spec)
		runtimetest.DeleteLeavesNothing(t, ctx, rrt, spec.ID)
	}

	rt := newRuntime(t, runtimetest.StateDir(t))
	logs := t.TempDir()
	initScript := `echo "pid1: $(cat /proc/1/cmdline | tr '\0' ' ')"; echo "me: $$"; touch /rootfs-write 2>/dev/null && echo root-writable || echo root-ro; grep -E '^(CapEff|CapBnd|Groups):' /proc/self/status; id`
	spec := runtime.Spec{ID: "conf-vm", MilliCPU: 1000, MemoryMiB: 256, EphemeralStorageGiB: 1, LogDir: logs,
		Containers: []runtime.ContainerSpec{
			{Name: "app", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", confineScript}},
			{Name: "custom", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", initScript}, User: "1000",
				Security: runtime.Security{Capabilities: []string{"CAP_CHOWN", "CAP_SYS_PTRACE"}, ReadOnlyRootfs: true,
					SupplementalGroups: []uint32{1234, 5678}, Init: true}},
			{Name: "caps", Layers: []string{layer}, Args: []string{"/bin/sh", "-c", "grep -E '^(CapEff|CapBnd):' /proc/self/status"},
				Security: runtime.Security{Capabilities: []string{"CAP_CHOWN", "CAP_SYS_PTRACE"}}},
			{Name: "nonroot", Layers: []string{layer}, Args: []string{"true"}, Security: runtime.Security{RunAsNonRoot: true}},
		}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer rt.Delete(context.Background(), spec.ID)
	for _, name := range []string{"app", "custom", "caps"} {
		if err := rt.Start(ctx, spec.ID, name); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		if st, err := rt.Wait(ctx, spec.ID, name); err != nil || st.Code != 0 {
			t.Fatalf("%s: Wait = %+v, %v; log:\n%s", name, st, err, logLines(t, logs, name))
		}
	}
	err := rt.Start(ctx, spec.ID, "nonroot")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "container has runAsNonRoot and image will run as root") {
		t.Errorf("start of a runAsNonRoot container as root: %v; want the kubelet's message, invalid argument", err)
	}

	vmOut := logLines(t, logs, "app")
	t.Logf("micro-VM:\n%s", vmOut)
	for _, want := range []string{
		"CapEff:\t00000000a80425fb", "CapPrm:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2",
		"unshare-eperm", "mount-refused", "kcore: 0", "procsys-ro", "sys-ro", "outside-mounts: 0",
		"dev: fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ",
	} {
		if !strings.Contains(vmOut, want+"\n") {
			t.Errorf("micro-VM container output lacks %q", want)
		}
	}
	if runcOut != "" {
		t.Logf("runc:\n%s", runcOut)
		keys := []string{"CapEff:", "CapPrm:", "CapBnd:", "NoNewPrivs:", "Seccomp:", "dev:", "kcore:", "mount-", "procsys-", "sys-", "id:"}
		if a, b := strings.Join(pick(vmOut, keys...), "\n"), strings.Join(pick(runcOut, keys...), "\n"); a != b {
			t.Errorf("micro-VM and runc differ:\nmicro-VM:\n%s\nrunc:\n%s", a, b)
		}
	}

	custom := logLines(t, logs, "custom")
	t.Logf("custom:\n%s", custom)
	// CAP_CHOWN (0) and CAP_SYS_PTRACE (19) bound; a user other than root
	// has none effective after exec, as under runc (no ambient set).
	for _, want := range []string{"pid1: vessel-init /bin/sh /bin/sh -c", "root-ro", "CapEff:\t0000000000000000", "CapBnd:\t0000000000080001",
		"Groups:\t1234 5678", "uid=1000 gid=0(root) groups=1234,5678"} {
		if !strings.Contains(custom, want) {
			t.Errorf("custom container output lacks %q", want)
		}
	}
	if strings.Contains(custom, "me: 1\n") {
		t.Errorf("with Init the command runs as PID 1")
	}
	if caps := logLines(t, logs, "caps"); !strings.Contains(caps, "CapEff:\t0000000000080001\n") || !strings.Contains(caps, "CapBnd:\t0000000000080001\n") {
		t.Errorf("root with CAP_CHOWN and CAP_SYS_PTRACE:\n%s", caps)
	}
}
