package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/network"
)

// fleetSource is the control plane's side of the fleet network (the
// agent protocol's edge): views by revision, a long poll on the last.
type fleetSource struct {
	agentproto.ControlPlane // not called
	mu                      sync.Mutex
	views                   []agentproto.HostNetwork
	changed                 chan struct{}
}

func (s *fleetSource) publish(v agentproto.HostNetwork) {
	s.mu.Lock()
	v.Revision = int64(len(s.views) + 1)
	s.views = append(s.views, v)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// ServerAddrs is where the agent reaches the control plane.
func (s *fleetSource) ServerAddrs(context.Context) []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("fd00::2")}
}

func (s *fleetSource) HostNetwork(ctx context.Context, hostID string, after int64) (agentproto.HostNetwork, error) {
	for {
		s.mu.Lock()
		cur, ch := s.views[len(s.views)-1], s.changed
		s.mu.Unlock()
		if cur.Revision != after {
			return cur, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cur, nil
		}
	}
}

// fleetRecorder is the host's network (the data plane's edge): it records
// what it is told, failing the first call.
type fleetRecorder struct {
	Network // not called
	mu      sync.Mutex
	calls   []network.Fleet
	applied chan network.Fleet
}

func (r *fleetRecorder) SetFleet(ctx context.Context, f network.Fleet) error {
	r.mu.Lock()
	r.calls = append(r.calls, f)
	first := len(r.calls) == 1
	r.mu.Unlock()
	if first {
		return errors.New("netlink: device busy")
	}
	r.applied <- f
	return nil
}

func TestFleetNetworkFollowsTheControlPlane(t *testing.T) {
	peer := func(id, addr, slice string) agentproto.Peer {
		return agentproto.Peer{HostID: id, Address: netip.MustParseAddr(addr),
			Slices: []agentproto.Slice{{Subnet: "subnet-default", CIDR: netip.MustParsePrefix(slice)}}}
	}
	view := agentproto.HostNetwork{Backend: agentproto.BackendVXLAN, VNI: 7, Port: 8472,
		Address: netip.MustParseAddr("192.168.1.10"),
		Subnets: []agentproto.FleetSubnet{{Name: "subnet-default", CIDR: netip.MustParsePrefix("10.89.0.0/16"), SliceBits: 24}},
		Slices:  []agentproto.Slice{{Subnet: "subnet-default", CIDR: netip.MustParsePrefix("10.89.1.0/24")}},
		Peers:   []agentproto.Peer{peer("h2", "192.168.1.11", "10.89.2.0/24")}}
	src := &fleetSource{changed: make(chan struct{})}
	src.publish(view)
	rec := &fleetRecorder{applied: make(chan network.Fleet, 4)}
	a := &Agent{cfg: Config{Host: agentproto.Host{ID: "h1"}, ControlPlane: src, Network: rec, RetryInterval: 10 * time.Millisecond},
		log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.followFleetNetwork(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	next := func() network.Fleet {
		t.Helper()
		select {
		case f := <-rec.applied:
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("the fleet network was not applied")
			return network.Fleet{}
		}
	}
	// The first attempt fails; the retry applies the same view.
	f := next()
	if f.Backend != "vxlan" || f.VNI != 7 || f.Port != 8472 || f.Address != view.Address ||
		len(f.Subnets) != 1 || f.Subnets[0].CIDR != view.Subnets[0].CIDR ||
		len(f.Slices) != 1 || f.Slices[0] != view.Slices[0].CIDR ||
		len(f.Peers) != 1 || f.Peers[0].ID != "h2" || f.Peers[0].Address != view.Peers[0].Address || f.Peers[0].Slices[0] != view.Peers[0].Slices[0].CIDR {
		t.Fatalf("applied %+v; from %+v", f, view)
	}
	if len(f.Walled) != 1 || f.Walled[0] != netip.MustParseAddr("192.168.1.2") {
		t.Errorf("walled %v; want the control plane's IPv4 address 192.168.1.2", f.Walled)
	}

	// A peer comes: the whole new view is applied.
	view.Peers = append(view.Peers, peer("h3", "192.168.1.12", "10.89.3.0/24"))
	src.publish(view)
	if f := next(); len(f.Peers) != 2 || f.Peers[1].ID != "h3" {
		t.Fatalf("after a peer came: %+v", f.Peers)
	}
	// A peer goes.
	view.Peers = view.Peers[1:]
	src.publish(view)
	if f := next(); len(f.Peers) != 1 || f.Peers[0].ID != "h3" {
		t.Fatalf("after a peer left: %+v", f.Peers)
	}
	rec.mu.Lock()
	n := len(rec.calls)
	rec.mu.Unlock()
	if n != 4 {
		t.Errorf("SetFleet was called %d times; want 4 (one failure, its retry, two changes)", n)
	}
}
