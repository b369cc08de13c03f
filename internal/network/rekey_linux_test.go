package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

// TestRekey moves a warm sandbox's attachment to a task, as the agent's
// pool does at a claim: the lease, Get and LookupIP follow the task ID at
// once and after a restart; the namespace keeps its path; Detach of the
// task removes the namespace, the veth, the /etc files and the lease.
func TestRekey(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	ctx := context.Background()
	warm, err := m.Attach(ctx, "warm-runc-0a1b", sub.Name, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := m.Rekey(ctx, "warm-runc-0a1b", "task1", AttachOptions{Hostname: "web-0", Domain: "nginx.ns.svc.cluster.local",
		DNS: &DNS{Nameservers: []string{"10.89.255.54"}, Searches: []string{"ns.svc"}}})
	if err != nil {
		t.Fatal(err)
	}
	if moved.TaskID != "task1" || moved.IP != warm.IP || moved.NetNSPath != warm.NetNSPath || moved.HostVeth != warm.HostVeth || moved.EtcDir != warm.EtcDir {
		t.Fatalf("Rekey gave %+v; want task1 with the warm attachment's address, namespace, veth and /etc (%+v)", moved, warm)
	}
	if _, ok := m.Get("warm-runc-0a1b"); ok {
		t.Error("Get still finds the attachment under the warm ID")
	}
	if id, ok := m.LookupIP(warm.IP); !ok || id != "task1" {
		t.Errorf("LookupIP(%s) = %q, %v; want task1", warm.IP, id, ok)
	}
	hostname, _ := os.ReadFile(filepath.Join(moved.EtcDir, "hostname"))
	resolv, _ := os.ReadFile(filepath.Join(moved.EtcDir, "resolv.conf"))
	if string(hostname) != "web-0\n" || !strings.Contains(string(resolv), "nameserver 10.89.255.54") || !strings.Contains(string(resolv), "search ns.svc") {
		t.Errorf("/etc files not rewritten for the task: hostname %q, resolv.conf %q", hostname, resolv)
	}
	if hosts, _ := os.ReadFile(filepath.Join(moved.EtcDir, "hosts")); !strings.HasSuffix(string(hosts), "\n"+warm.IP.String()+"\tweb-0.nginx.ns.svc.cluster.local web-0\n") {
		t.Errorf("hosts not rewritten with the task's fully qualified name:\n%s", hosts)
	}
	// A retry (an agent that crashed after the lease was written) is harmless.
	if again, err := m.Rekey(ctx, "warm-runc-0a1b", "task1", AttachOptions{}); err != nil || again.IP != warm.IP {
		t.Errorf("Rekey again = %+v, %v; want the moved attachment", again, err)
	}
	// The old namespace name stays taken while the task holds it.
	if _, err := m.Attach(ctx, "warm-runc-0a1b", sub.Name, AttachOptions{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Attach under the moved namespace's name: %v; want ErrAlreadyExists", err)
	}
	other, err := m.Attach(ctx, "task2", sub.Name, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rekey(ctx, "task1", "task2", AttachOptions{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Rekey onto an attached task: %v; want ErrAlreadyExists", err)
	}
	if _, err := m.Rekey(ctx, "nobody", "task3", AttachOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("Rekey of no attachment: %v; want ErrNotFound", err)
	}
	if other.IP == warm.IP {
		t.Fatalf("task2 got the address %s task1 holds", other.IP)
	}

	// A restarted manager (the agent killed -9 after the claim) knows the
	// attachment by the task's ID, whole.
	m.Close()
	m2 := openTest(t, dir, sub)
	a, ok := m2.Get("task1")
	if !ok || a.IP != warm.IP || a.NetNSPath != warm.NetNSPath {
		t.Fatalf("after a restart Get(task1) = %+v, %v; want the moved attachment", a, ok)
	}
	if err := m2.Reconcile(ctx, func(id string) bool { return id == "task1" || id == "task2" }); err != nil {
		t.Fatalf("Reconcile keeping task1 found problems: %v", err)
	}
	if !isNetNS(warm.NetNSPath) {
		t.Fatal("Reconcile removed the moved attachment's namespace")
	}

	if err := m2.Detach(ctx, "task1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(warm.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there after Detach(task1): %v", warm.NetNSPath, err)
	}
	if _, err := os.Stat(warm.EtcDir); !os.IsNotExist(err) {
		t.Errorf("/etc directory %s still there after Detach(task1): %v", warm.EtcDir, err)
	}
	if linkExists(warm.HostVeth) {
		t.Errorf("veth %s still there after Detach(task1)", warm.HostVeth)
	}
	if _, ok := m2.LookupIP(warm.IP); ok {
		t.Errorf("address %s still leased after Detach(task1)", warm.IP)
	}
	m2.Close()
	m3 := openTest(t, dir, sub)
	defer m3.Close()
	if _, ok := m3.Get("task1"); ok {
		t.Error("a restarted manager still has task1's lease")
	}
}

// TestRekeyBack moves an attachment to a task and back, as a claim the
// runtime turns down does: the pool's entry is whole again under its own
// ID, with its default hostname.
func TestRekeyBack(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	ctx := context.Background()
	warm, err := m.Attach(ctx, "warm-sim-1", sub.Name, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rekey(ctx, "warm-sim-1", "task9", AttachOptions{Hostname: "pod-9"}); err != nil {
		t.Fatal(err)
	}
	back, err := m.Rekey(ctx, "task9", "warm-sim-1", AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Hostname != warm.Hostname || back.NetNSPath != warm.NetNSPath {
		t.Errorf("after the way back: %+v; want %+v", back, warm)
	}
	if err := m.Reconcile(ctx, func(id string) bool { return id == "warm-sim-1" }); err != nil {
		t.Errorf("the entry is not whole after the way back: %v", err)
	}
	if hn, _ := os.ReadFile(filepath.Join(back.EtcDir, "hostname")); string(hn) != warm.Hostname+"\n" {
		t.Errorf("hostname file %q; want %q", hn, warm.Hostname)
	}
}

// TestDetachOfMovedName: Detach of the ID an attachment was moved away
// from (a warm sandbox deleted after its task took its attachment) leaves
// the task's namespace alone.
func TestDetachOfMovedName(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	ctx := context.Background()
	if _, err := m.Attach(ctx, "warm-x-1", sub.Name, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	moved, err := m.Rekey(ctx, "warm-x-1", "task1", AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Detach(ctx, "warm-x-1"); err != nil {
		t.Fatal(err)
	}
	if !isNetNS(moved.NetNSPath) || !linkExists(moved.HostVeth) {
		t.Fatal("Detach of the old ID removed the task's namespace or veth")
	}
	if err := m.Reconcile(ctx, func(id string) bool { return id == "task1" }); err != nil {
		t.Errorf("task1's attachment is not whole: %v", err)
	}
}
