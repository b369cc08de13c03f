package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"vessel.dev/vessel/internal/errdefs"
)

// Back ends of the fleet network (Fleet.Backend).
const (
	// FleetVXLAN carries task traffic between hosts in VXLAN (UDP), one
	// device per host; it works wherever the hosts reach each other over IP.
	FleetVXLAN = "vxlan"
	// FleetHostGW routes each peer's slices through the peer's address:
	// no encapsulation, for hosts on one L2 segment.
	FleetHostGW = "host-gw"
)

// Defaults of the VXLAN back end.
const (
	DefaultVNI       = 1
	DefaultVXLANPort = 4789
	// vxlanOverhead is what VXLAN over IPv4 adds to a frame: outer IPv4
	// (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
	vxlanOverhead = 50
)

// Fleet is this host's part of a network of hosts whose tasks reach each
// other (the agent converts the control plane's view into it). Each host
// has a slice of each fleet subnet it serves; its tasks take addresses from
// it, and the other hosts route the slice to it.
type Fleet struct {
	// Backend is FleetVXLAN (the default) or FleetHostGW.
	Backend string
	// VNI (1 to 16777215) and Port are the VXLAN network identifier and
	// UDP port; DefaultVNI and DefaultVXLANPort when zero.
	VNI  int
	Port int
	// Address is this host's underlay address, as the peers know it. Zero:
	// the source address of this host's route to its first peer.
	Address netip.Addr
	// Subnets are the fleet's subnets: their peering decides which tasks
	// reach which across hosts. A configured subnet of the Manager with the
	// same name gets the fleet's data plane (MTU, proxy ARP, forwarding).
	Subnets []FleetSubnet
	// Slices are this host's own slices (a peer's slice may not overlap them).
	Slices []netip.Prefix
	// Peers are the other hosts.
	Peers []FleetPeer
	// Walled are more addresses no task reaches (the control plane's, when
	// it runs on a host that is no peer); the peers' and this host's own
	// addresses are always walled off.
	Walled []netip.Addr
}

// FleetSubnet is a fleet-wide subnet as the data plane needs it.
type FleetSubnet struct {
	Name  string
	CIDR  netip.Prefix
	Peers []string
}

// FleetPeer is another host of the fleet.
type FleetPeer struct {
	// ID names the host in messages.
	ID string
	// Address is where the host is reached (its underlay address).
	Address netip.Addr
	// Slices are the host's slices, routed to it.
	Slices []netip.Prefix
}

// fleetState is a checked Fleet with its defaults applied.
type fleetState struct {
	Fleet
	subnets map[string]FleetSubnet
}

// checkFleet validates f and applies the defaults. The control plane is
// trusted only to route slices of the fleet's subnets: a peer's slice
// outside them, or overlapping this host's own, is refused.
func checkFleet(f Fleet) (*fleetState, error) {
	switch f.Backend {
	case "":
		f.Backend = FleetVXLAN
	case FleetVXLAN, FleetHostGW:
	default:
		return nil, errdefs.InvalidArgument("network: fleet back end %q is not known; use %s or %s", f.Backend, FleetVXLAN, FleetHostGW)
	}
	if f.VNI == 0 {
		f.VNI = DefaultVNI
	}
	if f.Port == 0 {
		f.Port = DefaultVXLANPort
	}
	if f.VNI < 1 || f.VNI > 1<<24-1 {
		return nil, errdefs.InvalidArgument("network: fleet VNI %d is out of range; use 1 to 16777215", f.VNI)
	}
	if f.Port < 1 || f.Port > 65535 {
		return nil, errdefs.InvalidArgument("network: fleet VXLAN port %d is out of range; use 1 to 65535", f.Port)
	}
	if f.Address.IsValid() && !f.Address.Is4() {
		return nil, errdefs.InvalidArgument("network: fleet address %s is not an IPv4 address", f.Address)
	}
	st := &fleetState{Fleet: f, subnets: map[string]FleetSubnet{}}
	for _, s := range f.Subnets {
		if s.Name == "" || !s.CIDR.IsValid() || !s.CIDR.Addr().Is4() || s.CIDR != s.CIDR.Masked() {
			return nil, errdefs.InvalidArgument("network: fleet subnet %q %v: a name and an IPv4 prefix without host bits are required", s.Name, s.CIDR)
		}
		if _, dup := st.subnets[s.Name]; dup {
			return nil, errdefs.InvalidArgument("network: fleet subnet %q is listed twice", s.Name)
		}
		for _, o := range st.subnets {
			if o.CIDR.Overlaps(s.CIDR) {
				return nil, errdefs.InvalidArgument("network: fleet subnets %q (%s) and %q (%s) overlap", o.Name, o.CIDR, s.Name, s.CIDR)
			}
		}
		st.subnets[s.Name] = s
	}
	inFleet := func(p netip.Prefix) bool {
		for _, s := range f.Subnets {
			if s.CIDR.Bits() <= p.Bits() && s.CIDR.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	for _, p := range f.Slices {
		if !p.IsValid() || p != p.Masked() || !inFleet(p) {
			return nil, errdefs.InvalidArgument("network: this host's slice %v is not a prefix inside one of the fleet's subnets", p)
		}
	}
	seen := map[netip.Addr]string{}
	var routed []netip.Prefix
	for _, p := range f.Peers {
		if !p.Address.Is4() || p.Address.IsUnspecified() || p.Address.IsLoopback() {
			return nil, errdefs.InvalidArgument("network: fleet peer %q: address %v is not a usable IPv4 address", p.ID, p.Address)
		}
		if p.Address == f.Address {
			return nil, errdefs.InvalidArgument("network: fleet peer %q has this host's own address %s", p.ID, p.Address)
		}
		if other, dup := seen[p.Address]; dup {
			return nil, errdefs.InvalidArgument("network: fleet peers %q and %q have the same address %s", other, p.ID, p.Address)
		}
		seen[p.Address] = p.ID
		for _, s := range f.Subnets {
			if s.CIDR.Contains(p.Address) {
				return nil, errdefs.InvalidArgument("network: fleet peer %q: address %s is inside fleet subnet %q (%s)", p.ID, p.Address, s.Name, s.CIDR)
			}
		}
		for _, sl := range p.Slices {
			if !sl.IsValid() || sl != sl.Masked() || !inFleet(sl) {
				return nil, errdefs.InvalidArgument("network: fleet peer %q: slice %v is not a prefix inside one of the fleet's subnets", p.ID, sl)
			}
			for _, o := range slices.Concat(f.Slices, routed) {
				if o.Overlaps(sl) {
					return nil, errdefs.InvalidArgument("network: fleet peer %q: slice %s overlaps %s, which is this host's or another peer's", p.ID, sl, o)
				}
			}
			routed = append(routed, sl)
		}
	}
	for _, a := range f.Walled {
		if !a.Is4() {
			return nil, errdefs.InvalidArgument("network: walled address %v is not an IPv4 address", a)
		}
	}
	return st, nil
}

// subnetPeers reports whether tasks of fleet subnets a and b may reach
// each other: one lists the other, in the fleet's or the manager's config.
func (m *Manager) subnetPeers(f *fleetState, a, b string) bool {
	if a == b {
		return true
	}
	if sa, ok := f.subnets[a]; ok && slices.Contains(sa.Peers, b) {
		return true
	}
	if sb, ok := f.subnets[b]; ok && slices.Contains(sb.Peers, a) {
		return true
	}
	_, okA := m.subnets[a]
	_, okB := m.subnets[b]
	return okA && okB && m.peers(a, b)
}

// walled lists the host addresses no task reaches across hosts.
func (f *fleetState) walled() []netip.Addr {
	var out []netip.Addr
	for _, p := range f.Peers {
		out = append(out, p.Address)
	}
	if f.Address.IsValid() {
		out = append(out, f.Address)
	}
	out = append(out, f.Walled...)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// vtepMAC is the MAC of the VXLAN device of the host with underlay address
// a: 0e:56 (locally administered, unicast) and the address, so that every
// host derives its peers' from their addresses and nothing more is
// exchanged.
func vtepMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x0e, 0x56, b[0], b[1], b[2], b[3]}
}

// vxlanName names the manager's VXLAN device: "vslx" and 8 hex digits of
// a hash of its state directory (as its firewall tables).
func vxlanName(stateDir string) string {
	h := sha256.Sum256([]byte("vxlan\x00" + stateDir))
	return "vslx" + hex.EncodeToString(h[:])[:8]
}

func (f *fleetState) String() string {
	var peers []string
	for _, p := range f.Peers {
		peers = append(peers, fmt.Sprintf("%s@%s", p.ID, p.Address))
	}
	return fmt.Sprintf("%s peers=[%s]", f.Backend, strings.Join(peers, " "))
}

// fleetData is the manager's fleet network: what SetFleet last applied.
type fleetData struct {
	mu sync.Mutex // serializes SetFleet and LeaveFleet
	// cur and mtu are written with both mu and Manager.mu held and read
	// with either (the firewall and the bridges read them under
	// Manager.mu).
	cur *fleetState
	// mtu is the MTU of the bridges and task interfaces of fleet subnets
	// while VXLAN is on (its device's); 0 leaves them alone.
	mtu int
}

// fleetView returns the fleet network in force and the task MTU.
func (m *Manager) fleetView() (*fleetState, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fleet.cur, m.fleet.mtu
}
