package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The firewall is two nftables tables named Manager.fwTable (one per state
// directory, so that several managers on a host never touch each other's
// rules), rebuilt whole, in one atomic transaction, from the configured
// subnets and the leases whenever either changes:
//
//   - table bridge <name>, chain prerouting (hook prerouting, priority
//     filter): frames entering a bridge from a task's veth must carry the
//     task's MAC and, for IPv4 and ARP, its address; anything else (IPv6,
//     VLAN tags, other ether types) is dropped. The tasks' identities are
//     elements of the table's sets (portSets), looked up by three rules. A
//     task's elements are in place before its veth exists; veths on the bridges that no lease accounts
//     for are deleted by Reconcile (meta ibrname, which would match them,
//     is not in every kernel);
//   - table inet <name>, chain input (hook input, priority filter): a task
//     reaches the host only for the services hostServices lists (DNS on its
//     gateway), for replies to connections the host opened, and for
//     connections the host's kube-proxy DNATed (Services, including the
//     `kubernetes` Service whose endpoint is the host's own address);
//   - table inet <name>, chain metadata (hook prerouting, priority
//     dstnat): TCP to MetadataAddr:80 from a bridge is DNATed to that
//     bridge's gateway, port MetadataPort (the agent's task metadata
//     endpoint, which knows the caller by its source address, held true
//     by the bridge rules below); chain input drops what reaches a
//     gateway's MetadataPort through any other interface, and a task's
//     own packets to it that were not DNATed fall to its bridge's drop;
//   - table inet <name>, chain forward (hook forward, priority filter):
//     tasks of one subnet do not reach tasks of another unless either lists
//     the other in Subnet.Peers (DNATed connections, i.e. Services, pass);
//   - with a fleet network (SetFleet), fleetInputRules and
//     fleetForwardRules: the tunnel takes packets from the peers only, a
//     task reaches no host of the fleet, no walled address, no task of a
//     subnet its own does not peer with on any host, and no host's tunnel
//     port.
//
// nftables base chains on one hook are independent: a drop here is final
// whatever other tables (kube-proxy's, Docker's) accept, and an accept here
// leaves the packet to them.

const ifnameLen = unix.IFNAMSIZ

// hostService is a port of the host a task may reach on its subnet's
// gateway.
type hostService struct {
	addr  netip.Addr
	proto byte // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	port  uint16
}

// hostServices lists what a task of sub may reach on its host: the DNS
// server on its gateway (vessel server's, internal/discovery), over UDP and
// TCP. This is the one place to open more. The task metadata endpoint is
// not listed: a task reaches it only as MetadataAddr:80, which chain
// metadata DNATs to the gateway's MetadataPort (metadataRules), and such
// packets pass as DNATed ones; the port itself is closed to everything
// else.
func hostServices(sub *subnetState) []hostService {
	return []hostService{
		{addr: sub.gateway, proto: unix.IPPROTO_UDP, port: 53},
		{addr: sub.gateway, proto: unix.IPPROTO_TCP, port: 53},
	}
}

// gatewayMAC is the MAC address of a subnet's bridge: taskMAC's
// convention with the gateway's address, which no task holds. Every host's
// bridge of a fleet subnet has the same one, as it has the same gateway
// (the bridges share no link).
func gatewayMAC(gw netip.Addr) net.HardwareAddr { return taskMAC(gw) }

func ifname(n string) []byte {
	b := make([]byte, ifnameLen)
	copy(b, n)
	return b
}

func metaIs(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

func payloadCmp(base expr.PayloadBase, off, n uint32, op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// ctBits matches when any of bits is set in the connection's state or
// status (native byte order, as nft does).
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	zero := []byte{0, 0, 0, 0}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: zero},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: zero},
	}
}

// ipsDstNAT is the conntrack status bit of a connection whose destination
// was rewritten (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func rule(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func verdict(v *expr.Verdict) []expr.Any { return []expr.Any{v} }

// firewallTables returns the manager's two tables.
func (m *Manager) firewallTables() (inet, bridge *nftables.Table) {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: m.fwTable},
		&nftables.Table{Family: nftables.TableFamilyBridge, Name: m.fwTable}
}

// portRule is a veth's expected identity on its bridge.
type portRule struct {
	veth string
	mac  net.HardwareAddr
	ip   netip.Addr
}

// reg32 is the first 4-byte register (NFT_REG32_00): a concatenation's
// parts are loaded into consecutive ones, each padded to a multiple of 4
// bytes, as the set's key is laid out.
const reg32 = 8

// The bridge table's sets of task identities (portSets' order).
const (
	portSetIPv4  = iota // veth . MAC . IPv4 address
	portSetARP          // veth . MAC . ARP sender MAC . ARP sender address
	portSetVeths        // the tasks' veths
)

// portSets returns the bridge table's sets of task identities.
func portSets(brt *nftables.Table) []*nftables.Set {
	ifn, mac, ip := nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr
	return []*nftables.Set{
		portSetIPv4:  {Table: brt, Name: "task_ipv4", Concatenation: true, KeyType: nftables.MustConcatSetType(ifn, mac, ip)},
		portSetARP:   {Table: brt, Name: "task_arp", Concatenation: true, KeyType: nftables.MustConcatSetType(ifn, mac, mac, ip)},
		portSetVeths: {Table: brt, Name: "task_veths", KeyType: ifn},
	}
}

// portKey is p's element of set i of portSets: the parts in the order of
// the set's type, each padded to a multiple of 4 bytes.
func portKey(set int, p portRule) []byte {
	mac := make([]byte, 8) // 6 bytes and 2 of padding
	copy(mac, p.mac)
	ip := p.ip.AsSlice()
	switch set {
	case portSetIPv4:
		return slices.Concat(ifname(p.veth), mac, ip)
	case portSetARP:
		return slices.Concat(ifname(p.veth), mac, mac, ip)
	default:
		return ifname(p.veth)
	}
}

// syncFirewall rebuilds the manager's tables from the subnets and the
// current leases in one transaction: there is no moment without rules.
func (m *Manager) syncFirewall() error {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	m.mu.Lock()
	var ports []portRule
	for _, l := range m.leases {
		ports = append(ports, portRule{veth: l.HostVeth, mac: taskMAC(l.IP), ip: l.IP})
	}
	fleet := m.fleet.cur
	m.mu.Unlock()
	slices.SortFunc(ports, func(a, b portRule) int { return strings.Compare(a.veth, b.veth) })
	subs := make([]*subnetState, 0, len(m.subnets))
	for _, n := range m.subnetNames() {
		subs = append(subs, m.subnets[n])
	}

	c, err := nftables.New(nftables.WithSockOptions(largeBuffers))
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	inet, brt := m.firewallTables()
	c.AddTable(inet)
	c.FlushTable(inet)
	c.AddTable(brt)
	c.FlushTable(brt)
	policy := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{Name: "input", Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	forward := c.AddChain(&nftables.Chain{Name: "forward", Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: brt, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &policy})
	add := func(ch *nftables.Chain, t *nftables.Table, e []expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
	}

	// The task metadata endpoint.
	meta := c.AddChain(&nftables.Chain{Name: "metadata", Table: inet, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	for _, s := range subs {
		dnat, guard := metadataRules(s)
		add(meta, inet, dnat)
		add(input, inet, guard)
	}

	// Task to host.
	ipv4 := metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4})
	for _, s := range subs {
		in := metaIs(expr.MetaKeyIIFNAME, ifname(s.bridge))
		add(input, inet, rule(in, ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(accept)))
		add(input, inet, rule(in, ctBits(expr.CtKeySTATUS, ipsDstNAT), verdict(accept)))
		for _, hs := range hostServices(s) {
			add(input, inet, rule(in, ipv4,
				payloadCmp(expr.PayloadBaseNetworkHeader, 16, 4, expr.CmpOpEq, hs.addr.AsSlice()),
				metaIs(expr.MetaKeyL4PROTO, []byte{hs.proto}),
				payloadCmp(expr.PayloadBaseTransportHeader, 2, 2, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(hs.port)),
				verdict(accept)))
		}
		add(input, inet, rule(in, verdict(drop)))
	}
	// Other hosts to this one.
	if fleet != nil {
		for _, e := range m.fleetInputRules(fleet) {
			add(input, inet, e)
		}
	}

	// Tasks to other hosts, and tasks across hosts.
	if fleet != nil {
		for _, e := range m.fleetForwardRules(fleet, subs) {
			add(forward, inet, e)
		}
	}

	// Task to task across subnets.
	for _, s := range subs {
		for _, o := range subs {
			if s == o || m.peers(s.Name, o.Name) {
				continue
			}
			between := rule(metaIs(expr.MetaKeyIIFNAME, ifname(s.bridge)), metaIs(expr.MetaKeyOIFNAME, ifname(o.bridge)))
			add(forward, inet, rule(between, ctBits(expr.CtKeySTATUS, ipsDstNAT), verdict(accept)))
			add(forward, inet, rule(between, ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(accept)))
			add(forward, inet, rule(between, verdict(drop)))
		}
	}

	// No spoofing on the bridges. Each task's identity is an element of
	// the bridge table's sets (portSets), so that the chain is three
	// rules whatever the number of tasks: a frame is one hash lookup, and
	// a rebuild writes three small elements per task, not seven rules.
	sets := portSets(brt)
	for i, set := range sets {
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("network: nftables set %s: %w", set.Name, err)
		}
		c.FlushSet(set)
		var elems []nftables.SetElement
		for _, p := range ports {
			elems = append(elems, nftables.SetElement{Key: portKey(i, p)})
		}
		if len(elems) > 0 {
			if err := c.SetAddElements(set, elems); err != nil {
				return fmt.Errorf("network: nftables set %s: %w", set.Name, err)
			}
		}
	}
	etherType := func(t uint16) []expr.Any {
		return payloadCmp(expr.PayloadBaseLLHeader, 12, 2, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(t))
	}
	lookup := func(set *nftables.Set) *expr.Lookup {
		return &expr.Lookup{SourceRegister: reg32, SetName: set.Name, SetID: set.ID}
	}
	iif := &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg32}
	// IPv4 from the veth's task: veth . ether saddr . ip saddr.
	add(pre, brt, rule(etherType(unix.ETH_P_IP), []expr.Any{iif,
		&expr.Payload{DestRegister: reg32 + 4, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Payload{DestRegister: reg32 + 6, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		lookup(sets[portSetIPv4])}, verdict(accept)))
	// ARP from the veth's task: veth . ether saddr . sender MAC . sender
	// address.
	add(pre, brt, rule(etherType(unix.ETH_P_ARP), []expr.Any{iif,
		&expr.Payload{DestRegister: reg32 + 4, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Payload{DestRegister: reg32 + 6, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6},
		&expr.Payload{DestRegister: reg32 + 8, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
		lookup(sets[portSetARP])}, verdict(accept)))
	// Anything else from a task's veth: another identity, IPv6 (Vessel
	// gives tasks none), VLAN tags, other ether types.
	add(pre, brt, rule([]expr.Any{iif, lookup(sets[portSetVeths])}, verdict(drop)))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("network: install nftables rules (table %s): %w", m.fwTable, err)
	}
	return nil
}

// removeFirewall deletes the manager's tables; missing ones are fine.
func (m *Manager) removeFirewall() error {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	inet, brt := m.firewallTables()
	var errs []error
	for _, t := range []*nftables.Table{inet, brt} {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("network: delete nftables table %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// firewallEntries counts the rules and set elements in the manager's
// tables (tests).
func (m *Manager) firewallEntries() (int, error) {
	c, err := nftables.New()
	if err != nil {
		return 0, err
	}
	inet, brt := m.firewallTables()
	n := 0
	for _, t := range []*nftables.Table{inet, brt} {
		chains, err := c.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return 0, err
		}
		for _, ch := range chains {
			if ch.Table.Name != t.Name {
				continue
			}
			rs, err := c.GetRules(t, ch)
			if err != nil {
				return 0, err
			}
			n += len(rs)
		}
		sets, err := c.GetSets(t)
		if err != nil {
			return 0, err
		}
		for _, set := range sets {
			elems, err := c.GetSetElements(set)
			if err != nil {
				return 0, err
			}
			n += len(elems)
		}
	}
	return n, nil
}

// largeBuffers gives a netlink socket room for a large transaction and
// the kernel's answer to every message of it: one acknowledgement per
// rule, and a host with many tasks has many rules. With the default
// buffers the batch is refused (EMSGSIZE) or acknowledgements are dropped
// (ENOBUFS) beyond a few hundred tasks. Root may force buffers beyond
// net.core.[rw]mem_max; elsewhere the socket gets what the host allows.
func largeBuffers(c *netlink.Conn) error {
	const size = 64 << 20
	rc, err := c.SyscallConn()
	if err != nil {
		return errors.Join(c.SetReadBuffer(size), c.SetWriteBuffer(size))
	}
	var rerr, werr error
	if err := rc.Control(func(fd uintptr) {
		rerr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		werr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	}); err != nil {
		return err
	}
	if rerr != nil {
		rerr = c.SetReadBuffer(size)
	}
	if werr != nil {
		werr = c.SetWriteBuffer(size)
	}
	return errors.Join(rerr, werr)
}

// metaNot matches when the meta key is not data.
func metaNot(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data},
	}
}

// ipIn matches an IPv4 packet whose address at off (12 source, 16
// destination) is in p.
func ipIn(off uint32, p netip.Prefix) []expr.Any {
	return rule(metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}), ipCmp(off, p, expr.CmpOpEq))
}

// ipCmp compares the IPv4 address at off with prefix p (the packet must be
// known to be IPv4).
func ipCmp(off uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	if p.Bits() == 32 {
		return payloadCmp(expr.PayloadBaseNetworkHeader, off, 4, op, p.Addr().AsSlice())
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

const (
	ipSrc = 12
	ipDst = 16
)

func udpDport(port int) []expr.Any {
	return rule(metaIs(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_UDP}),
		payloadCmp(expr.PayloadBaseTransportHeader, 2, 2, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(uint16(port))))
}

// repliesAndServices accepts replies to allowed connections and what
// kube-proxy DNATed (Services), as the rules between subnets do.
func repliesAndServices(match []expr.Any) [][]expr.Any {
	return [][]expr.Any{
		rule(match, ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(accept)),
		rule(match, ctBits(expr.CtKeySTATUS, ipsDstNAT), verdict(accept)),
	}
}

// fleetInputRules guard this host from the rest of the fleet (chain
// input, after the rules of its own bridges):
//
//   - VXLAN packets (UDP to the fleet's port) are taken only from the
//     peers' addresses: nobody else injects frames into the tunnel;
//   - nothing that comes out of the tunnel reaches the host but replies;
//   - a task of another host (a source in a fleet subnet, not from this
//     host's own bridges, which are handled before) reaches the host only
//     with replies and Services.
func (m *Manager) fleetInputRules(f *fleetState) [][]expr.Any {
	var out [][]expr.Any
	if f.Backend == FleetVXLAN {
		for _, p := range f.Peers {
			out = append(out, rule(ipIn(ipSrc, netip.PrefixFrom(p.Address, 32)), udpDport(f.Port), verdict(accept)))
		}
		out = append(out, rule(metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}), udpDport(f.Port), verdict(drop)))
		vx := metaIs(expr.MetaKeyIIFNAME, ifname(vxlanName(m.stateDir)))
		out = append(out, repliesAndServices(vx)...)
		out = append(out, rule(vx, verdict(drop)))
	}
	notLo := metaNot(expr.MetaKeyIIFNAME, ifname("lo"))
	for _, s := range f.Subnets {
		from := rule(notLo, ipIn(ipSrc, s.CIDR))
		out = append(out, repliesAndServices(from)...)
		out = append(out, rule(from, verdict(drop)))
	}
	return out
}

// fleetForwardRules are the boundary of tasks across hosts (chain
// forward, before the rules between local subnets):
//
//   - a task's packets to the fleet's VXLAN port are dropped, whatever
//     their destination: a task cannot forge tunnel traffic, not even
//     masqueraded to its host's (a peer's) address;
//   - a task reaches no host of the fleet (the walled addresses), nor a
//     task of a fleet subnet its own does not peer with, in either
//     direction (a task of another host arriving here is checked again);
//     replies and Services pass;
//   - beyond these, a task's packets are routed as the host routes them
//     (a subnet without NAT reaches what the host routes it to, such as a
//     Kubernetes node's pod network, as on a host outside a fleet);
//   - what comes out of the tunnel goes only to this host's bridges;
//   - TCP's MSS into the tunnel is clamped to its MTU.
func (m *Manager) fleetForwardRules(f *fleetState, subs []*subnetState) [][]expr.Any {
	var out [][]expr.Any
	vxName := ifname(vxlanName(m.stateDir))
	if f.Backend == FleetVXLAN {
		out = append(out, rule(metaIs(expr.MetaKeyOIFNAME, vxName), metaIs(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}),
			payloadCmp(expr.PayloadBaseTransportHeader, 13, 1, expr.CmpOpEq, []byte{0x02}), // flags: SYN alone
			[]expr.Any{
				&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
				&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
			}))
		out = append(out, rule(metaIs(expr.MetaKeyOIFNAME, vxName), metaIs(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}),
			payloadCmp(expr.PayloadBaseTransportHeader, 13, 1, expr.CmpOpEq, []byte{0x12}), // SYN+ACK
			[]expr.Any{
				&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
				&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
			}))
		fromTunnel := metaIs(expr.MetaKeyIIFNAME, vxName)
		for _, s := range subs {
			fromTunnel = rule(fromTunnel, metaNot(expr.MetaKeyOIFNAME, ifname(s.bridge)))
		}
		out = append(out, rule(fromTunnel, verdict(drop)))
	}
	walled := f.walled()
	for _, s := range subs {
		in := metaIs(expr.MetaKeyIIFNAME, ifname(s.bridge))
		if f.Backend == FleetVXLAN {
			out = append(out, rule(in, udpDport(f.Port), verdict(drop)))
		}
		out = append(out, repliesAndServices(in)...)
		for _, a := range walled {
			out = append(out, rule(in, ipIn(ipDst, netip.PrefixFrom(a, 32)), verdict(drop)))
		}
		for _, x := range f.Subnets {
			if !m.subnetPeers(f, s.Name, x.Name) {
				out = append(out, rule(in, ipIn(ipDst, x.CIDR), verdict(drop)))
			}
		}
		toTask := metaIs(expr.MetaKeyOIFNAME, ifname(s.bridge))
		out = append(out, repliesAndServices(toTask)...)
		for _, x := range f.Subnets {
			if !m.subnetPeers(f, s.Name, x.Name) {
				out = append(out, rule(toTask, ipIn(ipSrc, x.CIDR), verdict(drop)))
			}
		}
	}
	return out
}

// tcpTo matches an IPv4 TCP packet to addr:port.
func tcpTo(addr netip.Addr, port uint16) []expr.Any {
	return rule(metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}),
		payloadCmp(expr.PayloadBaseNetworkHeader, ipDst, 4, expr.CmpOpEq, addr.AsSlice()),
		metaIs(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}),
		payloadCmp(expr.PayloadBaseTransportHeader, 2, 2, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(port)))
}

// metadataRules are sub's rules for the task metadata endpoint: dnat (chain
// metadata) sends its tasks' TCP to MetadataAddr:80 to the gateway's
// MetadataPort; guard (chain input) drops what reaches that port from any
// interface but the subnet's bridge (another subnet's, the tunnel, the
// host's own uplinks, loopback), so that only this subnet's tasks, whose
// source addresses the bridge rules hold true, ever reach it.
func metadataRules(sub *subnetState) (dnat, guard []expr.Any) {
	dnat = rule(metaIs(expr.MetaKeyIIFNAME, ifname(sub.bridge)), tcpTo(MetadataAddr, 80),
		[]expr.Any{
			&expr.Immediate{Register: 1, Data: sub.gateway.AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(MetadataPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		})
	guard = rule(metaNot(expr.MetaKeyIIFNAME, ifname(sub.bridge)), tcpTo(sub.gateway, MetadataPort), verdict(drop))
	return dnat, guard
}
