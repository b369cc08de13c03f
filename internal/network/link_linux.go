package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

var hostVethRE = regexp.MustCompile(`^vh[0-9a-f]{8}$`)

// retryDump repeats a netlink dump that the kernel interrupted because the
// table changed under it (other tasks attaching at the same time).
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		v   []T
		err error
	)
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

// ensureSubnet makes sure the subnet's bridge exists, carries the gateway
// address and is up, and that its NAT rule is in place when NAT is on.
func (m *Manager) ensureSubnet(sub *subnetState) (netlink.Link, error) {
	m.bridgeMu.Lock()
	defer m.bridgeMu.Unlock()

	var ipt iptablesAPI
	if sub.NAT {
		var err error
		if ipt, err = m.newIPTables(); err != nil {
			return nil, errdefs.Unavailable("network: subnet %q has NAT on, which needs the iptables command (apt-get install iptables): %v", sub.Name, err)
		}
	}

	br, err := netlink.LinkByName(sub.bridge)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("network: look up bridge %s: %w", sub.bridge, err)
	}
	brIndex := 0
	if br != nil {
		brIndex = br.Attrs().Index
		if br.Type() != "bridge" {
			return nil, errdefs.Conflict("network: host interface %s (for subnet %q) exists but is a %s, not a bridge", sub.bridge, sub.Name, br.Type())
		}
	}
	if err := checkNoOverlap(sub, brIndex); err != nil {
		return nil, err
	}
	if br == nil {
		// The bridge's MAC is set, so that it keeps it: a Linux bridge
		// whose MAC was never set takes its ports' lowest, which changes
		// as tasks come and go, and tasks that had learnt the gateway's
		// lost it for tens of seconds (TestBridgeMACStaysAsTasksComeAndGo).
		b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: sub.bridge, HardwareAddr: gatewayMAC(sub.gateway)}}
		if err := netlink.LinkAdd(b); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("network: create bridge %s for subnet %q: %w", sub.bridge, sub.Name, err)
		}
		if br, err = netlink.LinkByName(sub.bridge); err != nil {
			return nil, fmt.Errorf("network: look up bridge %s: %w", sub.bridge, err)
		}
		m.log.Info("created bridge", "subnet", sub.Name, "bridge", sub.bridge, "cidr", sub.CIDR, "gateway", sub.gateway)
	}
	gw := &netlink.Addr{IPNet: ipNet(sub.gateway, sub.CIDR.Bits())}
	if err := netlink.AddrReplace(br, gw); err != nil {
		return nil, fmt.Errorf("network: set gateway %s on bridge %s: %w", gw.IPNet, sub.bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("network: bring up bridge %s: %w", sub.bridge, err)
	}
	if m.hasPeers(sub.Name) {
		// Forwarding is decided by the interface a packet comes in on.
		f := "/proc/sys/net/ipv4/conf/" + sub.bridge + "/forwarding"
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return nil, fmt.Errorf("network: subnet %q has peers: enable forwarding on %s: %w", sub.Name, sub.bridge, err)
		}
	}
	if err := m.fleetBridge(sub, br); err != nil {
		return nil, fmt.Errorf("network: subnet %q in the fleet network: %w", sub.Name, err)
	}
	if sub.NAT {
		if err := m.enableForwarding(); err != nil {
			return nil, fmt.Errorf("network: subnet %q has NAT on: enable net.ipv4.ip_forward: %w", sub.Name, err)
		}
		if err := ipt.AppendUnique("nat", "POSTROUTING", masqueradeRule(sub.Subnet, sub.bridge)...); err != nil {
			return nil, fmt.Errorf("network: subnet %q: add MASQUERADE rule: %w", sub.Name, err)
		}
	}
	return br, nil
}

// checkNoOverlap refuses a subnet whose range some other host interface
// already uses, so that Vessel never takes over a real network's routes.
func checkNoOverlap(sub *subnetState, bridgeIndex int) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("network: list host addresses: %w", err)
	}
	for _, a := range addrs {
		if a.LinkIndex == bridgeIndex && bridgeIndex != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones).Masked()
		if p.Overlaps(sub.CIDR) {
			name := fmt.Sprint(a.LinkIndex)
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return errdefs.Conflict("network: subnet %q (%s) overlaps %s on host interface %s; choose a CIDR no host interface uses", sub.Name, sub.CIDR, a.IPNet, name)
		}
	}
	return nil
}

// plumb builds the task's namespace (keeping one that is already mounted),
// its veth pair on the bridge, eth0's address and the default route.
func (m *Manager) plumb(l *lease, sub *subnetState, br netlink.Link) error {
	nsPath := m.netnsPath(l.name())
	if !isNetNS(nsPath) {
		if err := removeNetNS(nsPath); err != nil {
			return err
		}
		if err := createNetNS(nsPath); err != nil {
			return err
		}
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in namespace %s: %w", nsPath, err)
	}
	defer h.Close()

	// Start from a clean veth: a stale host side takes its eth0 with it.
	if old, err := netlink.LinkByName(l.HostVeth); err == nil {
		if err := netlink.LinkDel(old); err != nil {
			return fmt.Errorf("delete stale veth %s: %w", l.HostVeth, err)
		}
	}
	if old, err := h.LinkByName("eth0"); err == nil {
		if err := h.LinkDel(old); err != nil {
			return fmt.Errorf("delete stale eth0: %w", err)
		}
	}

	mtu := br.Attrs().MTU
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.HostVeth, MTU: mtu, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
		PeerMTU:       uint32(mtu),
		// The firewall lets only this MAC leave the veth.
		PeerHardwareAddr: taskMAC(l.IP),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", l.HostVeth, err)
	}
	host, err := netlink.LinkByName(l.HostVeth)
	if err != nil {
		return fmt.Errorf("look up veth %s: %w", l.HostVeth, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach veth %s to bridge %s: %w", l.HostVeth, sub.bridge, err)
		}
	}

	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("look up eth0 in namespace: %w", err)
	}
	// The task's own link is its host's slice: the rest of the subnet (the
	// gateway included, on other hosts' slices) is reached through the
	// gateway, on link.
	if err := h.AddrReplace(eth0, &netlink.Addr{IPNet: ipNet(l.IP, sub.slice.Bits())}); err != nil {
		return fmt.Errorf("set address %s on eth0: %w", l.IP, err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	if lo, err := h.LinkByName("lo"); err != nil {
		return fmt.Errorf("look up lo in namespace: %w", err)
	} else if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IP(sub.gateway.AsSlice()), Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("add default route via %s: %w", sub.gateway, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up veth %s: %w", l.HostVeth, err)
	}
	return nil
}

// teardown removes the task's veth (if veth is not empty), namespace and
// /etc files. Missing pieces are fine.
func (m *Manager) teardown(taskID, veth string) error {
	var errs []error
	if veth != "" {
		if l, err := netlink.LinkByName(veth); err == nil {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", veth, err))
			}
		} else if !isNotFound(err) {
			errs = append(errs, fmt.Errorf("look up veth %s: %w", veth, err))
		}
	}
	if err := removeNetNS(m.netnsPath(taskID)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(m.etcPath(taskID)); err != nil {
		errs = append(errs, fmt.Errorf("remove /etc files: %w", err))
	}
	return errors.Join(errs...)
}

// verify lists what is wrong with an attachment; nil means it is whole.
func (m *Manager) verify(l *lease) []string {
	var problems []string
	sub, ok := m.subnets[l.Subnet]
	if !ok {
		return []string{fmt.Sprintf("subnet %q is no longer configured", l.Subnet)}
	}
	if sub.CIDR != l.CIDR {
		problems = append(problems, fmt.Sprintf("subnet %q is now %s but the lease is in %s", l.Subnet, sub.CIDR, l.CIDR))
	}
	br, err := netlink.LinkByName(sub.bridge)
	if err != nil {
		problems = append(problems, fmt.Sprintf("bridge %s is missing", sub.bridge))
	} else if br.Attrs().Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("bridge %s is down", sub.bridge))
	}
	host, err := netlink.LinkByName(l.HostVeth)
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("veth %s is missing", l.HostVeth))
	case host.Type() != "veth":
		problems = append(problems, fmt.Sprintf("%s is a %s, not a veth", l.HostVeth, host.Type()))
	case br == nil || host.Attrs().MasterIndex != br.Attrs().Index:
		problems = append(problems, fmt.Sprintf("veth %s is not on bridge %s", l.HostVeth, sub.bridge))
	case host.Attrs().Flags&net.FlagUp == 0:
		problems = append(problems, fmt.Sprintf("veth %s is down", l.HostVeth))
	}
	nsPath := m.netnsPath(l.name())
	if !isNetNS(nsPath) {
		problems = append(problems, fmt.Sprintf("network namespace %s is not mounted", nsPath))
	} else {
		problems = append(problems, verifyInside(nsPath, l, sub)...)
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		if _, err := os.Stat(filepath.Join(m.etcPath(l.name()), f)); err != nil {
			problems = append(problems, fmt.Sprintf("/etc file %s is missing", f))
		}
	}
	return problems
}

func verifyInside(nsPath string, l *lease, sub *subnetState) []string {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return []string{fmt.Sprintf("open network namespace: %v", err)}
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return []string{fmt.Sprintf("netlink in network namespace: %v", err)}
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return []string{"eth0 is missing in the namespace"}
	}
	var problems []string
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		problems = append(problems, "eth0 is down")
	}
	addrs, err := h.AddrList(eth0, netlink.FAMILY_V4)
	found := false
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == l.IP {
			found = true
		}
	}
	if err != nil || !found {
		problems = append(problems, fmt.Sprintf("eth0 does not have %s", l.IP))
	}
	routes, err := h.RouteList(eth0, netlink.FAMILY_V4)
	found = false
	for _, r := range routes {
		isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask))
		if gw, ok := netip.AddrFromSlice(r.Gw); ok && isDefault && gw.Unmap() == sub.gateway {
			found = true
		}
	}
	if err != nil || !found {
		problems = append(problems, fmt.Sprintf("no default route via %s", sub.gateway))
	}
	return problems
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// removeOrphanVeths deletes host veths named like ours on this manager's
// bridges that no lease accounts for.
func (m *Manager) removeOrphanVeths() error {
	bridges := map[int]bool{}
	for _, s := range m.subnets {
		if br, err := netlink.LinkByName(s.bridge); err == nil {
			bridges[br.Attrs().Index] = true
		}
	}
	if len(bridges) == 0 {
		return nil
	}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("network: list links: %w", err)
	}
	m.mu.Lock()
	known := map[string]bool{}
	for _, l := range m.leases {
		known[l.HostVeth] = true
	}
	m.mu.Unlock()
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		if !bridges[a.MasterIndex] || !hostVethRE.MatchString(a.Name) || known[a.Name] {
			continue
		}
		m.log.Info("removing veth no lease accounts for", "veth", a.Name)
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete orphan veth %s: %w", a.Name, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveUnusedBridges deletes the bridges (and NAT rules) of configured
// subnets that have no leases and no ports. Bridges are otherwise kept once
// created; tests and uninstall call this.
func (m *Manager) RemoveUnusedBridges(ctx context.Context) error {
	m.bridgeMu.Lock()
	defer m.bridgeMu.Unlock()
	m.mu.Lock()
	inUse := map[string]bool{}
	for _, l := range m.leases {
		inUse[l.Subnet] = true
	}
	m.mu.Unlock()

	var errs []error
	for _, name := range m.subnetNames() {
		if err := ctx.Err(); err != nil {
			return err
		}
		sub := m.subnets[name]
		if inUse[name] {
			continue
		}
		br, err := netlink.LinkByName(sub.bridge)
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		links, err := retryDump(netlink.LinkList)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ports := 0
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				ports++
			}
		}
		if ports > 0 {
			m.log.Warn("bridge has ports but no leases; keeping it", "bridge", sub.bridge, "ports", ports)
			continue
		}
		if err := netlink.LinkDel(br); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete bridge %s: %w", sub.bridge, err))
			continue
		}
		m.log.Info("deleted unused bridge", "subnet", name, "bridge", sub.bridge)
		if sub.NAT {
			if ipt, err := m.newIPTables(); err == nil {
				if err := ipt.DeleteIfExists("nat", "POSTROUTING", masqueradeRule(sub.Subnet, sub.bridge)...); err != nil {
					errs = append(errs, fmt.Errorf("network: delete MASQUERADE rule of subnet %q: %w", name, err))
				}
			}
		}
	}
	// The firewall goes with the last bridge; otherwise it follows the
	// leases.
	anyBridge := false
	for _, sub := range m.subnets {
		if linkExists(sub.bridge) {
			anyBridge = true
		}
	}
	if anyBridge || len(inUse) > 0 {
		if err := m.syncFirewall(); err != nil {
			errs = append(errs, err)
		}
	} else if err := m.removeFirewall(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fixMAC gives eth0 of a kept task the MAC the firewall expects when it
// still holds the task's address (tasks attached before the firewall had a
// random one); a sandbox that took the address (a micro-VM) is left alone.
func (m *Manager) fixMAC(l *lease) error {
	return withEth0(m.netnsPath(l.name()), func(h *netlink.Handle, eth0 netlink.Link) error {
		want := taskMAC(l.IP)
		if eth0.Attrs().HardwareAddr.String() == want.String() {
			return nil
		}
		addrs, _ := h.AddrList(eth0, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == l.IP {
				m.log.Info("giving eth0 the task's MAC", "task", l.TaskID, "from", eth0.Attrs().HardwareAddr, "to", want)
				if err := h.LinkSetHardwareAddr(eth0, want); err != nil {
					return fmt.Errorf("set eth0's MAC to %s: %v", want, err)
				}
				return nil
			}
		}
		return nil
	})
}

// withEth0 calls fn with a netlink handle in the task's namespace at
// nsPath and its eth0; a namespace or eth0 that is gone is no error (the
// task's repair is Attach's).
func withEth0(nsPath string, fn func(h *netlink.Handle, eth0 netlink.Link) error) error {
	if !isNetNS(nsPath) {
		return nil
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return nil
	}
	return fn(h, eth0)
}
