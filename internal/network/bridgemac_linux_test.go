package network

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestBridgeMACStaysAsTasksComeAndGo: a subnet's bridge keeps one MAC
// address whatever ports join or leave it. A Linux bridge whose address
// was never set takes the lowest of its ports' MACs (random ones), so a
// task whose host veth had a lower MAC than the others' changed the
// bridge's, and so did the going of the task that held the lowest. A task
// that had the gateway's MAC in its neighbour table then sent what it
// sent to its gateway (DNS, and everything routed beyond the host) to a
// MAC no port has any more: flooded, never taken up, lost, until that
// entry expired tens of seconds later (the host flushes its own entries
// when its MAC changes, so connections the host opens heal at once, those
// the task opens do not). Here task a connects to its gateway's DNS port
// while tasks b and c join, c with the lowest MAC there is, and leave.
func TestBridgeMACStaysAsTasksComeAndGo(t *testing.T) {
	requireRoot(t)
	sub := testSubnet(t, 24)
	m, _ := newTest(t, sub)
	a := mustAttach(t, m, "mac-a", sub.Name)
	// The gateway's DNS port over TCP: what a task may reach on its host.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a.Gateway, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	dial := func() error { return dialFrom(t, a.NetNSPath, netip.Addr{}, netip.AddrPortFrom(a.Gateway, 53)) }
	bridgeMAC := func() string {
		br, err := netlink.LinkByName(m.subnets[sub.Name].bridge)
		if err != nil {
			t.Fatal(err)
		}
		return br.Attrs().HardwareAddr.String()
	}
	// join attaches a task whose host veth has the given MAC.
	join := func(id string, mac net.HardwareAddr) {
		t.Helper()
		at := mustAttach(t, m, id, sub.Name)
		veth, err := netlink.LinkByName(at.HostVeth)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetHardwareAddr(veth, mac); err != nil {
			t.Fatal(err)
		}
	}
	join("mac-b", net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02})
	if err := dial(); err != nil {
		t.Fatalf("task a dialling its gateway's DNS port (%s:53): %v", a.Gateway, err)
	}
	mac := bridgeMAC()
	join("mac-c", net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01})
	if got := bridgeMAC(); got != mac {
		t.Errorf("the bridge's MAC went from %s to %s when task mac-c's port joined", mac, got)
	}
	for _, id := range []string{"mac-b", "mac-c"} {
		if err := dial(); err != nil {
			t.Errorf("task a dialling its gateway's DNS port (%s:53) after task %s's port joined or left: %v", a.Gateway, id, err)
		}
		if err := m.Detach(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if got := bridgeMAC(); got != mac {
			t.Errorf("the bridge's MAC went from %s to %s when task %s left", mac, got, id)
		}
		if err := dial(); err != nil {
			t.Errorf("task a dialling its gateway's DNS port (%s:53) after task %s left: %v (a sends to the gateway's MAC it learnt, %s)", a.Gateway, id, err, mac)
		}
	}
	if err := m.Detach(t.Context(), "mac-a"); err != nil {
		t.Fatal(err)
	}
}

// acceptAndClose accepts connections on ln and closes each, until ln is
// closed.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
