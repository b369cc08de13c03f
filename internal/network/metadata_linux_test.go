package network

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// metadataListener listens on the gateway's MetadataPort (it must exist:
// attach a task first) and sends the source address of each connection on
// the channel.
func metadataListener(t *testing.T, gw netip.Addr) <-chan netip.Addr {
	t.Helper()
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(gw, MetadataPort).String())
	if err != nil {
		t.Fatalf("listen on the gateway's metadata port: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	from := make(chan netip.Addr, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			from <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return from
}

// TestMetadataEndpointReachesTheGatewayOnly: a task's connection to
// 169.254.170.2:80 arrives at its gateway's MetadataPort with the task's
// own address as source, and nothing else reaches that port: not the task
// dialling it directly, not a task of another subnet, not the host itself,
// nor any other port of 169.254.170.2.
func TestMetadataEndpointReachesTheGatewayOnly(t *testing.T) {
	subA, subB := testSubnet(t, 24), testSubnet(t, 24)
	subB.Peers = []string{subA.Name} // even peers do not reach each other's endpoint
	m, _ := newTest(t, subA, subB)
	a1 := mustAttach(t, m, "task-a1", subA.Name)
	a2 := mustAttach(t, m, "task-a2", subA.Name)
	b := mustAttach(t, m, "task-b", subB.Name)
	fromA := metadataListener(t, a1.Gateway)
	fromB := metadataListener(t, b.Gateway)
	if got := m.MetadataListen(); len(got) != 2 {
		t.Fatalf("MetadataListen() = %v, want one address per subnet", got)
	}
	endpoint := netip.AddrPortFrom(MetadataAddr, 80)
	expect := func(from <-chan netip.Addr, want netip.Addr) {
		t.Helper()
		select {
		case got := <-from:
			if got != want {
				t.Errorf("the endpoint saw the connection come from %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no connection from %s reached the endpoint", want)
		}
	}
	for _, c := range []struct {
		att  *Attachment
		from <-chan netip.Addr
	}{{a1, fromA}, {a2, fromA}, {b, fromB}} {
		if err := dialFrom(t, c.att.NetNSPath, netip.Addr{}, endpoint); err != nil {
			t.Fatalf("task %s to %s: %v", c.att.TaskID, endpoint, err)
		}
		expect(c.from, c.att.IP)
		if id, ok := m.LookupIP(c.att.IP); !ok || id != c.att.TaskID {
			t.Errorf("LookupIP(%s) = %q, %v; want %s", c.att.IP, id, ok, c.att.TaskID)
		}
	}

	refused := []struct {
		what string
		ns   string
		to   netip.AddrPort
	}{
		{"a task dialling its gateway's metadata port directly", a1.NetNSPath, netip.AddrPortFrom(a1.Gateway, MetadataPort)},
		{"a task dialling another subnet's gateway's metadata port", b.NetNSPath, netip.AddrPortFrom(a1.Gateway, MetadataPort)},
		{"the host itself", "", netip.AddrPortFrom(a1.Gateway, MetadataPort)},
		{"a task on another port of the endpoint's address", a1.NetNSPath, netip.AddrPortFrom(MetadataAddr, MetadataPort)},
	}
	for _, r := range refused {
		if err := dialFrom(t, r.ns, netip.Addr{}, r.to); err == nil {
			t.Errorf("%s (%s) reached the metadata listener", r.what, r.to)
		}
	}
	select {
	case got := <-fromA:
		t.Errorf("the endpoint of %s saw a connection from %s", subA.Name, got)
	case got := <-fromB:
		t.Errorf("the endpoint of %s saw a connection from %s", subB.Name, got)
	default:
	}
	if _, ok := m.LookupIP(netip.MustParseAddr("192.0.2.77")); ok {
		t.Error("LookupIP found a task for an address no task holds")
	}
}
