package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

// The data plane between hosts, set by SetFleet from the fleet's view:
//
//   - every host's bridge of a fleet subnet carries the subnet's gateway
//     with the whole subnet's prefix (ensureSubnet), so a task's address in
//     another host's slice looks on-link to the task: the bridge answers
//     ARP for it (proxy_arp, no delay) since the host routes it elsewhere,
//     and forwards;
//   - VXLAN: while there are peers, one device per manager (vxlanName;
//     a host alone makes none, so that several managers on one machine do
//     not claim the same VNI and port) with the fleet's VNI and
//     port, sending from this host's address, learning off, MAC
//     vtepMAC(this host's address). Per peer: a route per slice via the
//     peer's address, onlink through the device; a permanent neighbour
//     entry on the device for that address with vtepMAC(peer); an FDB entry
//     sending that MAC to the peer's address. Nothing is learnt or
//     flooded, and nothing beyond the peers' addresses is exchanged;
//   - host-gw: a route per peer slice via the peer's address;
//   - the routes carry protocol fleetRouteProto, so that routes of peers
//     gone (also while the agent was away) are found and removed;
//   - MTU: with VXLAN, the device's MTU is the underlay's minus 50 and the
//     fleet subnets' bridges, host veths and tasks' eth0 get the same;
//     TCP's MSS is also clamped on the way into the tunnel (for a sandbox
//     whose own stack ignores eth0's MTU).
//
// The firewall's part is in firewall_linux.go (fleetInputRules,
// fleetForwardRules).

// fleetRouteProto marks the routes to other hosts' slices (rtnetlink's
// protocol field; unused by the routing daemons iproute2 knows).
const fleetRouteProto = netlink.RouteProtocol(118)

// SetFleet makes this host part of the fleet network f: the other hosts'
// slices are routed to them, theirs reach this host's tasks, and the
// firewall walls tasks off from every host and from the subnets they do
// not peer with. It is idempotent and meant to be called again with the
// whole view on every change: what is no longer in f (a peer gone, the
// back end changed) is removed. It creates the bridges of the fleet's
// subnets the manager serves.
func (m *Manager) SetFleet(ctx context.Context, f Fleet) error {
	st, err := checkFleet(f)
	if err != nil {
		return err
	}
	m.fleet.mu.Lock()
	defer m.fleet.mu.Unlock()
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return m.errClosed()
	}
	if !st.Address.IsValid() && len(st.Peers) > 0 {
		a, err := sourceToward(st.Peers[0].Address)
		if err != nil {
			return fmt.Errorf("network: fleet: this host's address is not given and the route to peer %q does not tell it: %w", st.Peers[0].ID, err)
		}
		st.Address = a
	}

	vxName := vxlanName(m.stateDir)
	var vx netlink.Link
	mtu := 0
	if st.Backend == FleetVXLAN && len(st.Peers) > 0 {
		under, err := underlayLink(st)
		if err != nil {
			return err
		}
		mtu = under.Attrs().MTU - vxlanOverhead
		if vx, err = m.ensureVXLAN(st, vxName, mtu); err != nil {
			return err
		}
	} else if err := deleteLink(vxName); err != nil {
		return err
	}

	// The firewall before the routes: the tunnel's port is guarded, and
	// tasks are walled off from the hosts, before anything is routed.
	m.mu.Lock()
	prev := m.fleet.cur
	m.fleet.cur, m.fleet.mtu = st, mtu
	m.mu.Unlock()
	if err := m.syncFirewall(); err != nil {
		return fmt.Errorf("network: fleet: %w", err)
	}
	var errs []error
	for _, name := range m.subnetNames() {
		if _, ok := st.subnets[name]; !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// A bridge is made with its subnet's first task here (ensureSubnet
		// then gives it what the fleet needs); one that exists gets it now.
		// Making them all ahead would leave bridges on hosts that never
		// run a task of the subnet, beyond the agent's life.
		sub := m.subnets[name]
		br, err := netlink.LinkByName(sub.bridge)
		if isNotFound(err) {
			continue
		}
		if err == nil {
			err = m.fleetBridge(sub, br)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, m.setTaskMTU(st, mtu))
	errs = append(errs, m.syncFleetRoutes(st, prev, vx))
	if vx != nil {
		errs = append(errs, syncVTEPs(st, vx))
	}
	if st.Backend == FleetHostGW {
		// Peers' packets for this host's tasks come in on the underlay.
		for _, p := range st.Peers {
			if l, err := routeLink(p.Address); err == nil {
				errs = append(errs, enableDeviceForwarding(l.Attrs().Name))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: fleet (%s): %w", st, err)
	}
	if prev == nil || prev.String() != st.String() {
		m.log.Info("fleet network set", "backend", st.Backend, "address", st.Address, "peers", len(st.Peers), "mtu", mtu)
	}
	return nil
}

// LeaveFleet removes what SetFleet made but the bridges: the VXLAN device
// (its routes, neighbour and FDB entries go with it), the routes to other
// hosts' slices and the fleet's firewall rules. For a host leaving the
// fleet, and for uninstall and tests; a missing piece is fine.
func (m *Manager) LeaveFleet(ctx context.Context) error {
	m.fleet.mu.Lock()
	defer m.fleet.mu.Unlock()
	m.mu.Lock()
	prev := m.fleet.cur
	m.fleet.cur, m.fleet.mtu = nil, 0
	leased := len(m.leases) > 0
	m.mu.Unlock()
	var errs []error
	errs = append(errs, deleteLink(vxlanName(m.stateDir)))
	errs = append(errs, m.syncFleetRoutes(&fleetState{}, prev, nil))
	anyBridge := leased
	for _, s := range m.subnets {
		anyBridge = anyBridge || linkExists(s.bridge)
	}
	if anyBridge {
		errs = append(errs, m.syncFirewall())
	} else {
		errs = append(errs, m.removeFirewall())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: leave fleet: %w", err)
	}
	return nil
}

// fleetBridge gives a fleet subnet's bridge what the fleet needs: the
// tunnel's MTU, forwarding, and proxy ARP without delay (a task's address
// in another host's slice is on-link to the task). ensureSubnet calls it.
func (m *Manager) fleetBridge(sub *subnetState, br netlink.Link) error {
	st, mtu := m.fleetView()
	if st == nil {
		return nil
	}
	if _, ok := st.subnets[sub.Name]; !ok {
		return nil
	}
	if mtu > 0 && br.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(br, mtu); err != nil {
			return fmt.Errorf("network: set MTU %d on bridge %s: %w", mtu, sub.bridge, err)
		}
		br.Attrs().MTU = mtu // new task veths take the bridge's
	}
	return errors.Join(
		enableDeviceForwarding(sub.bridge),
		writeSysctl("/proc/sys/net/ipv4/conf/"+sub.bridge+"/proxy_arp", "1"),
		writeSysctl("/proc/sys/net/ipv4/neigh/"+sub.bridge+"/proxy_delay", "0"),
	)
}

func writeSysctl(path, v string) error {
	if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("network: set %s to %s: %w", path, v, err)
	}
	return nil
}

func enableDeviceForwarding(dev string) error {
	return writeSysctl("/proc/sys/net/ipv4/conf/"+dev+"/forwarding", "1")
}

func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network: look up %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("network: delete %s: %w", name, err)
	}
	return nil
}

// routeLink is the device of this host's route to a.
func routeLink(a netip.Addr) (netlink.Link, error) {
	rs, err := netlink.RouteGet(net.IP(a.AsSlice()))
	if err != nil || len(rs) == 0 {
		return nil, fmt.Errorf("no route to %s: %v", a, err)
	}
	return netlink.LinkByIndex(rs[0].LinkIndex)
}

// sourceToward is the source address of this host's route to a.
func sourceToward(a netip.Addr) (netip.Addr, error) {
	rs, err := netlink.RouteGet(net.IP(a.AsSlice()))
	if err != nil || len(rs) == 0 {
		return netip.Addr{}, fmt.Errorf("no route to %s: %v", a, err)
	}
	src, ok := netip.AddrFromSlice(rs[0].Src)
	if !ok {
		return netip.Addr{}, fmt.Errorf("the route to %s names no source address", a)
	}
	return src.Unmap(), nil
}

// underlayLink is the device the tunnel's packets leave by: the one of
// the route to the first peer, else the one holding this host's address.
func underlayLink(st *fleetState) (netlink.Link, error) {
	if len(st.Peers) > 0 {
		l, err := routeLink(st.Peers[0].Address)
		if err != nil {
			return nil, fmt.Errorf("network: fleet: peer %q: %w", st.Peers[0].ID, err)
		}
		return l, nil
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("network: list host addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == st.Address {
			return netlink.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, errdefs.InvalidArgument("network: fleet: this host's address %s is on none of its interfaces", st.Address)
}

// ensureVXLAN makes the manager's VXLAN device as st wants it, replacing
// one made with other parameters, and brings it up.
func (m *Manager) ensureVXLAN(st *fleetState, name string, mtu int) (netlink.Link, error) {
	src := net.IP(st.Address.AsSlice())
	mac := vtepMAC(st.Address)
	l, err := netlink.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("network: look up %s: %w", name, err)
	}
	if l != nil {
		v, ok := l.(*netlink.Vxlan)
		if !ok || v.VxlanId != st.VNI || v.Port != st.Port || !v.SrcAddr.Equal(src) || v.Learning {
			m.log.Info("replacing VXLAN device made with other parameters", "device", name)
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				return nil, fmt.Errorf("network: delete %s: %w", name, err)
			}
			l = nil
		}
	}
	if l == nil {
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac},
			VxlanId:   st.VNI,
			SrcAddr:   src,
			Port:      st.Port,
			Learning:  false,
		}
		if err := netlink.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("network: create VXLAN device %s (VNI %d, port %d, from %s): %w", name, st.VNI, st.Port, st.Address, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("network: look up %s: %w", name, err)
		}
		m.log.Info("created VXLAN device", "device", name, "vni", st.VNI, "port", st.Port, "local", st.Address, "mtu", mtu)
	}
	if l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("network: set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("network: set MAC %s on %s: %w", mac, name, err)
		}
	}
	if err := enableDeviceForwarding(name); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("network: bring up %s: %w", name, err)
	}
	return l, nil
}

// setTaskMTU gives the host veths and the eth0 of the tasks of the fleet's
// subnets the tunnel's MTU (new ones get it from their bridge).
func (m *Manager) setTaskMTU(st *fleetState, mtu int) error {
	if mtu <= 0 {
		return nil
	}
	m.mu.Lock()
	var ls []lease
	for _, l := range m.leases {
		if _, ok := st.subnets[l.Subnet]; ok && l.Attached {
			ls = append(ls, *l)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, l := range ls {
		unlock := m.lockTask(l.TaskID)
		if h, err := netlink.LinkByName(l.HostVeth); err == nil && h.Attrs().MTU != mtu {
			if err := netlink.LinkSetMTU(h, mtu); err != nil {
				errs = append(errs, fmt.Errorf("set MTU %d on veth %s: %w", mtu, l.HostVeth, err))
			}
		}
		errs = append(errs, setNamespaceMTU(m.netnsPath(l.name()), mtu))
		unlock()
	}
	return errors.Join(errs...)
}

func setNamespaceMTU(nsPath string, mtu int) error {
	return withEth0(nsPath, func(h *netlink.Handle, eth0 netlink.Link) error {
		if eth0.Attrs().MTU == mtu {
			return nil
		}
		if err := h.LinkSetMTU(eth0, mtu); err != nil {
			return fmt.Errorf("set MTU %d on eth0 in %s: %w", mtu, nsPath, err)
		}
		return nil
	})
}

// syncFleetRoutes makes this host's routes to the peers' slices those st
// wants: routes of fleetRouteProto into the fleet's subnets (st's, prev's
// or the manager's) that st does not want are deleted.
func (m *Manager) syncFleetRoutes(st, prev *fleetState, vx netlink.Link) error {
	type want struct {
		gw   netip.Addr
		link int
	}
	wanted := map[netip.Prefix]want{}
	var routes []*netlink.Route
	for _, p := range st.Peers {
		for _, sl := range p.Slices {
			r := &netlink.Route{Dst: ipNet(sl.Addr(), sl.Bits()), Gw: net.IP(p.Address.AsSlice()), Protocol: fleetRouteProto}
			if st.Backend == FleetVXLAN {
				if vx == nil {
					continue
				}
				r.LinkIndex = vx.Attrs().Index
				r.Flags = int(netlink.FLAG_ONLINK)
			} else {
				l, err := routeLink(p.Address)
				if err != nil {
					return fmt.Errorf("peer %q: %w", p.ID, err)
				}
				r.LinkIndex = l.Attrs().Index
			}
			wanted[sl] = want{gw: p.Address, link: r.LinkIndex}
			routes = append(routes, r)
		}
	}
	var ours []netip.Prefix
	for _, s := range m.subnets {
		ours = append(ours, s.CIDR)
	}
	for _, f := range []*fleetState{st, prev} {
		if f == nil {
			continue
		}
		for _, s := range f.Subnets {
			ours = append(ours, s.CIDR)
		}
	}
	have, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: fleetRouteProto, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		dst := netip.PrefixFrom(a.Unmap(), ones)
		if !slices.ContainsFunc(ours, func(p netip.Prefix) bool { return p.Bits() <= dst.Bits() && p.Contains(dst.Addr()) }) {
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		if w, ok := wanted[dst]; ok && w.gw == gw.Unmap() && w.link == r.LinkIndex {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route to %s: %w", dst, err))
		}
	}
	for _, r := range routes {
		if err := netlink.RouteReplace(r); err != nil {
			hint := ""
			if st.Backend == FleetHostGW {
				hint = " (host-gw needs the hosts on one L2 segment; use vxlan otherwise)"
			}
			errs = append(errs, fmt.Errorf("route %s via %s%s: %w", r.Dst, r.Gw, hint, err))
		}
	}
	return errors.Join(errs...)
}

// syncVTEPs makes the VXLAN device's neighbour and FDB entries one per
// peer: its address to vtepMAC(address), and that MAC to the address.
func syncVTEPs(st *fleetState, vx netlink.Link) error {
	idx := vx.Attrs().Index
	wanted := map[netip.Addr]string{}
	for _, p := range st.Peers {
		wanted[p.Address] = vtepMAC(p.Address).String()
	}
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, unix.AF_BRIDGE} {
		have, err := retryDump(func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, fam) })
		if err != nil {
			errs = append(errs, fmt.Errorf("list neighbours of %s: %w", vx.Attrs().Name, err))
			continue
		}
		for _, n := range have {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || n.HardwareAddr == nil {
				continue
			}
			if mac, ok := wanted[a.Unmap()]; ok && mac == n.HardwareAddr.String() {
				continue
			}
			if fam == unix.AF_BRIDGE {
				n.Family, n.Flags = unix.AF_BRIDGE, netlink.NTF_SELF
			}
			if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete neighbour %s of %s: %w", a, vx.Attrs().Name, err))
			}
		}
	}
	for _, p := range st.Peers {
		ip, mac := net.IP(p.Address.AsSlice()), vtepMAC(p.Address)
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST, IP: ip, HardwareAddr: mac}); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s of peer %q: %w", p.Address, p.ID, err))
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac}); err != nil {
			errs = append(errs, fmt.Errorf("FDB entry %s of peer %q: %w", mac, p.ID, err))
		}
	}
	return errors.Join(errs...)
}
