package agent

import (
	"context"
	"net/netip"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/network"
)

// FleetNetwork is what the agent needs of the host's task networking to
// make the host part of the fleet network (*network.Manager).
type FleetNetwork interface {
	// SetFleet applies the host's whole view of the fleet network; it is
	// called again with the whole view on every change.
	SetFleet(ctx context.Context, f network.Fleet) error
}

// serverAddrs is a control plane client that tells where it reaches the
// control plane (agentproto.Client): the host walls its tasks off from
// those addresses.
type serverAddrs interface {
	ServerAddrs(ctx context.Context) []netip.Addr
}

// followFleetNetwork keeps the host's data plane between hosts as the
// control plane says it is: it follows the host's network view (a long
// poll on its revision) and applies every change, retrying a failed one
// (with the newest view) after RetryInterval. It runs when the control
// plane is a NetworkSource and the host's network a FleetNetwork, and
// ends with ctx: the data plane stays in place for the tasks that outlive
// the agent.
func (a *Agent) followFleetNetwork(ctx context.Context) {
	src, ok := a.cfg.ControlPlane.(agentproto.NetworkSource)
	if !ok {
		return
	}
	fn, ok := a.cfg.Network.(FleetNetwork)
	if !ok {
		return
	}
	// applied is the revision in force; after a failure the next poll
	// returns at once with the current view.
	var applied int64
	for ctx.Err() == nil {
		hn, err := src.HostNetwork(ctx, a.cfg.Host.ID, applied)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("fetching the fleet network failed; retrying", "err", err)
				sleep(ctx, a.cfg.RetryInterval)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if hn.Revision == applied && applied != 0 {
			continue
		}
		f := fleetFromProto(hn)
		if sa, ok := a.cfg.ControlPlane.(serverAddrs); ok {
			for _, ip := range sa.ServerAddrs(ctx) {
				if ip.Is4() {
					f.Walled = append(f.Walled, ip)
				}
			}
		}
		if err := fn.SetFleet(ctx, f); err != nil {
			if ctx.Err() == nil {
				a.log.Error("setting up the fleet network failed; retrying", "revision", hn.Revision, "err", err)
				applied = 0
				sleep(ctx, a.cfg.RetryInterval)
			}
			continue
		}
		a.log.Debug("fleet network applied", "revision", hn.Revision, "backend", hn.Backend, "peers", len(hn.Peers))
		applied = hn.Revision
	}
}

// fleetFromProto converts the control plane's view into the network
// package's (which imports nothing of the agent protocol).
func fleetFromProto(hn agentproto.HostNetwork) network.Fleet {
	f := network.Fleet{Backend: hn.Backend, VNI: hn.VNI, Port: hn.Port, Address: hn.Address}
	for _, s := range hn.Subnets {
		f.Subnets = append(f.Subnets, network.FleetSubnet{Name: s.Name, CIDR: s.CIDR, Peers: s.Peers})
	}
	for _, s := range hn.Slices {
		f.Slices = append(f.Slices, s.CIDR)
	}
	for _, p := range hn.Peers {
		np := network.FleetPeer{ID: p.HostID, Address: p.Address}
		for _, s := range p.Slices {
			np.Slices = append(np.Slices, s.CIDR)
		}
		f.Peers = append(f.Peers, np)
	}
	return f
}
