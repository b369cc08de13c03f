package network

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/testenv"
)

// The fleet tests build a small fleet of network namespaces: a "lan" with a
// bridge, and hosts each with one address on it (as test/fleet's machines),
// every host running its own Manager (its netlink and nftables calls made
// on a thread inside the host's namespace). Everything lives in those
// namespaces, so the subnets need not avoid the test machine's.

var (
	fleetA = Subnet{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/16")}
	fleetB = Subnet{Name: "subnet-b", CIDR: netip.MustParsePrefix("10.90.0.0/16")}
)

type fleetHost struct {
	name   string
	ns     string // the namespace's path
	addr   netip.Addr
	dir    string
	m      *Manager
	slices map[string]netip.Prefix // subnet → this host's slice
}

type testFleet struct {
	t     testing.TB
	id    string
	lan   string // the lan namespace's path
	hosts []*fleetHost
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newTestFleet makes the lan namespace and n hosts, 192.168.77.(10+i)/24,
// each with slice 10.89.(1+i).0/24 of fleetA and 10.90.(1+i).0/24 of
// fleetB. Everything is removed, and checked gone, when t ends.
func newTestFleet(t testing.TB, n int) *testFleet {
	testenv.SkipShort(t, "network namespaces, bridges and nftables")
	if os.Geteuid() != 0 {
		t.Skip("needs root (netlink, namespaces, mounts)")
	}
	var b [3]byte
	rand.Read(b[:])
	f := &testFleet{t: t, id: "vft" + hex.EncodeToString(b[:])}
	lanName := f.id + "-lan"
	ipCmd(t, "netns", "add", lanName)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", lanName).Run() })
	f.lan = "/run/netns/" + lanName
	ipCmd(t, "-n", lanName, "link", "add", "lan", "type", "bridge")
	ipCmd(t, "-n", lanName, "link", "set", "lan", "up")
	for i := range n {
		f.addMachine(fmt.Sprintf("h%d", i+1), i)
	}
	return f
}

// addMachine adds a namespace on the lan; with a Manager unless it is
// an outsider (slice index < 0 is not used here: every machine gets one).
func (f *testFleet) addMachine(name string, i int) *fleetHost {
	t := f.t
	nsName := f.id + "-" + name
	ipCmd(t, "netns", "add", nsName)
	h := &fleetHost{name: name, ns: "/run/netns/" + nsName,
		addr: netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)}),
		dir:  t.TempDir(),
		slices: map[string]netip.Prefix{
			fleetA.Name: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 89, byte(1 + i), 0}), 24),
			fleetB.Name: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 90, byte(1 + i), 0}), 24),
		},
	}
	t.Cleanup(func() { f.removeHost(h, nsName) })
	ipCmd(t, "-n", nsName, "link", "add", "eth0", "type", "veth", "peer", "name", name, "netns", f.id+"-lan")
	ipCmd(t, "-n", f.id+"-lan", "link", "set", name, "master", "lan", "up")
	ipCmd(t, "-n", nsName, "addr", "add", h.addr.String()+"/24", "dev", "eth0")
	ipCmd(t, "-n", nsName, "link", "set", "eth0", "up")
	ipCmd(t, "-n", nsName, "link", "set", "lo", "up")
	m, err := Open(Config{StateDir: h.dir, Subnets: []Subnet{fleetA, fleetB},
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", name),
		DNSServers: []string{"10.89.255.53"}})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	f.hosts = append(f.hosts, h)
	return h
}

// removeHost leaves the fleet, detaches every task and removes the
// bridges in the host's namespace, checks that nothing of the fleet is
// left there, then deletes the namespace.
func (f *testFleet) removeHost(h *fleetHost, nsName string) {
	t := f.t
	if h.m != nil {
		err := inNS(h.ns, func() error {
			ctx := context.Background()
			if err := h.m.LeaveFleet(ctx); err != nil {
				return err
			}
			if err := h.m.Reconcile(ctx, func(string) bool { return false }); err != nil {
				return err
			}
			if err := h.m.RemoveUnusedBridges(ctx); err != nil {
				return err
			}
			return leftovers(h)
		})
		if err != nil {
			t.Errorf("host %s: cleanup: %v", h.name, err)
		}
		h.m.Close()
	}
	exec.Command("ip", "netns", "del", nsName).Run()
}

// leftovers reports what of the fleet network is left in the current
// namespace: the VXLAN device, routes of fleetRouteProto, nftables tables.
func leftovers(h *fleetHost) error {
	var left []string
	if linkExists(vxlanName(h.m.stateDir)) {
		left = append(left, "VXLAN device "+vxlanName(h.m.stateDir))
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: fleetRouteProto, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, r := range rs {
		left = append(left, "route to "+r.Dst.String())
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	ts, err := c.ListTables()
	if err != nil {
		return err
	}
	for _, tb := range ts {
		left = append(left, "nftables table "+tb.Name)
	}
	for _, s := range h.m.subnets {
		if linkExists(s.bridge) {
			left = append(left, "bridge "+s.bridge)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

// fleetOf is host h's view of the fleet made of hosts (h itself skipped).
func fleetOf(h *fleetHost, backend string, hosts []*fleetHost) Fleet {
	f := Fleet{Backend: backend, Address: h.addr,
		Subnets: []FleetSubnet{{Name: fleetA.Name, CIDR: fleetA.CIDR}, {Name: fleetB.Name, CIDR: fleetB.CIDR}},
		Slices:  []netip.Prefix{h.slices[fleetA.Name], h.slices[fleetB.Name]}}
	for _, o := range hosts {
		if o != h {
			f.Peers = append(f.Peers, FleetPeer{ID: o.name, Address: o.addr, Slices: []netip.Prefix{o.slices[fleetA.Name], o.slices[fleetB.Name]}})
		}
	}
	return f
}

func (f *testFleet) setFleet(backend string) {
	f.t.Helper()
	for _, h := range f.hosts {
		if err := inNS(h.ns, func() error { return h.m.SetFleet(context.Background(), fleetOf(h, backend, f.hosts)) }); err != nil {
			f.t.Fatalf("host %s: SetFleet: %v", h.name, err)
		}
	}
}

// attach attaches a task on h with an address in h's slice of subnet.
// The allocation from the host's slice is the fleet's address management
// (ipam.go); here the round robin is started at the slice.
func (h *fleetHost) attach(t testing.TB, id, subnet string) *Attachment {
	t.Helper()
	h.m.mu.Lock()
	h.m.last[subnet] = h.slices[subnet].Addr().Next()
	h.m.mu.Unlock()
	var a *Attachment
	if err := inNS(h.ns, func() (err error) {
		a, err = h.m.Attach(context.Background(), id, subnet, AttachOptions{})
		return err
	}); err != nil {
		t.Fatalf("host %s: attach %s: %v", h.name, id, err)
	}
	if !h.slices[subnet].Contains(a.IP) {
		t.Fatalf("task %s got %s, outside host %s's slice %s", id, a.IP, h.name, h.slices[subnet])
	}
	return a
}

// serveTCP listens in ns on ip and serves every connection with serve
// (which need not close it); it returns the address.
func serveTCP(t testing.TB, ns string, ip netip.Addr, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// echoTCP listens in ns on ip and answers every connection with the
// number of bytes it read (up to EOF).
func echoTCP(t testing.TB, ns string, ip netip.Addr) netip.AddrPort {
	t.Helper()
	return serveTCP(t, ns, ip, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d\n", n)
	})
}

// sendTCP sends n bytes to addr from ns and checks the count comes back.
func sendTCP(ns string, addr netip.AddrPort, n int64) error {
	return inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.CopyN(c, zeros{}, n); err != nil {
			return fmt.Errorf("send %d bytes: %w", n, err)
		}
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != fmt.Sprint(n) {
			return fmt.Errorf("the listener got %q bytes, not %d", got, n)
		}
		return nil
	})
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// udpListener listens for UDP in ns on ip; datagrams arrive on the channel.
func udpListener(t *testing.T, ns string, ip netip.Addr) (netip.AddrPort, <-chan string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 16)
	go func() {
		b := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			ch <- string(b[:n])
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()), ch
}

// sendUDP sends payload from ns to addr (from src, if set).
func sendUDP(t *testing.T, ns string, src netip.Addr, addr netip.AddrPort, payload []byte) {
	t.Helper()
	if err := inNS(ns, func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = &net.UDPAddr{IP: net.IP(src.AsSlice())}
		}
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}); err != nil {
		t.Fatalf("send UDP to %s: %v", addr, err)
	}
}

func received(ch <-chan string, want string, wait time.Duration) bool {
	deadline := time.After(wait)
	for {
		select {
		case got := <-ch:
			if got == want {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// udpBothWays checks that a datagram from a to b and one from b to a
// arrive, with a few tries (the first may wait for ARP).
func udpReaches(t *testing.T, fromNS string, to netip.AddrPort, ch <-chan string) bool {
	t.Helper()
	for i := range 5 {
		msg := fmt.Sprintf("hello %d", i)
		sendUDP(t, fromNS, netip.Addr{}, to, []byte(msg))
		if received(ch, msg, 500*time.Millisecond) {
			return true
		}
	}
	return false
}

func tcpReaches(ns string, addr netip.AddrPort) error { return sendTCP(ns, addr, 1000) }

func TestFleetTasksReachEachOtherAcrossHosts(t *testing.T) {
	for _, backend := range []string{FleetVXLAN, FleetHostGW} {
		t.Run(backend, func(t *testing.T) {
			f := newTestFleet(t, 2)
			h1, h2 := f.hosts[0], f.hosts[1]
			f.setFleet(backend)
			a1 := h1.attach(t, "a1", fleetA.Name)
			a2 := h2.attach(t, "a2", fleetA.Name)
			b2 := h2.attach(t, "b2", fleetB.Name)

			for _, c := range []struct {
				name     string
				from, to *Attachment
			}{{"h1 to h2", a1, a2}, {"h2 to h1", a2, a1}} {
				if err := tcpReaches(c.from.NetNSPath, echoTCP(t, c.to.NetNSPath, c.to.IP)); err != nil {
					t.Errorf("TCP %s (%s to %s): %v", c.name, c.from.IP, c.to.IP, err)
				}
				addr, ch := udpListener(t, c.to.NetNSPath, c.to.IP)
				if !udpReaches(t, c.from.NetNSPath, addr, ch) {
					t.Errorf("UDP %s (%s to %s): nothing arrived", c.name, c.from.IP, c.to.IP)
				}
			}

			// 20 MB across hosts: packets fit the tunnel.
			if err := sendTCP(a1.NetNSPath, echoTCP(t, a2.NetNSPath, a2.IP), 20<<20); err != nil {
				t.Errorf("20 MB from %s to %s: %v", a1.IP, a2.IP, err)
			}
			if backend == FleetVXLAN {
				for _, a := range []*Attachment{a1, a2} {
					if mtu := nsMTU(t, a.NetNSPath); mtu != 1450 {
						t.Errorf("task %s: eth0's MTU is %d, want 1450 (the underlay's 1500 less VXLAN's 50)", a.TaskID, mtu)
					}
				}
			}

			// Subnets that are not peers stay apart across hosts.
			if err := tcpReaches(a1.NetNSPath, echoTCP(t, b2.NetNSPath, b2.IP)); err == nil {
				t.Errorf("task %s of %s reached %s of %s on another host; they are not peers", a1.IP, fleetA.Name, b2.IP, fleetB.Name)
			}
			if err := tcpReaches(b2.NetNSPath, echoTCP(t, a1.NetNSPath, a1.IP)); err == nil {
				t.Errorf("task %s of %s reached %s of %s on another host; they are not peers", b2.IP, fleetB.Name, a1.IP, fleetA.Name)
			}
		})
	}
}

func nsMTU(t *testing.T, nsPath string) int {
	t.Helper()
	mtu := 0
	if err := inNS(nsPath, func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			mtu = l.Attrs().MTU
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mtu
}

// TestFleetTasksReachNoHost: a task reaches neither its own host's
// address nor another host's, while the hosts reach each other. UDP shows
// a one-way reach that TCP, lacking a route back, would hide. (A machine
// beyond the fleet is reached as the host routes it: a subnet without NAT
// reaches, say, a Kubernetes node's pod network; e2e TestHybridCluster.)
func TestFleetTasksReachNoHost(t *testing.T) {
	for _, backend := range []string{FleetVXLAN, FleetHostGW} {
		t.Run(backend, func(t *testing.T) {
			f := newTestFleet(t, 3)
			h1, h2 := f.hosts[0], f.hosts[1]
			f.hosts = f.hosts[:2] // the third machine is no host of the fleet
			f.setFleet(backend)
			a1 := h1.attach(t, "a1", fleetA.Name)
			a2 := h2.attach(t, "a2", fleetA.Name)
			for _, h := range []*fleetHost{h1, h2} {
				svc := echoTCP(t, h.ns, netip.IPv4Unspecified())
				at := netip.AddrPortFrom(h.addr, svc.Port())
				other := h1
				if h == h1 {
					other = h2
				}
				if err := tcpReaches(other.ns, at); err != nil {
					t.Fatalf("host %s does not reach host %s at %s (the test's control): %v", other.name, h.name, at, err)
				}
				for _, a := range []*Attachment{a1, a2} {
					if err := tcpReaches(a.NetNSPath, at); err == nil {
						t.Errorf("task %s reached host %s at %s", a.IP, h.name, at)
					}
				}
			}
			for _, h := range []*fleetHost{h1, h2} {
				addr, ch := udpListener(t, h.ns, netip.IPv4Unspecified())
				at := netip.AddrPortFrom(h.addr, addr.Port())
				other := h1
				if h == h1 {
					other = h2
				}
				if !udpReaches(t, other.ns, at, ch) {
					t.Fatalf("host %s does not reach %s at %s over UDP (the test's control)", other.name, h.name, at)
				}
				for _, a := range []*Attachment{a1, a2} {
					msg := "from task " + a.IP.String()
					for range 3 {
						sendUDP(t, a.NetNSPath, netip.Addr{}, at, []byte(msg))
					}
					if received(ch, msg, 500*time.Millisecond) {
						t.Errorf("task %s reached machine %s at %s over UDP", a.IP, h.name, at)
					}
				}
			}
		})
	}
}

// vxlanPacket wraps frame in a VXLAN header of vni.
func vxlanPacket(vni int, frame []byte) []byte {
	b := make([]byte, 8, 8+len(frame))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], uint32(vni)<<8)
	return append(b, frame...)
}

// TestFleetVXLANCannotBeForged sends, into host 2's tunnel, a frame that
// carries a datagram for a task there: from a peer host it arrives (the
// packet is well made); from a task on host 1, and from a machine on the
// lan that is no peer, it does not.
func TestFleetVXLANCannotBeForged(t *testing.T) {
	f := newTestFleet(t, 3)
	h1, h2, outsider := f.hosts[0], f.hosts[1], f.hosts[2]
	// The third machine is no host of the fleet.
	f.hosts = f.hosts[:2]
	f.setFleet(FleetVXLAN)
	a1 := h1.attach(t, "a1", fleetA.Name)
	a2 := h2.attach(t, "a2", fleetA.Name)
	to, ch := udpListener(t, a2.NetNSPath, a2.IP)
	tunnel := netip.AddrPortFrom(h2.addr, DefaultVXLANPort)
	forge := func(payload string) []byte {
		return vxlanPacket(DefaultVNI, udpFrame(vtepMAC(h2.addr), vtepMAC(h1.addr), a1.IP, a2.IP, to.Port(), payload))
	}
	// The control: the real peer's address.
	ok := false
	for i := range 5 {
		msg := fmt.Sprintf("from the peer %d", i)
		sendUDP(t, h1.ns, h1.addr, tunnel, forge(msg))
		if ok = received(ch, msg, 500*time.Millisecond); ok {
			break
		}
	}
	if !ok {
		t.Fatal("a VXLAN packet from peer host 1 did not reach the task on host 2; the forged packets below would prove nothing")
	}
	for _, c := range []struct{ name, ns string }{{"a task on host 1", a1.NetNSPath}, {"a machine that is no peer", outsider.ns}} {
		msg := "forged by " + c.name
		for range 3 {
			sendUDP(t, c.ns, netip.Addr{}, tunnel, forge(msg))
		}
		if received(ch, msg, time.Second) {
			t.Errorf("a VXLAN packet sent by %s reached the task on host 2", c.name)
		}
	}
}

// TestFleetPeersComeAndGo: a peer removed from the view loses its routes,
// neighbour and FDB entries; back, it gets them again; and a host that
// leaves the fleet keeps nothing of it.
func TestFleetPeersComeAndGo(t *testing.T) {
	f := newTestFleet(t, 3)
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	f.setFleet(FleetVXLAN)
	a1 := h1.attach(t, "a1", fleetA.Name)
	a2 := h2.attach(t, "a2", fleetA.Name)
	echo := echoTCP(t, a2.NetNSPath, a2.IP)
	if err := tcpReaches(a1.NetNSPath, echo); err != nil {
		t.Fatalf("before: %v", err)
	}
	state := func(h *fleetHost) (routes []string, neigh []string) {
		t.Helper()
		if err := inNS(h.ns, func() error {
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: fleetRouteProto, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
			if err != nil {
				return err
			}
			for _, r := range rs {
				routes = append(routes, r.Dst.String()+" via "+r.Gw.String())
			}
			vx, err := netlink.LinkByName(vxlanName(h.m.stateDir))
			if isNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
				ns, err := netlink.NeighList(vx.Attrs().Index, fam)
				if err != nil {
					return err
				}
				for _, n := range ns {
					if n.IP != nil {
						neigh = append(neigh, fmt.Sprintf("%d:%s=%s", fam, n.IP, n.HardwareAddr))
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return routes, neigh
	}
	routes, neigh := state(h1)
	if len(routes) != 4 || len(neigh) != 4 {
		t.Fatalf("host 1 with two peers: routes %v, neighbour and FDB entries %v; want 4 and 4", routes, neigh)
	}

	// Host 2 leaves the view of host 1.
	if err := inNS(h1.ns, func() error {
		return h1.m.SetFleet(context.Background(), fleetOf(h1, FleetVXLAN, []*fleetHost{h1, h3}))
	}); err != nil {
		t.Fatal(err)
	}
	routes, neigh = state(h1)
	for _, s := range append(routes, neigh...) {
		if strings.Contains(s, h2.addr.String()) {
			t.Errorf("host 1 still has %s of removed peer host 2", s)
		}
	}
	if len(routes) != 2 || len(neigh) != 2 {
		t.Errorf("host 1 with one peer: routes %v, entries %v; want 2 and 2", routes, neigh)
	}
	if err := tcpReaches(a1.NetNSPath, echo); err == nil {
		t.Error("task on host 1 still reaches the task on removed peer host 2")
	}

	// Back again, and the same view twice changes nothing.
	for range 2 {
		f.setFleet(FleetVXLAN)
	}
	if routes, neigh = state(h1); len(routes) != 4 || len(neigh) != 4 {
		t.Errorf("host 1 with two peers again: routes %v, entries %v", routes, neigh)
	}
	if err := tcpReaches(a1.NetNSPath, echo); err != nil {
		t.Errorf("after the peer came back: %v", err)
	}

	// Switching back ends replaces the tunnel by routes.
	f.setFleet(FleetHostGW)
	if err := inNS(h1.ns, func() error {
		if linkExists(vxlanName(h1.m.stateDir)) {
			return fmt.Errorf("VXLAN device left after switching to host-gw")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if err := tcpReaches(a1.NetNSPath, echo); err != nil {
		t.Errorf("with host-gw: %v", err)
	}

	// Alone (every peer gone), a host has no tunnel and no routes.
	if err := inNS(h1.ns, func() error {
		if err := h1.m.SetFleet(context.Background(), fleetOf(h1, FleetVXLAN, []*fleetHost{h1})); err != nil {
			return err
		}
		if linkExists(vxlanName(h1.m.stateDir)) {
			return fmt.Errorf("VXLAN device left on a host with no peers")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if routes, _ := state(h1); len(routes) != 0 {
		t.Errorf("host 1 with no peers has routes %v", routes)
	}

	// Leaving: nothing of the fleet is left but the bridges (removeHost
	// checks the rest at the end).
	if err := inNS(h1.ns, func() error {
		if err := h1.m.LeaveFleet(context.Background()); err != nil {
			return err
		}
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: fleetRouteProto, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil || len(rs) > 0 {
			return fmt.Errorf("routes left after leaving: %v %v", rs, err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func TestFleetRefusesBadViews(t *testing.T) {
	base := func() Fleet {
		return Fleet{Address: netip.MustParseAddr("192.168.77.10"),
			Subnets: []FleetSubnet{{Name: "a", CIDR: netip.MustParsePrefix("10.89.0.0/16")}},
			Slices:  []netip.Prefix{netip.MustParsePrefix("10.89.1.0/24")},
			Peers:   []FleetPeer{{ID: "h2", Address: netip.MustParseAddr("192.168.77.11"), Slices: []netip.Prefix{netip.MustParsePrefix("10.89.2.0/24")}}}}
	}
	for _, c := range []struct {
		name   string
		change func(*Fleet)
		want   string
	}{
		{"unknown back end", func(f *Fleet) { f.Backend = "gre" }, "not known"},
		{"VNI out of range", func(f *Fleet) { f.VNI = 1 << 24 }, "VNI"},
		{"slice outside the subnets", func(f *Fleet) { f.Peers[0].Slices = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }, "inside one of the fleet's subnets"},
		{"slice overlapping ours", func(f *Fleet) { f.Peers[0].Slices = []netip.Prefix{netip.MustParsePrefix("10.89.1.0/25")} }, "overlaps"},
		{"peer with our address", func(f *Fleet) { f.Peers[0].Address = f.Address }, "own address"},
		{"peer inside a subnet", func(f *Fleet) { f.Peers[0].Address = netip.MustParseAddr("10.89.9.9") }, "inside fleet subnet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.change(&f)
			_, err := checkFleet(f)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("checkFleet: %v; want an error saying %q", err, c.want)
			}
		})
	}
	if _, err := checkFleet(base()); err != nil {
		t.Errorf("a good view: %v", err)
	}
}

// TestFleetWalledAddresses: a task of a subnet with NAT reaches machines
// beyond the fleet, but not the addresses the fleet walls off (the
// control plane's). The NAT rule itself is a fake (tests never run
// iptables): the task's datagram leaves unmasqueraded, which is enough to
// see whether it leaves.
func TestFleetWalledAddresses(t *testing.T) {
	f := newTestFleet(t, 3)
	h1, outsider := f.hosts[0], f.hosts[2]
	f.hosts = f.hosts[:2]
	for _, h := range f.hosts {
		h.m.subnets[fleetA.Name].NAT = true
		h.m.newIPTables = func() (iptablesAPI, error) { return &fakeIPTables{}, nil }
	}
	f.setFleet(FleetVXLAN)
	a1 := h1.attach(t, "a1", fleetA.Name)
	addr, ch := udpListener(t, outsider.ns, netip.IPv4Unspecified())
	at := netip.AddrPortFrom(outsider.addr, addr.Port())
	if !udpReaches(t, a1.NetNSPath, at, ch) {
		t.Fatalf("task %s of a subnet with NAT does not reach %s beyond the fleet (the test's control)", a1.IP, at)
	}
	view := fleetOf(h1, FleetVXLAN, f.hosts)
	view.Walled = []netip.Addr{outsider.addr}
	if err := inNS(h1.ns, func() error { return h1.m.SetFleet(t.Context(), view) }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		sendUDP(t, a1.NetNSPath, netip.Addr{}, at, []byte("walled"))
	}
	if received(ch, "walled", time.Second) {
		t.Errorf("task %s reached walled address %s", a1.IP, at)
	}

	// Uninstall (and tests that kill an agent) remove the tables and the
	// tunnel by the state directory alone.
	if err := inNS(h1.ns, func() error {
		if err := RemoveFirewall(h1.dir); err != nil {
			return err
		}
		if linkExists(vxlanName(h1.m.stateDir)) {
			return fmt.Errorf("RemoveFirewall left the VXLAN device")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
