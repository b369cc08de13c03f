package network

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testenv"
)

// These tests use real netlink and namespaces and need root. They only send
// traffic inside the bridges and namespaces they create, in 10.89.100-200.x.

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t, "network namespaces, bridges and nftables")
	if os.Geteuid() != 0 {
		t.Skip("needs root (netlink, namespaces, mounts)")
	}
}

var usedOctets sync.Map

// testSubnet picks a subnet in 10.89.<100-200>.0 that no host interface uses
// and that this test run has not used, with a unique name.
func testSubnet(t *testing.T, bits int) Subnet {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	for range 200 {
		octet := 100 + mrand.IntN(101)
		if _, dup := usedOctets.LoadOrStore(octet, true); dup {
			continue
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 89, byte(octet), 0}), 24)
		busy := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip.Unmap()) {
				busy = true
			}
		}
		if busy {
			continue
		}
		var b [3]byte
		rand.Read(b[:])
		return Subnet{Name: "subnet-test-" + hex.EncodeToString(b[:]), CIDR: netip.PrefixFrom(p.Addr(), bits)}
	}
	t.Fatal("no free test subnet")
	return Subnet{}
}

func openTest(t *testing.T, dir string, subnets ...Subnet) *Manager {
	t.Helper()
	m, err := Open(Config{
		StateDir: dir,
		Subnets:  subnets,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Never the host's resolver: tests must not send traffic anywhere.
		DNSServers: []string{"10.89.255.53"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newTest returns a manager on fresh subnets whose every trace is removed
// when the test ends.
func newTest(t *testing.T, subnets ...Subnet) (*Manager, string) {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	m := openTest(t, dir, subnets...)
	t.Cleanup(func() { cleanupAll(t, dir, subnets) })
	return m, dir
}

// cleanupAll frees everything a test left, through a fresh manager on the
// same state directory, then deletes the bridges.
func cleanupAll(t *testing.T, dir string, subnets []Subnet) {
	subnets = append([]Subnet(nil), subnets...)
	for i := range subnets {
		subnets[i].NAT = false // never run iptables in tests
	}
	m, err := Open(Config{StateDir: dir, Subnets: subnets, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		if err := m.Reconcile(context.Background(), func(string) bool { return false }); err != nil {
			t.Errorf("cleanup reconcile: %v", err)
		}
		if err := m.RemoveUnusedBridges(context.Background()); err != nil {
			t.Errorf("cleanup bridges: %v", err)
		}
		m.Close()
	} else {
		t.Errorf("cleanup open: %v", err)
	}
	for _, s := range subnets {
		if l, err := netlink.LinkByName(bridgeName(s)); err == nil {
			t.Errorf("bridge %s left behind; deleting", l.Attrs().Name)
			netlink.LinkDel(l)
		}
	}
	if left := tablesOf(t, firewallTableName(dir)); len(left) > 0 {
		t.Errorf("nftables tables %v left behind", left)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), dir) {
		t.Errorf("mounts under %s left behind", dir)
	}
}

// inNS runs fn on a thread in the network namespace at path ("" = host).
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err) // thread stays locked and is discarded
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// checkTCP listens on listenIP in listenNS, dials it from dialNS and checks
// that the listener sees the connection come from wantSrc.
func checkTCP(t *testing.T, what, listenNS string, listenIP netip.Addr, dialNS string, wantSrc netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := inNS(listenNS, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(listenIP, 0).String())
		return err
	}); err != nil {
		t.Fatalf("%s: listen: %v", what, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
	}()
	var c net.Conn
	if err := inNS(dialNS, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("%s: dial %s: %v", what, ln.Addr(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if got := strings.TrimSpace(line); got != wantSrc.String() {
		t.Fatalf("%s: listener saw %s, want %s", what, got, wantSrc)
	}
}

func mustAttach(t *testing.T, m *Manager, id, subnet string) *Attachment {
	t.Helper()
	a, err := m.Attach(t.Context(), id, subnet, AttachOptions{})
	if err != nil {
		t.Fatalf("Attach(%s): %v", id, err)
	}
	return a
}

func TestAttachConnectivity(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	b, err := m.Attach(t.Context(), "task-b", sub.Name, AttachOptions{Hostname: "b.example.internal"})
	if err != nil {
		t.Fatal(err)
	}
	gw := sub.CIDR.Addr().Next()
	if a.IP == b.IP || !sub.CIDR.Contains(a.IP) || !sub.CIDR.Contains(b.IP) || a.Gateway != gw || b.Prefix != sub.CIDR {
		t.Fatalf("attachments: %+v %+v", a, b)
	}
	if a.NetNSPath != filepath.Join(dir, "netns", "task-a") || a.EtcDir != filepath.Join(dir, "etc", "task-a") {
		t.Fatalf("paths: %+v", a)
	}
	if a.Hostname != defaultHostname(a.IP) || b.Hostname != "b.example.internal" {
		t.Fatalf("hostnames %q %q", a.Hostname, b.Hostname)
	}

	br, err := netlink.LinkByName(bridgeName(sub))
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	for _, at := range []*Attachment{a, b} {
		if !hostVethRE.MatchString(at.HostVeth) {
			t.Errorf("veth name %q", at.HostVeth)
		}
		v, err := netlink.LinkByName(at.HostVeth)
		if err != nil || v.Attrs().MasterIndex != br.Attrs().Index || v.Attrs().MTU != br.Attrs().MTU {
			t.Fatalf("veth %s: %v %+v", at.HostVeth, err, v)
		}
		if p := m.verify(leaseOf(t, m, at.TaskID)); len(p) > 0 {
			t.Fatalf("verify %s: %v", at.TaskID, p)
		}
		// eth0, its address, its default route, as seen from inside.
		if err := inNS(at.NetNSPath, func() error {
			eth0, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			addrs, _ := eth0.Addrs()
			if len(addrs) == 0 || !strings.Contains(fmt.Sprint(addrs), at.IP.String()+"/24") {
				return fmt.Errorf("eth0 addresses %v, want %s/24", addrs, at.IP)
			}
			routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Gw != nil && r.Gw.Equal(net.IP(gw.AsSlice())) && (r.Dst == nil || isZeroMask(r.Dst.Mask)) {
					return nil
				}
			}
			return fmt.Errorf("no default route via %s in %v", gw, routes)
		}); err != nil {
			t.Fatalf("inside %s: %v", at.TaskID, err)
		}
	}

	checkTCP(t, "task A to task B", b.NetNSPath, b.IP, a.NetNSPath, a.IP)
	checkTCP(t, "task B to task A", a.NetNSPath, a.IP, b.NetNSPath, b.IP)
	checkTCP(t, "host to task A", a.NetNSPath, a.IP, "", gw)
	checkTCP(t, "host to task B", b.NetNSPath, b.IP, "", gw)
	checkTCP(t, "task A to itself over lo", a.NetNSPath, netip.MustParseAddr("127.0.0.1"), a.NetNSPath, netip.MustParseAddr("127.0.0.1"))

	hosts, err := os.ReadFile(filepath.Join(b.EtcDir, "hosts"))
	if err != nil || !strings.Contains(string(hosts), b.IP.String()+"\tb.example.internal b\n") {
		t.Fatalf("hosts: %v %q", err, hosts)
	}
	resolv, _ := os.ReadFile(filepath.Join(b.EtcDir, "resolv.conf"))
	if string(resolv) != "nameserver 10.89.255.53\n" {
		t.Fatalf("resolv.conf %q", resolv)
	}

	// Idempotent: the same attachment again; conflicts for another
	// subnet or hostname.
	again, err := m.Attach(t.Context(), "task-a", sub.Name, AttachOptions{})
	if err != nil || *again != *a {
		t.Fatalf("second Attach: %v %+v, want %+v", err, again, a)
	}
	if _, err := m.Attach(t.Context(), "task-b", sub.Name, AttachOptions{Hostname: "other"}); !errdefs.IsConflict(err) {
		t.Fatalf("Attach with another hostname: %v", err)
	}
	if got, ok := m.Get("task-a"); !ok || *got != *a {
		t.Fatalf("Get: %+v %v", got, ok)
	}
	if l := m.List(); len(l) != 2 || l[0].TaskID != "task-a" || l[1].TaskID != "task-b" {
		t.Fatalf("List: %+v", l)
	}
	for _, id := range []string{"task-a", "task-b"} {
		if err := m.Detach(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAttachTwoSubnets(t *testing.T) {
	s1, s2 := testSubnet(t, 24), testSubnet(t, 24)
	m, _ := newTest(t, s1, s2)
	a := mustAttach(t, m, "task-1", s1.Name)
	b := mustAttach(t, m, "task-2", s2.Name)
	if _, err := m.Attach(t.Context(), "task-1", s2.Name, AttachOptions{}); !errdefs.IsConflict(err) {
		t.Fatalf("Attach to another subnet: %v", err)
	}
	if a.Gateway == b.Gateway || bridgeName(s1) == bridgeName(s2) {
		t.Fatalf("%+v %+v", a, b)
	}
	checkTCP(t, "host to task on subnet 2", b.NetNSPath, b.IP, "", b.Gateway)
}

func leaseOf(t *testing.T, m *Manager, id string) *lease {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[id]
	if !ok {
		t.Fatalf("no lease for %s", id)
	}
	c := *l
	return &c
}

func leasesOnDisk(t *testing.T, dir string) map[string]*lease {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "leases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Leases
}

func TestLeasePersistenceAndRoundRobin(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	base := sub.CIDR.Addr()
	ip := func(n int) netip.Addr { // base + n
		a := base
		for range n {
			a = a.Next()
		}
		return a
	}
	t1 := mustAttach(t, m, "t1", sub.Name)
	t2 := mustAttach(t, m, "t2", sub.Name)
	if t1.IP != ip(2) || t2.IP != ip(3) {
		t.Fatalf("first addresses %s %s, want %s %s", t1.IP, t2.IP, ip(2), ip(3))
	}
	m.Close()

	m = openTest(t, dir, sub)
	if got, ok := m.Get("t1"); !ok || *got != *t1 {
		t.Fatalf("after reopen Get(t1) = %+v %v, want %+v", got, ok, t1)
	}
	if got, ok := m.Get("t2"); !ok || *got != *t2 {
		t.Fatalf("after reopen Get(t2) = %+v", got)
	}
	if err := m.Reconcile(t.Context(), func(string) bool { return true }); err != nil {
		t.Fatalf("Reconcile keeping everything: %v", err)
	}
	t3 := mustAttach(t, m, "t3", sub.Name)
	if t3.IP != ip(4) {
		t.Fatalf("t3 got %s, want %s", t3.IP, ip(4))
	}
	if err := m.Detach(t.Context(), "t2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := leasesOnDisk(t, dir)["t2"]; ok {
		t.Fatal("t2's lease still on disk after Detach")
	}
	m.Close()

	m = openTest(t, dir, sub)
	t4 := mustAttach(t, m, "t4", sub.Name)
	if t4.IP != ip(5) {
		t.Fatalf("t4 got %s, want %s (round robin after a restart, not the released %s)", t4.IP, ip(5), t2.IP)
	}
	onDisk := leasesOnDisk(t, dir)
	if len(onDisk) != 3 || onDisk["t1"].IP != t1.IP || onDisk["t4"].IP != t4.IP || !onDisk["t4"].Attached {
		t.Fatalf("leases on disk: %+v", onDisk)
	}
}

func TestCrashBetweenLeaseAndAttach(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	// "Crash" after writing the lease and creating the namespace, before
	// the veth: the process state is lost, the disk and mounts remain.
	l, err := m.allocate(m.subnets[sub.Name], "crashed", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := createNetNS(m.netnsPath("crashed")); err != nil {
		t.Fatal(err)
	}
	// And a namespace that no lease accounts for at all.
	if err := createNetNS(m.netnsPath("stray")); err != nil {
		t.Fatal(err)
	}
	m = openTest(t, dir, sub) // no Close: a crash

	if _, ok := m.Get("crashed"); ok {
		t.Fatal("an unfinished attach is returned by Get")
	}
	other := mustAttach(t, m, "other", sub.Name)
	if other.IP == l.IP {
		t.Fatalf("leased address %s handed out again", l.IP)
	}
	if err := m.Reconcile(t.Context(), func(id string) bool { return id == "other" }); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if _, ok := leasesOnDisk(t, dir)["crashed"]; ok {
		t.Fatal("crashed lease not freed")
	}
	for _, id := range []string{"crashed", "stray"} {
		if _, err := os.Stat(m.netnsPath(id)); !os.IsNotExist(err) {
			t.Fatalf("namespace of %s left: %v", id, err)
		}
	}
	for _, id := range []string{"crashed", "stray"} {
		if isMounted(t, m.netnsPath(id)) {
			t.Fatalf("mount of %s left", id)
		}
	}
	if _, ok := m.Get("other"); !ok {
		t.Fatal("kept task lost")
	}

	// A kept task whose attach never finished is reported, and Attach
	// finishes it with its leased address.
	l2, err := m.allocate(m.subnets[sub.Name], "half", "", "")
	if err != nil {
		t.Fatal(err)
	}
	err = m.Reconcile(t.Context(), func(string) bool { return true })
	var re *ReconcileError
	if !errors.As(err, &re) || len(re.Broken) != 1 || re.Broken[0].TaskID != "half" {
		t.Fatalf("Reconcile: %v, want task half reported broken", err)
	}
	half := mustAttach(t, m, "half", sub.Name)
	if half.IP != l2.IP {
		t.Fatalf("finished attach got %s, want leased %s", half.IP, l2.IP)
	}
	if err := m.Reconcile(t.Context(), func(string) bool { return true }); err != nil {
		t.Fatalf("Reconcile after repair: %v", err)
	}
}

func TestSubnetFull(t *testing.T) {
	sub := testSubnet(t, 30)
	m, _ := newTest(t, sub)
	only := mustAttach(t, m, "only", sub.Name)
	if want := sub.CIDR.Addr().Next().Next(); only.IP != want {
		t.Fatalf("got %s, want %s", only.IP, want)
	}
	_, err := m.Attach(t.Context(), "one-too-many", sub.Name, AttachOptions{})
	if !errors.Is(err, errdefs.ErrLimitExceeded) {
		t.Fatalf("Attach on a full subnet: %v, want limit exceeded", err)
	}
	for _, want := range []string{sub.Name, sub.CIDR.String(), "all 1 task addresses"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := os.Stat(m.netnsPath("one-too-many")); !os.IsNotExist(err) {
		t.Fatal("a failed attach left a namespace")
	}
	if err := m.Detach(t.Context(), "only"); err != nil {
		t.Fatal(err)
	}
	again := mustAttach(t, m, "next", sub.Name)
	if again.IP != only.IP {
		t.Fatalf("the only address is not reused after wrapping: %s", again.IP)
	}
}

func TestDetachLeavesNothing(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	a := mustAttach(t, m, "gone", sub.Name)
	keep := mustAttach(t, m, "stays", sub.Name)
	if err := m.Detach(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m, dir, a)
	if err := m.Detach(t.Context(), "gone"); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	if err := m.Detach(t.Context(), "never-seen"); err != nil {
		t.Fatalf("Detach of an unknown task: %v", err)
	}
	if _, ok := m.Get("stays"); !ok {
		t.Fatal("the other task was detached too")
	}
	if err := m.Detach(t.Context(), "stays"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m, dir, keep)

	// No vh* veth on the bridge; removing the bridge works.
	br, err := netlink.LinkByName(bridgeName(sub))
	if err != nil {
		t.Fatal(err)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			t.Errorf("port %s left on the bridge", l.Attrs().Name)
		}
	}
	if err := m.RemoveUnusedBridges(t.Context()); err != nil {
		t.Fatal(err)
	}
	if linkExists(bridgeName(sub)) {
		t.Fatal("bridge not removed")
	}
}

func assertGone(t *testing.T, m *Manager, dir string, a *Attachment) {
	t.Helper()
	if linkExists(a.HostVeth) {
		t.Errorf("veth %s left", a.HostVeth)
	}
	if _, err := os.Stat(a.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
	if isMounted(t, a.NetNSPath) {
		t.Errorf("mount on %s left", a.NetNSPath)
	}
	if _, err := os.Stat(a.EtcDir); !os.IsNotExist(err) {
		t.Errorf("etc dir left: %v", err)
	}
	if _, ok := leasesOnDisk(t, dir)[a.TaskID]; ok {
		t.Errorf("lease of %s left on disk", a.TaskID)
	}
	if _, ok := m.Get(a.TaskID); ok {
		t.Errorf("Get(%s) still finds it", a.TaskID)
	}
}

// isMounted reports whether /proc/self/mountinfo has a mount point at path.
func isMounted(t *testing.T, path string) bool {
	t.Helper()
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func TestReconcileReportsBrokenAndAttachRepairs(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	ok1 := mustAttach(t, m, "ok", sub.Name)
	bad := mustAttach(t, m, "bad", sub.Name)
	gone := mustAttach(t, m, "gone", sub.Name)

	// Break "bad": delete its host veth (its eth0 goes with it).
	v, err := netlink.LinkByName(bad.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(v); err != nil {
		t.Fatal(err)
	}
	// A stray veth on our bridge that no lease accounts for.
	br, _ := netlink.LinkByName(bridgeName(sub))
	stray := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vh0badf00d", MasterIndex: br.Attrs().Index}, PeerName: "vp0badf00d"}
	if err := netlink.LinkAdd(stray); err != nil {
		t.Fatal(err)
	}
	m.Close()

	m = openTest(t, dir, sub)
	err = m.Reconcile(t.Context(), func(id string) bool { return id != "gone" })
	var re *ReconcileError
	if !errors.As(err, &re) || len(re.Broken) != 1 || re.Broken[0].TaskID != "bad" {
		t.Fatalf("Reconcile: %v, want only task bad broken", err)
	}
	if !strings.Contains(err.Error(), "veth "+bad.HostVeth+" is missing") {
		t.Errorf("report does not say what is broken: %v", err)
	}
	assertGone(t, m, dir, gone)
	if linkExists("vh0badf00d") {
		t.Error("stray veth not removed")
	}

	// The namespace survives the repair (a running sandbox keeps it).
	var before, after os.FileInfo
	before, _ = os.Stat(bad.NetNSPath)
	fixed := mustAttach(t, m, "bad", sub.Name)
	after, _ = os.Stat(bad.NetNSPath)
	if fixed.IP != bad.IP || !os.SameFile(before, after) {
		t.Fatalf("repair: %+v (namespace kept: %v)", fixed, os.SameFile(before, after))
	}
	if err := m.Reconcile(t.Context(), func(string) bool { return true }); err != nil {
		t.Fatalf("Reconcile after repair: %v", err)
	}
	checkTCP(t, "repaired task to healthy task", ok1.NetNSPath, ok1.IP, fixed.NetNSPath, fixed.IP)
}

func TestConcurrentAttachDetach(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	const n = 12
	var wg sync.WaitGroup
	atts := make([]*Attachment, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { atts[i], errs[i] = m.Attach(t.Context(), fmt.Sprintf("c%02d", i), sub.Name, AttachOptions{}) })
	}
	wg.Wait()
	seen := map[netip.Addr]string{}
	for i, a := range atts {
		if errs[i] != nil {
			t.Fatalf("Attach c%02d: %v", i, errs[i])
		}
		if prev, dup := seen[a.IP]; dup {
			t.Fatalf("%s and %s both got %s", prev, a.TaskID, a.IP)
		}
		seen[a.IP] = a.TaskID
	}
	if len(leasesOnDisk(t, dir)) != n {
		t.Fatal("leases on disk do not match")
	}
	checkTCP(t, "first to last", atts[n-1].NetNSPath, atts[n-1].IP, atts[0].NetNSPath, atts[0].IP)
	for i := range n {
		wg.Go(func() { errs[i] = m.Detach(t.Context(), atts[i].TaskID) })
	}
	wg.Wait()
	for i, a := range atts {
		if errs[i] != nil {
			t.Fatalf("Detach: %v", errs[i])
		}
		assertGone(t, m, dir, a)
	}
}

type fakeIPTables struct {
	mu       sync.Mutex
	appended [][]string
	deleted  [][]string
}

func (f *fakeIPTables) AppendUnique(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appended = append(f.appended, append([]string{table, chain}, spec...))
	return nil
}

func (f *fakeIPTables) DeleteIfExists(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, append([]string{table, chain}, spec...))
	return nil
}

// NAT is never really enabled in tests: iptables and ip_forward are fakes.
func TestNAT(t *testing.T) {
	sub := testSubnet(t, 24)
	sub.NAT = true
	m, dir := newTest(t, sub)
	forwarding := 0
	m.enableForwarding = func() error { forwarding++; return nil }

	m.newIPTables = func() (iptablesAPI, error) {
		return nil, errors.New(`exec: "iptables": executable file not found in $PATH`)
	}
	_, err := m.Attach(t.Context(), "n1", sub.Name, AttachOptions{})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "apt-get install iptables") {
		t.Fatalf("NAT without iptables: %v", err)
	}
	if len(leasesOnDisk2(t, dir)) != 0 || linkExists(bridgeName(sub)) {
		t.Fatal("a NAT attach that failed left a lease or a bridge")
	}

	fake := &fakeIPTables{}
	m.newIPTables = func() (iptablesAPI, error) { return fake, nil }
	mustAttach(t, m, "n1", sub.Name)
	want := append([]string{"nat", "POSTROUTING"}, masqueradeRule(sub, bridgeName(sub))...)
	if len(fake.appended) != 1 || strings.Join(fake.appended[0], " ") != strings.Join(want, " ") || forwarding != 1 {
		t.Fatalf("rules %q (forwarding %d), want %q", fake.appended, forwarding, want)
	}
	if err := m.Detach(t.Context(), "n1"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveUnusedBridges(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(fake.deleted) != 1 || strings.Join(fake.deleted[0], " ") != strings.Join(want, " ") {
		t.Fatalf("deleted rules %q", fake.deleted)
	}
}

// leasesOnDisk2 tolerates a missing lease file.
func leasesOnDisk2(t *testing.T, dir string) map[string]*lease {
	if _, err := os.Stat(filepath.Join(dir, "leases.json")); os.IsNotExist(err) {
		return nil
	}
	return leasesOnDisk(t, dir)
}

func TestAttachWithDNS(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	own, err := m.Attach(t.Context(), "own", sub.Name, AttachOptions{DNS: &DNS{
		Nameservers: []string{"10.1.2.3"}, Searches: []string{"default.vessel.local"}, Options: []string{"ndots:2"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(own.EtcDir, "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "nameserver 10.1.2.3\nsearch default.vessel.local\noptions ndots:2\n"; string(got) != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	// Search domains alone keep the manager's nameservers.
	m.dns = []netip.Addr{netip.MustParseAddr("10.9.9.9")}
	m.search = []string{"manager.example"}
	part, err := m.Attach(t.Context(), "part", sub.Name, AttachOptions{DNS: &DNS{Searches: []string{"a.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(part.EtcDir, "resolv.conf"))
	if want := "nameserver 10.9.9.9\nsearch a.example\n"; string(got) != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	// With a DNS server on the gateway, that is the nameserver.
	m.gwDNS = true
	gw, err := m.Attach(t.Context(), "gw", sub.Name, AttachOptions{DNS: &DNS{Searches: []string{"a.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(gw.EtcDir, "resolv.conf"))
	if want := "nameserver " + gw.Gateway.String() + "\nsearch a.example\n"; string(got) != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	// Tasks without DNS of their own keep the manager's.
	plain := mustAttach(t, m, "plain", sub.Name)
	got, _ = os.ReadFile(filepath.Join(plain.EtcDir, "resolv.conf"))
	if want := "nameserver 10.9.9.9\nsearch manager.example\n"; string(got) != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	if _, err := m.Attach(t.Context(), "bad", sub.Name, AttachOptions{DNS: &DNS{Nameservers: []string{"x"}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad nameserver: %v, want invalid argument", err)
	}
}

// TestAttachFromSlice: a host's tasks get addresses from its slice of the
// subnet only, with the slice's prefix length and an on-link default route
// to the subnet's gateway (outside the slice); they reach the host through
// it; a full slice says so; a restart on the same slice keeps the leases and
// one on another slice refuses to start.
func TestAttachFromSlice(t *testing.T) {
	sub := testSubnet(t, 24)
	base := sub.CIDR.Addr().As4()
	slice := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], 64}), 30) // .64/30: .65 and .66
	sub.Slice = slice
	m, dir := newTest(t, sub)
	gw := sub.CIDR.Addr().Next()
	a := mustAttach(t, m, "slice-a", sub.Name)
	b := mustAttach(t, m, "slice-b", sub.Name)
	if !slice.Contains(a.IP) || !slice.Contains(b.IP) || a.IP == b.IP || a.Gateway != gw || a.Prefix != sub.CIDR {
		t.Fatalf("attachments %+v %+v, want two addresses of %s with gateway %s", a, b, slice, gw)
	}
	if err := inNS(a.NetNSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(eth0, netlink.FAMILY_V4)
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != a.IP.String()+"/30" {
			return fmt.Errorf("eth0 addresses %v (%v), want %s/30", addrs, err, a.IP)
		}
		routes, err := netlink.RouteList(eth0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Gw.Equal(net.IP(gw.AsSlice())) && r.Flags&int(netlink.FLAG_ONLINK) != 0 && (r.Dst == nil || isZeroMask(r.Dst.Mask)) {
				return nil
			}
		}
		return fmt.Errorf("no on-link default route via %s in %v", gw, routes)
	}); err != nil {
		t.Fatalf("inside slice-a: %v", err)
	}
	if p := m.verify(leaseOf(t, m, a.TaskID)); len(p) > 0 {
		t.Fatalf("verify: %v", p)
	}
	checkTCP(t, "host to a task of the slice", a.NetNSPath, a.IP, "", gw)
	checkTCP(t, "task to task in the slice", b.NetNSPath, b.IP, a.NetNSPath, a.IP)

	_, err := m.Attach(t.Context(), "slice-full", sub.Name, AttachOptions{})
	if !errors.Is(err, errdefs.ErrLimitExceeded) || !strings.Contains(err.Error(), slice.String()) {
		t.Fatalf("Attach on a full slice: %v, want limit exceeded naming %s", err, slice)
	}
	m.Close()

	// Restart on the same slice: the same addresses.
	m = openTest(t, dir, sub)
	if got, ok := m.Get("slice-a"); !ok || got.IP != a.IP {
		t.Fatalf("after a restart: %+v %v, want %s", got, ok, a.IP)
	}
	m.Close()

	// Restart on another slice: refused, naming the task and the lease file.
	other := sub
	other.Slice = netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], 128}), 25)
	_, err = Open(Config{StateDir: dir, Subnets: []Subnet{other}, Logger: slog.New(slog.DiscardHandler)})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "slice-a") || !strings.Contains(err.Error(), a.IP.String()) ||
		!strings.Contains(err.Error(), other.Slice.String()) || !strings.Contains(err.Error(), "leases.json") {
		t.Fatalf("Open on another slice: %v, want a conflict naming the task, its address, the new slice and the lease file", err)
	}
}
