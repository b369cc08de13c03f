package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/testutil"
)

// These tests prove the network boundary with real namespaces, bridges and
// nftables: traffic stays inside the test's bridges and the host's own
// addresses.

// dialFrom dials addr from the namespace at ns ("" = host), optionally from
// the local address src; it reports whether a connection was made.
func dialFrom(t *testing.T, ns string, src netip.Addr, addr netip.AddrPort) error {
	t.Helper()
	return inNS(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: net.IP(src.AsSlice())}
		}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// hostListener accepts TCP on 0.0.0.0 in the host's namespace.
func hostListener(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// otherHostAddr is an IPv4 address of the host outside the test's subnets:
// the default route's source if there is one, else any global address.
func otherHostAddr(t *testing.T, subnets ...Subnet) netip.Addr {
	t.Helper()
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.IsLoopback() || !ip.Unmap().IsGlobalUnicast() && !ip.Unmap().IsPrivate() {
			continue
		}
		ip = ip.Unmap()
		if !slices.ContainsFunc(subnets, func(s Subnet) bool { return s.CIDR.Contains(ip) }) && !netip.MustParsePrefix("10.89.0.0/16").Contains(ip) {
			return ip
		}
	}
	t.Skip("the host has no IPv4 address besides loopback and test bridges")
	return netip.Addr{}
}

func TestTaskReachesOnlyDNSOnItsHost(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	port := hostListener(t)

	// Proof the listener answers the host itself.
	if err := dialFrom(t, "", netip.Addr{}, netip.AddrPortFrom(a.Gateway, port)); err != nil {
		t.Fatalf("host to its own listener: %v", err)
	}
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, netip.AddrPortFrom(a.Gateway, port)); err == nil {
		t.Errorf("task reached a host service on 0.0.0.0 through its gateway %s", a.Gateway)
	}
	other := otherHostAddr(t, sub)
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, netip.AddrPortFrom(other, port)); err == nil {
		t.Errorf("task reached a host service on 0.0.0.0 through the host's address %s", other)
	}

	// DNS on the gateway, TCP and UDP, still answers.
	tcp53, err := net.Listen("tcp4", netip.AddrPortFrom(a.Gateway, 53).String())
	if err != nil {
		t.Fatalf("listen on the gateway's port 53: %v", err)
	}
	defer tcp53.Close()
	go acceptAndClose(tcp53)
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, netip.AddrPortFrom(a.Gateway, 53)); err != nil {
		t.Errorf("task to DNS over TCP on its gateway: %v", err)
	}
	udp53, err := net.ListenPacket("udp4", netip.AddrPortFrom(a.Gateway, 53).String())
	if err != nil {
		t.Fatalf("listen on the gateway's port 53/udp: %v", err)
	}
	defer udp53.Close()
	if err := inNS(a.NetNSPath, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(a.Gateway, 53).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("query"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	udp53.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, from, err := udp53.ReadFrom(buf); err != nil || string(buf[:n]) != "query" {
		t.Errorf("DNS over UDP on the gateway: got %q from %v: %v", buf[:n], from, err)
	}
	// The host still opens connections to its tasks (replies come back).
	checkTCP(t, "host to task", a.NetNSPath, a.IP, "", a.Gateway)
}

func TestSubnetsAreCutOffUnlessPeers(t *testing.T) {
	s1, s2, s3 := testSubnet(t, 24), testSubnet(t, 24), testSubnet(t, 24)
	s3.Peers = []string{s1.Name}
	m, _ := newTest(t, s1, s2, s3)
	a := mustAttach(t, m, "task-1", s1.Name)
	b := mustAttach(t, m, "task-2", s2.Name)
	c := mustAttach(t, m, "task-3", s3.Name)
	a2 := mustAttach(t, m, "task-1b", s1.Name)
	// Forwarding on all three bridges (it goes with them), so that only
	// the firewall keeps subnets 1 and 2 apart.
	for _, s := range []Subnet{s1, s2, s3} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+bridgeName(s)+"/forwarding", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	listen := func(at *Attachment) uint16 {
		return serveTCP(t, at.NetNSPath, at.IP, func(net.Conn) {}).Port()
	}
	pa, pb, pc := listen(a), listen(b), listen(c)
	for _, tc := range []struct {
		what     string
		from, to *Attachment
		port     uint16
		ok       bool
	}{
		{"same subnet", a2, a, pa, true},
		{"subnet 1 to 2", a, b, pb, false},
		{"subnet 2 to 1", b, a, pa, false},
		{"subnet 1 to its peer 3", a, c, pc, true},
		{"subnet 3 to its peer 1", c, a, pa, true},
		{"subnet 3 to 2", c, b, pb, false},
	} {
		err := dialFrom(t, tc.from.NetNSPath, netip.Addr{}, netip.AddrPortFrom(tc.to.IP, tc.port))
		if (err == nil) != tc.ok {
			t.Errorf("%s (%s to %s): connected=%v, want %v (%v)", tc.what, tc.from.IP, tc.to.IP, err == nil, tc.ok, err)
		}
	}
}

func TestSubnetPeersMustExist(t *testing.T) {
	s := Subnet{Name: "a", CIDR: netip.MustParsePrefix("10.89.1.0/24"), Peers: []string{"nope"}}
	if _, err := Open(Config{StateDir: t.TempDir(), Subnets: []Subnet{s}}); err == nil {
		t.Fatal("Open accepted a peer that is not a subnet")
	}
}

// arpFrame is an Ethernet ARP request from (smac, sip) asking for tip.
func arpFrame(smac net.HardwareAddr, sip, tip netip.Addr) []byte {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	b.Write(smac)
	binary.Write(&b, binary.BigEndian, uint16(unix.ETH_P_ARP))
	binary.Write(&b, binary.BigEndian, []uint16{1, unix.ETH_P_IP})
	b.Write([]byte{6, 4, 0, 1})
	b.Write(smac)
	b.Write(sip.AsSlice())
	b.Write(make([]byte, 6))
	b.Write(tip.AsSlice())
	return b.Bytes()
}

func sendRaw(ns string, frame []byte) error {
	return inNS(ns, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6})
	})
}

// neighMAC is the MAC that the namespace's neighbour table holds for ip.
func neighMAC(t *testing.T, ns string, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := inNS(ns, func() error {
		ns, err := netlink.NeighList(0, netlink.FAMILY_V4)
		for _, n := range ns {
			if n.IP.Equal(net.IP(ip.AsSlice())) {
				mac = n.HardwareAddr
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

func TestTasksCannotSpoof(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	b := mustAttach(t, m, "task-b", sub.Name)
	var ln net.Listener
	if err := inNS(b.NetNSPath, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.IP, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	target := netip.AddrPortFrom(b.IP, uint16(ln.Addr().(*net.TCPAddr).Port))
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, target); err != nil {
		t.Fatalf("A to B from A's own address: %v", err)
	}
	<-seen

	// Another address of the subnet (the root test adds it; a task with
	// CAP_NET_ADMIN could, and one with CAP_NET_RAW can forge it).
	forged := b.IP.Next().Next()
	if err := inNS(a.NetNSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(forged, sub.CIDR.Bits())})
	}); err != nil {
		t.Fatal(err)
	}
	if err := dialFrom(t, a.NetNSPath, forged, target); err == nil {
		t.Errorf("B accepted a connection from the forged address %s", <-seen)
	}

	// Another MAC.
	setMAC := func(mac net.HardwareAddr) {
		t.Helper()
		if err := inNS(a.NetNSPath, func() error {
			eth0, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetHardwareAddr(eth0, mac)
		}); err != nil {
			t.Fatal(err)
		}
	}
	setMAC(net.HardwareAddr{0x0a, 0x58, 1, 2, 3, 4})
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, target); err == nil {
		t.Errorf("B accepted a connection from a forged MAC (%s)", <-seen)
	}
	setMAC(taskMAC(a.IP))
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, target); err != nil {
		t.Fatalf("A to B with its own MAC again: %v", err)
	}

	// ARP: A claims the gateway's address to B. Then a genuine request
	// from A, which B answers in order, proves B processed the first.
	if err := sendRaw(a.NetNSPath, arpFrame(taskMAC(a.IP), a.Gateway, b.IP)); err != nil {
		t.Fatal(err)
	}
	if err := sendRaw(a.NetNSPath, arpFrame(taskMAC(a.IP), forged, b.IP)); err != nil {
		t.Fatal(err)
	}
	if err := sendRaw(a.NetNSPath, arpFrame(taskMAC(a.IP), a.IP, b.IP)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if neighMAC(t, b.NetNSPath, a.IP) == nil {
			return errors.New("B has no neighbour entry for A")
		}
		return nil
	})
	if got := neighMAC(t, b.NetNSPath, a.IP); !bytes.Equal(got, taskMAC(a.IP)) {
		t.Fatalf("B did not learn A's genuine ARP (%v)", got)
	}
	if got := neighMAC(t, b.NetNSPath, a.Gateway); bytes.Equal(got, taskMAC(a.IP)) {
		t.Errorf("B took A's forged ARP: the gateway %s is at A's MAC %s", a.Gateway, got)
	}
	if got := neighMAC(t, b.NetNSPath, forged); got != nil {
		t.Errorf("B took A's forged ARP: %s is at %s", forged, got)
	}
}

// tablesOf lists the nftables tables named name.
func tablesOf(t *testing.T, name string) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range ts {
		if tb.Name == name {
			out = append(out, fmt.Sprintf("%d/%s", tb.Family, tb.Name))
		}
	}
	return out
}

func TestFirewallFollowsLeasesAndLeavesNothing(t *testing.T) {
	sub := testSubnet(t, 24)
	m, dir := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	one, err := m.firewallEntries()
	if err != nil || one == 0 {
		t.Fatalf("rules after one attach: %d %v", one, err)
	}
	mustAttach(t, m, "task-b", sub.Name)
	two, _ := m.firewallEntries()
	if two <= one {
		t.Fatalf("rules with two tasks %d, with one %d", two, one)
	}

	// An agent restart after the rules were lost (a reboot, a flush):
	// Reconcile puts them back.
	if err := m.removeFirewall(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = openTest(t, dir, sub)
	if err := m.Reconcile(t.Context(), func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.firewallEntries(); n != two {
		t.Fatalf("rules after Reconcile %d, want %d", n, two)
	}
	if err := dialFrom(t, a.NetNSPath, netip.Addr{}, netip.AddrPortFrom(a.Gateway, hostListener(t))); err == nil {
		t.Errorf("after Reconcile the task reaches the host")
	}

	for _, id := range []string{"task-a", "task-b"} {
		if err := m.Detach(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := m.firewallEntries(); n >= one {
		t.Fatalf("rules after detaching every task %d, want fewer than %d", n, one)
	}
	if err := m.RemoveUnusedBridges(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := tablesOf(t, m.fwTable); len(left) > 0 {
		t.Fatalf("tables left after the last bridge went: %v", left)
	}
	if err := m.removeFirewall(); err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatalf("removing missing tables: %v", err)
	}
}

// udpFrame is an Ethernet frame with an IPv4 UDP datagram (no UDP
// checksum, as IPv4 allows).
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, port uint16, payload string) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	var b bytes.Buffer
	b.Write(dstMAC)
	b.Write(srcMAC)
	binary.Write(&b, binary.BigEndian, uint16(unix.ETH_P_IP))
	b.Write(ip)
	b.Write(udp)
	return b.Bytes()
}

// TestTaskCannotReachHostLoopback sends, from a task, a frame to the
// gateway's MAC addressed to 127.0.0.1, with route_localnet on the bridge
// (kube-proxy turns it on for every interface): the host's loopback
// listener must not get it, while the same frame to DNS on the gateway
// arrives.
func TestTaskCannotReachHostLoopback(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	br, err := netlink.LinkByName(bridgeName(sub))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+bridgeName(sub)+"/route_localnet", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	lo, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	dns, err := net.ListenPacket("udp4", netip.AddrPortFrom(a.Gateway, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	loPort := uint16(lo.LocalAddr().(*net.UDPAddr).Port)
	gwMAC := br.Attrs().HardwareAddr
	if err := sendRaw(a.NetNSPath, udpFrame(gwMAC, taskMAC(a.IP), a.IP, netip.MustParseAddr("127.0.0.1"), loPort, "to-loopback")); err != nil {
		t.Fatal(err)
	}
	if err := sendRaw(a.NetNSPath, udpFrame(gwMAC, taskMAC(a.IP), a.IP, a.Gateway, 53, "to-dns")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	dns.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := dns.ReadFrom(buf); err != nil || string(buf[:n]) != "to-dns" {
		t.Fatalf("the genuine frame to DNS on the gateway: %q %v", buf[:n], err)
	}
	// The loopback frame was sent first: had it passed, it would be there.
	lo.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, from, err := lo.ReadFrom(buf); err == nil {
		t.Errorf("the host's 127.0.0.1 listener got %q from %v", buf[:n], from)
	}
}

// TestReconcileGivesOldAttachmentsTheirMAC: a task attached before the
// firewall has a random MAC; Reconcile gives it the one the rules expect.
func TestReconcileGivesOldAttachmentsTheirMAC(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	a := mustAttach(t, m, "task-a", sub.Name)
	b := mustAttach(t, m, "task-b", sub.Name)
	if err := inNS(a.NetNSPath, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetHardwareAddr(eth0, net.HardwareAddr{0x0a, 0x58, 9, 9, 9, 9})
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconcile(t.Context(), func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	var got net.HardwareAddr
	inNS(a.NetNSPath, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err == nil {
			got = ifc.HardwareAddr
		}
		return err
	})
	if !bytes.Equal(got, taskMAC(a.IP)) {
		t.Fatalf("eth0's MAC after Reconcile %s, want %s", got, taskMAC(a.IP))
	}
	checkTCP(t, "A to B after Reconcile", b.NetNSPath, b.IP, a.NetNSPath, a.IP)
}

// TestFirewallManyTasks: a host with many tasks has many rules, rebuilt in
// one transaction whose every message the kernel acknowledges; the
// acknowledgements must all fit (they overflowed the socket's default
// buffer: "netlink receive: recvmsg: no buffer space available").
func TestFirewallManyTasks(t *testing.T) {
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	mustAttach(t, m, "task-real", sub.Name)
	const n = 1000
	m.mu.Lock()
	for i := range n {
		id := fmt.Sprintf("task-%d", i)
		ip := netip.AddrFrom4([4]byte{10, 250, byte(i / 250), byte(i%250 + 2)})
		m.leases[id] = &lease{TaskID: id, Subnet: sub.Name, IP: ip, HostVeth: fmt.Sprintf("vhf%07d", i)}
	}
	m.mu.Unlock()
	t.Cleanup(func() {
		m.mu.Lock()
		for i := range n {
			delete(m.leases, fmt.Sprintf("task-%d", i))
		}
		m.mu.Unlock()
	})
	if err := m.syncFirewall(); err != nil {
		t.Fatalf("rebuilding the rules of %d tasks: %v", n+1, err)
	}
	if got, err := m.firewallEntries(); err != nil || got < 3*n {
		t.Fatalf("rules and set elements of %d tasks: %d %v; want at least %d", n+1, got, err, 3*n)
	}
}
