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
//     VLAN tags, other ether types) is dropped. A task's rules are in place
//     before its veth exists; veths on the bridges that no lease accounts
//     for are deleted by Reconcile (meta ibrname, which would match them,
//     is not in every kernel);
//   - table inet <name>, chain input (hook input, priority filter): a task
//     reaches the host only for the services hostServices lists (DNS on its
//     gateway), for replies to connections the host opened, and for
//     connections the host's kube-proxy DNATed (Services, including the
//     `kubernetes` Service whose endpoint is the host's own address);
//   - table inet <name>, chain forward (hook forward, priority filter):
//     tasks of one subnet do not reach tasks of another unless either lists
//     the other in Subnet.Peers (DNATed connections, i.e. Services, pass).
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
// TCP. This is the one place to open more: the task metadata endpoint
// (169.254.170.2:80, ECS's) goes here when it exists.
func hostServices(sub *subnetState) []hostService {
	return []hostService{
		{addr: sub.gateway, proto: unix.IPPROTO_UDP, port: 53},
		{addr: sub.gateway, proto: unix.IPPROTO_TCP, port: 53},
	}
}

// taskMAC is the MAC address eth0 of a task gets: 0a:58 and the IPv4
// address (the convention of the CNI bridge plugin), so that the firewall
// derives it from the lease. The micro-VM runtime hands eth0's MAC to the
// guest's NIC, so the guest's frames carry it too.
func taskMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

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

	// No spoofing on the bridges.
	etherType := func(t uint16) []expr.Any {
		return payloadCmp(expr.PayloadBaseLLHeader, 12, 2, expr.CmpOpEq, binaryutil.BigEndian.PutUint16(t))
	}
	for _, p := range ports {
		in := metaIs(expr.MetaKeyIIFNAME, ifname(p.veth))
		ip := p.ip.AsSlice()
		add(pre, brt, rule(in, payloadCmp(expr.PayloadBaseLLHeader, 6, 6, expr.CmpOpNeq, p.mac), verdict(drop)))
		add(pre, brt, rule(in, etherType(unix.ETH_P_IP), payloadCmp(expr.PayloadBaseNetworkHeader, 12, 4, expr.CmpOpNeq, ip), verdict(drop)))
		add(pre, brt, rule(in, etherType(unix.ETH_P_IP), verdict(accept)))
		add(pre, brt, rule(in, etherType(unix.ETH_P_ARP), payloadCmp(expr.PayloadBaseNetworkHeader, 8, 6, expr.CmpOpNeq, p.mac), verdict(drop)))
		add(pre, brt, rule(in, etherType(unix.ETH_P_ARP), payloadCmp(expr.PayloadBaseNetworkHeader, 14, 4, expr.CmpOpNeq, ip), verdict(drop)))
		add(pre, brt, rule(in, etherType(unix.ETH_P_ARP), verdict(accept)))
		add(pre, brt, rule(in, verdict(drop))) // IPv6 (Vessel gives tasks none), VLAN tags, anything else
	}
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

// firewallRules counts the rules in the manager's tables (tests).
func (m *Manager) firewallRules() (int, error) {
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
