package runtimetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
)

// The helpers of this file set up what the harnesses of the real back ends
// (runc, gvisor, microvm) need on the host: an image layer, a network, and
// the figures their benchmarks report.

// busyboxApplets are linked to /bin/busybox in the layer of BusyboxLayer.
var busyboxApplets = []string{"sh", "echo", "sleep", "cat", "env", "pwd", "yes", "true", "false",
	"head", "dd", "id", "nc", "wget", "ls", "ps", "kill", "cut", "grep", "seq", "mkdir", "rm", "mkfifo"}

// BusyboxLayer builds an image layer from the host's static busybox, in a
// directory of tb.TempDir (removed with the test), and returns its path. The
// layer has /bin/busybox and its applets as symbolic links (all that
// Harness.Image asks for), /tmp (1777), /root, and an /etc/passwd and
// /etc/group with root and nobody (65534:65534). It skips the test when
// the host has no busybox and fails it on any other error.
func BusyboxLayer(tb testing.TB) string {
	tb.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		tb.Skip("no busybox on this host")
	}
	layer := filepath.Join(tb.TempDir(), "layer")
	for _, d := range []string{"bin", "etc", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(layer, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(layer, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "bin", "busybox"), data, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(layer, "bin", a)); err != nil {
			tb.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(layer, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return layer
}

// WithLayer returns a Harness.Prepare that gives every container of the
// spec the one layer (as made by BusyboxLayer) and the sandbox 1 GiB of
// ephemeral storage.
func WithLayer(layer string) func(t *testing.T, spec *runtime.Spec) {
	return func(t *testing.T, spec *runtime.Spec) {
		for i := range spec.Containers {
			spec.Containers[i].Layers = []string{layer}
		}
		spec.EphemeralStorageGiB = 1
	}
}

// FreeSubnet picks at random a 10.Y.X.0/24 (Y from 90 to 249, X from 1 to
// 254) that holds no address of the host and lies in no network of the
// host up to a /24 (the 10.89.0.0/16 of the default configuration, say).
// It fails the test when 500 tries find none. Nothing is reserved: two
// callers at once may, rarely, pick the same subnet.
func FreeSubnet(tb testing.TB) netip.Prefix {
	tb.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		tb.Fatal(err)
	}
	for range 500 {
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 90+rand.IntN(160), 1+rand.IntN(254)))
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
				if ones, _ := n.Mask.Size(); ones <= 24 {
					if pa, ok := netip.AddrFromSlice(n.IP.Mask(n.Mask)); ok && netip.PrefixFrom(pa.Unmap(), ones).Contains(p.Addr()) {
						used = true
					}
				}
			}
		}
		if !used {
			return p
		}
	}
	tb.Fatal("no free 10.Y.X.0/24 on this host")
	return netip.Prefix{}
}

// Networking opens a network manager (internal/network) with one subnet
// "t" on a FreeSubnet, in a directory of tb.TempDir, and returns a
// Harness.Network for it. The manager is closed, and its unused bridges
// removed, when tb ends.
//
// The returned function attaches the sandbox of spec.ID to the subnet,
// sets spec.NetNSPath and spec.EtcDir and returns the sandbox's address;
// it fails t when the attachment fails. It registers the detachment on t:
// called before Create (as the suite calls Harness.Network), the sandbox is
// detached after the suite's Delete, and t fails if that detachment does.
func Networking(tb testing.TB) func(t *testing.T, spec *runtime.Spec) netip.Addr {
	tb.Helper()
	nm, err := network.Open(network.Config{StateDir: tb.TempDir(),
		Subnets: []network.Subnet{{Name: "t", CIDR: FreeSubnet(tb)}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		nm.RemoveUnusedBridges(context.Background())
		nm.Close()
	})
	return func(t *testing.T, spec *runtime.Spec) netip.Addr {
		a, err := nm.Attach(context.Background(), spec.ID, "t", network.AttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Registered before the suite's Delete, so it runs after it.
		t.Cleanup(func() {
			if err := nm.Detach(context.Background(), spec.ID); err != nil {
				t.Errorf("Detach(%s): %v", spec.ID, err)
			}
		})
		spec.NetNSPath, spec.EtcDir = a.NetNSPath, a.EtcDir
		return a.IP
	}
}

// BareBundle rewrites the OCI config.json at path (as "runc spec" or
// "runsc spec" write it) into the baseline of a benchmark: a read-only root
// file system at layer and a process "sleep 1000" with no terminal. It
// fails the benchmark when the file cannot be read, parsed or written.
func BareBundle(tb testing.TB, path, layer string) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	proc, ok := cfg["process"].(map[string]any)
	if !ok {
		tb.Fatalf("%s has no process", path)
	}
	cfg["root"] = map[string]any{"path": layer, "readonly": true}
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "1000"}
	if data, err = json.Marshal(cfg); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// LeftoverProcesses returns the PIDs of the "process PID: command" lines
// of leftovers (as a back end's Leftovers method lists them) whose command
// contains any of words, in their order.
func LeftoverProcesses(leftovers []string, words ...string) []int {
	var pids []int
	for _, l := range leftovers {
		pid, rest, ok := strings.Cut(strings.TrimPrefix(l, "process "), ":")
		if !ok || !strings.HasPrefix(l, "process ") {
			continue
		}
		for _, w := range words {
			if strings.Contains(rest, w) {
				if n, err := strconv.Atoi(pid); err == nil {
					pids = append(pids, n)
				}
				break
			}
		}
	}
	return pids
}

// ResidentKiB returns the resident set of process pid in KiB (VmRSS of
// /proc/PID/status), and false when the process or the line is not
// there.
func ResidentKiB(pid int) (int64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n, true
		}
	}
	return 0, false
}

// LeftoverLister is a runtime that lists what of a sandbox is still on the
// host, as the real back ends do for Harness.Leftovers.
type LeftoverLister interface {
	runtime.Runtime
	Leftovers(id string) []string
}

// RunApp creates the sandbox of spec, starts its container "app", waits for
// it to exit and returns the text of its log (<LogDir>/app.log), one line
// per record. Create, Start and Wait each have ctx. While "app" runs, rt
// must list at least 4 leftovers (the sandbox's directory, mounts, cgroups
// and processes), else t fails. t fails at once when Create or Start fails
// or "app" does not exit with code 0. The sandbox is deleted (with its own
// timeout) when t ends; a test that checks Delete calls it itself.
func RunApp(t *testing.T, ctx context.Context, rt LeftoverLister, spec runtime.Spec) string {
	t.Helper()
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt.Delete(ctx, spec.ID)
	})
	if err := rt.Start(ctx, spec.ID, "app"); err != nil {
		t.Fatal(err)
	}
	if left := rt.Leftovers(spec.ID); len(left) < 4 {
		t.Errorf("Leftovers of a running sandbox = %q; want its directory, mounts, cgroups and processes", left)
	}
	st, err := rt.Wait(ctx, spec.ID, "app")
	if err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	return LogText(spec.LogDir, "app")
}

// LogText is the text of container name's log in dir (<dir>/<name>.log,
// runtime.LogLine), one line per record, both streams; "" when there is
// none.
func LogText(dir, name string) string {
	data, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	var out strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.SplitN(l, " ", 4); len(f) == 4 {
			out.WriteString(f[3] + "\n")
		}
	}
	return out.String()
}

// DeleteLeavesNothing deletes sandbox id and fails t when Delete fails (at
// once) or rt still lists anything of it.
func DeleteLeavesNothing(t *testing.T, ctx context.Context, rt LeftoverLister, id string) {
	t.Helper()
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if left := rt.Leftovers(id); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}
