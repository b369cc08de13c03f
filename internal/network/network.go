package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// Subnet is a range of task addresses on the host, bridged together.
type Subnet struct {
	// Name identifies the subnet, e.g. "subnet-default".
	Name string
	// CIDR is an IPv4 prefix of length 8 to 30; its first usable address is
	// the gateway (on the host's bridge), the rest go to tasks.
	CIDR netip.Prefix
	// Slice is this host's share of CIDR in a fleet (the control plane
	// gives each host one): its tasks' addresses come from it alone, but
	// for its network and broadcast addresses and the gateway. The bridge
	// still carries the gateway with CIDR's prefix length, the same on
	// every host; a task gets its address with Slice's prefix length and
	// an on-link default route to the gateway, so that its traffic to
	// other hosts' slices goes through this host. The zero Prefix means
	// the whole CIDR (a host alone).
	Slice netip.Prefix
	// NAT masquerades the subnet's traffic leaving the host through any
	// interface but its bridge. Off by default.
	NAT bool
	// Peers names the other subnets whose tasks this subnet's tasks may
	// reach, and be reached by, through the host. Tasks of different
	// subnets are otherwise cut off from each other (Services that
	// kube-proxy DNATs still pass). One side listing the other is enough.
	Peers []string
}

// The task metadata endpoint, ECS's: a task asks MetadataAddr, port 80; its
// host's firewall sends that to the gateway of the task's subnet, port
// MetadataPort, where the host agent listens (MetadataListen).
var MetadataAddr = netip.AddrFrom4([4]byte{169, 254, 170, 2})

// MetadataPort is the port of each gateway the metadata endpoint's
// connections are sent to (the port the ECS agent serves it on).
const MetadataPort = 51679

// MetadataListen lists the addresses the task metadata endpoint listens
// on: each subnet's gateway, port MetadataPort. A gateway appears with its
// subnet's first task, so listeners need IP_FREEBIND. Only the subnet's
// own tasks reach it (firewall_linux.go), each known by its address
// (LookupIP).
func (m *Manager) MetadataListen() []netip.AddrPort {
	var out []netip.AddrPort
	for _, n := range m.subnetNames() {
		out = append(out, netip.AddrPortFrom(m.subnets[n].gateway, MetadataPort))
	}
	return out
}

// LookupIP returns the ID of the task attached here with address ip.
func (m *Manager) LookupIP(ip netip.Addr) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, l := range m.leases {
		if l.Attached && l.IP == ip {
			return id, true
		}
	}
	return "", false
}

// taskMAC is the MAC address eth0 of a task gets: 0a:58 and the IPv4
// address (the convention of the CNI bridge plugin), so that the firewall
// derives it from the lease. The micro-VM runtime hands eth0's MAC to the
// guest's NIC, so the guest's frames carry it too.
func taskMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

// Config configures a Manager.
type Config struct {
	// StateDir holds leases, namespaces and /etc files, e.g.
	// <data-dir>/network. Required.
	StateDir string
	// Subnets that tasks may attach to. Names and CIDRs must not repeat or
	// overlap.
	Subnets []Subnet
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// DNSServers are written to each task's resolv.conf. When empty, the
	// host's non-loopback nameservers are used, and if it has none, the
	// subnet's gateway (a DNS server listening there is not part of this
	// package yet).
	DNSServers []string
	// SearchDomains are written to each task's resolv.conf.
	SearchDomains []string
	// GatewayDNS says a DNS server answers on each subnet's gateway, port
	// 53 (vessel server's, internal/discovery): a task whose own DNS names
	// no nameservers gets its subnet's gateway. Tasks without DNS of their
	// own are unaffected.
	GatewayDNS bool
}

// Attachment is a task's place on a subnet. Values returned are copies the
// caller owns.
type Attachment struct {
	TaskID string
	Subnet string
	// IP is the task's address, Prefix the subnet's CIDR.
	IP      netip.Addr
	Prefix  netip.Prefix
	Gateway netip.Addr
	// NetNSPath is the bind-mounted network namespace to run the task in.
	NetNSPath string
	// HostVeth is the host side of the task's veth pair, a port of the bridge.
	HostVeth string
	// MAC is eth0's address in the task's namespace.
	MAC      string
	Hostname string
	// EtcDir holds hosts, hostname and resolv.conf for bind-mounting.
	EtcDir string
}

// AttachOptions are a task's wishes for its attachment.
type AttachOptions struct {
	// Hostname defaults to "ip-a-b-c-d".
	Hostname string
	// Domain, when set, is the domain of the task's fully qualified name,
	// <Hostname>.<Domain>, which /etc/hosts gives its address first, the
	// hostname after it, as a kubelet does for a pod with a subdomain
	// (<subdomain>.<namespace>.svc.<cluster domain>). It needs Hostname.
	Domain string
	// DNS, when set, is the task's resolv.conf instead of the manager's
	// (Config.DNSServers and SearchDomains, or the host's resolvers).
	DNS *DNS
}

// DNS is a task's own resolver configuration.
type DNS struct {
	// Nameservers are IP addresses. Empty gives the subnet's gateway with
	// Config.GatewayDNS, else the manager's nameservers.
	Nameservers []string
	// Searches are search domains, Options resolv.conf options ("ndots:5").
	Searches []string
	Options  []string
}

// Manager attaches tasks to subnets. Its methods are safe for concurrent
// use; Attach and Detach of different tasks run concurrently, those of one
// task one after the other.
type Manager struct {
	log       *slog.Logger
	stateDir  string
	leasePath string
	netnsDir  string
	etcDir    string
	subnets   map[string]*subnetState
	dns       []netip.Addr
	search    []string
	gwDNS     bool

	mu     sync.Mutex // guards leases, last, closed and writes of leasePath
	leases map[string]*lease
	last   map[string]netip.Addr // last address handed out, per subnet
	closed bool

	taskMu   [64]sync.Mutex // striped by task ID
	bridgeMu sync.Mutex     // serializes bridge and NAT setup

	fwTable string     // the nftables tables' name (firewall_linux.go)
	fwMu    sync.Mutex // serializes firewall rebuilds

	fleet fleetData // the network between hosts (fleet.go)

	// Seams for tests.
	hostResolvConf   string
	newIPTables      func() (iptablesAPI, error)
	enableForwarding func() error
}

type subnetState struct {
	Subnet
	bridge  string
	gateway netip.Addr
	// slice is where task addresses come from: Subnet.Slice, or CIDR.
	slice netip.Prefix
}

// Open validates cfg, creates StateDir and loads the leases. It creates
// nothing else on the host; bridges appear with the first Attach.
func Open(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" {
		return nil, errdefs.InvalidArgument("network: Config.StateDir is required (e.g. <data-dir>/network)")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, errdefs.InvalidArgument("network: StateDir %q: %v", cfg.StateDir, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		log:              log.With("component", "network"),
		stateDir:         dir,
		leasePath:        filepath.Join(dir, "leases.json"),
		netnsDir:         filepath.Join(dir, "netns"),
		etcDir:           filepath.Join(dir, "etc"),
		subnets:          map[string]*subnetState{},
		fwTable:          firewallTableName(dir),
		gwDNS:            cfg.GatewayDNS,
		hostResolvConf:   "/etc/resolv.conf",
		newIPTables:      newIPTables,
		enableForwarding: enableIPv4Forwarding,
	}
	bridges := map[string]string{}
	for _, s := range cfg.Subnets {
		st, err := checkSubnet(s)
		if err != nil {
			return nil, err
		}
		if _, dup := m.subnets[s.Name]; dup {
			return nil, errdefs.InvalidArgument("network: subnet name %q is configured twice; names must be unique", s.Name)
		}
		for _, o := range m.subnets {
			if o.CIDR.Overlaps(s.CIDR) {
				return nil, errdefs.InvalidArgument("network: subnet %q (%s) overlaps subnet %q (%s); CIDRs must be disjoint", s.Name, s.CIDR, o.Name, o.CIDR)
			}
		}
		if other, dup := bridges[st.bridge]; dup {
			return nil, errdefs.InvalidArgument("network: subnets %q and %q hash to the same bridge name %s; rename one", other, s.Name, st.bridge)
		}
		bridges[st.bridge] = s.Name
		m.subnets[s.Name] = st
	}
	for _, s := range m.subnets {
		for _, p := range s.Peers {
			if _, ok := m.subnets[p]; !ok || p == s.Name {
				return nil, errdefs.InvalidArgument("network: subnet %q: peer %q is not another configured subnet; configured subnets: %s", s.Name, p, strings.Join(m.subnetNames(), ", "))
			}
		}
	}
	for _, d := range cfg.DNSServers {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil {
			return nil, errdefs.InvalidArgument("network: DNS server %q is not an IP address", d)
		}
		m.dns = append(m.dns, a)
	}
	for _, d := range cfg.SearchDomains {
		if !validDNSName(d) {
			return nil, errdefs.InvalidArgument("network: search domain %q is not a valid DNS name", d)
		}
		m.search = append(m.search, d)
	}
	for _, d := range []string{dir, m.netnsDir, m.etcDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("network: create state directory: %w", err)
		}
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	var outside []string
	for id, l := range m.leases {
		sub, ok := m.subnets[l.Subnet]
		if !ok {
			m.log.Warn("lease on a subnet that is no longer configured; Reconcile will report or free it",
				"task", id, "subnet", l.Subnet, "ip", l.IP)
			continue
		}
		if !sub.slice.Contains(l.IP) {
			outside = append(outside, fmt.Sprintf("task %s holds %s in subnet %q", id, l.IP, l.Subnet))
		}
	}
	if len(outside) > 0 {
		slices.Sort(outside)
		return nil, errdefs.Conflict("network: %s lie outside this host's slice (%s): the addresses were leased from another slice, which another host may be given now; "+
			"refusing to hand out addresses that could be held twice. Restore the slice this host had (the control plane's records), "+
			"or stop those tasks' sandboxes and move %s away",
			strings.Join(outside, "; "), m.sliceList(), m.leasePath)
	}
	return m, nil
}

func checkSubnet(s Subnet) (*subnetState, error) {
	if s.Name == "" {
		return nil, errdefs.InvalidArgument("network: a subnet has no name (e.g. \"subnet-default\")")
	}
	if !s.CIDR.IsValid() || !s.CIDR.Addr().Is4() {
		return nil, errdefs.InvalidArgument("network: subnet %q: CIDR %v is not an IPv4 prefix such as 10.89.0.0/16", s.Name, s.CIDR)
	}
	if s.CIDR.Bits() < 8 || s.CIDR.Bits() > 30 {
		return nil, errdefs.InvalidArgument("network: subnet %q: prefix length /%d is not accepted; use /8 to /30", s.Name, s.CIDR.Bits())
	}
	if s.CIDR != s.CIDR.Masked() {
		return nil, errdefs.InvalidArgument("network: subnet %q: CIDR %s has host bits set; use %s", s.Name, s.CIDR, s.CIDR.Masked())
	}
	st := &subnetState{Subnet: s, bridge: bridgeName(s), gateway: s.CIDR.Addr().Next(), slice: s.CIDR}
	if s.Slice.IsValid() {
		if !s.Slice.Addr().Is4() || s.Slice.Bits() < s.CIDR.Bits() || !s.CIDR.Contains(s.Slice.Addr()) || s.Slice != s.Slice.Masked() {
			return nil, errdefs.InvalidArgument("network: subnet %q: slice %s is not a prefix inside %s; give one such as %s",
				s.Name, s.Slice, s.CIDR, netip.PrefixFrom(s.CIDR.Addr(), min(s.CIDR.Bits()+8, 30)))
		}
		st.slice = s.Slice
		if usableCount(st.slice, st.gateway) == 0 {
			return nil, errdefs.InvalidArgument("network: subnet %q: slice %s leaves no address for tasks; use a slice of /30 or larger", s.Name, s.Slice)
		}
	}
	return st, nil
}

// sliceList says which slice each configured subnet hands out.
func (m *Manager) sliceList() string {
	var out []string
	for _, n := range m.subnetNames() {
		out = append(out, n+" "+m.subnets[n].slice.String())
	}
	return strings.Join(out, ", ")
}

// firewallTableName names the nftables tables of the manager with state
// directory dir: "vessel-" and 8 hex digits of a hash of dir.
func firewallTableName(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "vessel-" + hex.EncodeToString(h[:])[:8]
}

// peers reports whether tasks of subnets a and b may reach each other.
func (m *Manager) peers(a, b string) bool {
	return slices.Contains(m.subnets[a].Peers, b) || slices.Contains(m.subnets[b].Peers, a)
}

// hasPeers reports whether subnet name is a peer of any other.
func (m *Manager) hasPeers(name string) bool {
	for o := range m.subnets {
		if o != name && m.peers(name, o) {
			return true
		}
	}
	return false
}

// bridgeName derives the subnet's bridge name: "vsl-" and 11 hex digits of a
// hash of its name and CIDR (15 characters, the kernel's limit).
func bridgeName(s Subnet) string {
	h := sha256.Sum256([]byte(s.Name + "\x00" + s.CIDR.String()))
	return "vsl-" + hex.EncodeToString(h[:])[:11]
}

var taskIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkTaskID(id string) error {
	if !taskIDRE.MatchString(id) {
		return errdefs.InvalidArgument("network: task ID %q is not accepted; use 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit", id)
	}
	return nil
}

// MaxHostname is the longest hostname a sandbox takes: the kernel's UTS
// name holds 64 bytes (a kubelet cuts a pod's hostname to 63, and gives
// a pod a fully qualified one of up to 64 with setHostnameAsFQDN).
const MaxHostname = 64

// CheckHostname checks a sandbox's hostname: a DNS name (validDNSName) of
// at most MaxHostname characters. Every hostname a task or pod is given
// is checked here (task.New, the bridge, Attach and Rekey), so that a
// name the network would refuse is refused when the task is made.
func CheckHostname(h string) error {
	if len(h) > MaxHostname || !validDNSName(h) {
		return errdefs.InvalidArgument("hostname %q is not accepted: use at most %d characters, labels of letters, digits and '-' (not at a label's start or end) separated by single dots", h, MaxHostname)
	}
	return nil
}

// checkNames checks o's hostname and domain (errors of kind
// errdefs.ErrInvalidArgument).
func (o AttachOptions) checkNames() error {
	if o.Hostname != "" {
		if err := CheckHostname(o.Hostname); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	if err := CheckDomain(o.Hostname, o.Domain); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// CheckDomain checks the domain of a sandbox's fully qualified name
// (AttachOptions.Domain): empty, or with a hostname that, with it, makes
// a DNS name (validDNSName). Errors are of kind
// errdefs.ErrInvalidArgument.
func CheckDomain(hostname, domain string) error {
	if domain == "" {
		return nil
	}
	if hostname == "" {
		return errdefs.InvalidArgument("domain %q needs a hostname to qualify; give one", domain)
	}
	if !validDNSName(hostname + "." + domain) {
		return errdefs.InvalidArgument("%q is not a DNS name of at most 253 characters: use labels of letters, digits and '-' separated by single dots", hostname+"."+domain)
	}
	return nil
}

// validDNSName reports whether h is a DNS name: at most 253 characters, in
// labels of 1-63 letters, digits and '-', neither beginning nor ending
// with '-'.
func validDNSName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// defaultHostname is Fargate's style: ip-10-89-0-2.
func defaultHostname(ip netip.Addr) string {
	return "ip-" + strings.ReplaceAll(ip.String(), ".", "-")
}

func (m *Manager) lockTask(id string) func() {
	mu := &m.taskMu[m.taskStripe(id)]
	mu.Lock()
	return mu.Unlock
}

// taskStripe is the index of the stripe of taskMu that guards task id.
func (m *Manager) taskStripe(id string) int {
	h := fnv.New32a()
	io.WriteString(h, id)
	return int(h.Sum32() % uint32(len(m.taskMu)))
}

func (m *Manager) netnsPath(taskID string) string { return filepath.Join(m.netnsDir, taskID) }
func (m *Manager) etcPath(taskID string) string   { return filepath.Join(m.etcDir, taskID) }

func (m *Manager) attachment(l *lease) *Attachment {
	a := &Attachment{
		TaskID:    l.TaskID,
		Subnet:    l.Subnet,
		IP:        l.IP,
		Prefix:    l.CIDR,
		Gateway:   l.CIDR.Addr().Next(),
		NetNSPath: m.netnsPath(l.name()),
		HostVeth:  l.HostVeth,
		MAC:       taskMAC(l.IP).String(),
		Hostname:  l.Hostname,
		EtcDir:    m.etcPath(l.name()),
	}
	return a
}

func (m *Manager) errClosed() error {
	return errdefs.Unavailable("network: manager is closed")
}

// Attach gives taskID an address on subnet, a network namespace wired to the
// subnet's bridge and /etc files, and returns them. It blocks while it sets
// them up (tens of milliseconds). o.Hostname defaults to "ip-a-b-c-d"; o.DNS
// replaces the manager's resolv.conf for this task.
//
// Attach is idempotent per task: a second call returns the existing
// attachment (ErrConflict if it names another subnet or hostname). If the
// existing attachment is found broken (say, its veth was deleted), Attach
// rebuilds the missing pieces with the same address, keeping the namespace
// if it still exists.
//
// The lease is written to disk before the address is used. An unknown subnet
// gives ErrNotFound, a full one ErrLimitExceeded. If Attach fails, nothing is
// left behind, not even the lease (ctx is checked between steps).
func (m *Manager) Attach(ctx context.Context, taskID, subnet string, o AttachOptions) (*Attachment, error) {
	if err := checkTaskID(taskID); err != nil {
		return nil, err
	}
	hostname := o.Hostname
	if err := o.checkNames(); err != nil {
		return nil, err
	}
	rc, err := checkDNS(o.DNS)
	if err != nil {
		return nil, err
	}
	sub, ok := m.subnets[subnet]
	if !ok {
		return nil, errdefs.NotFound("network: subnet %q is not configured; configured subnets: %s", subnet, strings.Join(m.subnetNames(), ", "))
	}
	unlock := m.lockTask(taskID)
	defer unlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, m.errClosed()
	}
	var existing *lease
	if l, ok := m.leases[taskID]; ok {
		c := *l
		existing = &c
	}
	m.mu.Unlock()

	if existing != nil {
		if existing.Subnet != subnet {
			return nil, errdefs.Conflict("network: task %s is already attached to subnet %q; detach it before attaching it to %q", taskID, existing.Subnet, subnet)
		}
		if hostname != "" && hostname != existing.Hostname {
			return nil, errdefs.Conflict("network: task %s is already attached with hostname %q, not %q", taskID, existing.Hostname, hostname)
		}
		if o.Domain != existing.Domain {
			return nil, errdefs.Conflict("network: task %s is already attached with domain %q, not %q", taskID, existing.Domain, o.Domain)
		}
		if existing.Attached {
			problems := m.verify(existing)
			if len(problems) == 0 {
				return m.attachment(existing), nil
			}
			m.log.Warn("attachment is broken; rebuilding it", "task", taskID, "ip", existing.IP, "problems", problems)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	br, err := m.ensureSubnet(sub)
	if err != nil {
		return nil, err
	}

	l := existing
	if l == nil {
		if l, err = m.allocate(sub, taskID, hostname, o.Domain); err != nil {
			return nil, err
		}
	}

	fail := func(err error) (*Attachment, error) {
		if terr := m.teardown(l.name(), l.HostVeth); terr != nil {
			m.log.Error("cleaning up after failed attach", "task", taskID, "err", terr)
			return nil, errors.Join(err, terr)
		}
		if rerr := m.release(taskID); rerr != nil {
			m.log.Error("releasing lease after failed attach", "task", taskID, "err", rerr)
		}
		if ferr := m.syncFirewall(); ferr != nil {
			m.log.Error("removing firewall rules after failed attach", "task", taskID, "err", ferr)
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// The task's rules are in place before its veth exists.
	if err := m.syncFirewall(); err != nil {
		return fail(fmt.Errorf("network: attach task %s: %w", taskID, err))
	}
	if err := m.plumb(l, sub, br); err != nil {
		return fail(fmt.Errorf("network: attach task %s: %w", taskID, err))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	switch {
	case rc.nameservers != nil:
	case o.DNS != nil && m.gwDNS:
		rc.nameservers = []netip.Addr{sub.gateway}
	default:
		rc.nameservers = m.nameservers(sub)
	}
	if o.DNS == nil {
		rc.search = m.search
	}
	if err := writeEtcFiles(m.etcPath(l.name()), l.IP, l.Hostname, l.Domain, rc); err != nil {
		return fail(fmt.Errorf("network: attach task %s: %w", taskID, err))
	}
	if err := m.markAttached(taskID); err != nil {
		return fail(err)
	}
	m.log.Info("task attached", "task", taskID, "subnet", subnet, "ip", l.IP, "veth", l.HostVeth)
	l.Attached = true
	return m.attachment(l), nil
}

// Rekey moves the attachment of fromID to toID: from then on its lease and
// its record belong to toID (Get, LookupIP, Detach, Reconcile's keep know
// it by toID alone), written durably before Rekey returns, so that an agent
// killed at any point finds it under exactly one of the two IDs. The
// namespace, veth and /etc directory keep the names they were made under
// (a sandbox holds its namespace by path for its whole life); Detach(toID)
// removes them all. The /etc files are rewritten for o: its hostname
// ("ip-a-b-c-d" when empty) and DNS, as Attach would write them.
//
// It is how a warm sandbox's attachment, made before its task was known,
// becomes its task's (and goes back to the pool when the runtime turns the
// task down). A fromID that is not attached is ErrNotFound; a toID that
// already holds a lease, or names another attachment's namespace, is
// ErrAlreadyExists. Rekey of an attachment already moved (fromID gone,
// toID made from fromID) returns it: a retry after a crash is harmless.
func (m *Manager) Rekey(ctx context.Context, fromID, toID string, o AttachOptions) (*Attachment, error) {
	for _, id := range []string{fromID, toID} {
		if err := checkTaskID(id); err != nil {
			return nil, err
		}
	}
	if fromID == toID {
		return nil, errdefs.InvalidArgument("network: rekey of %s to itself; give two different IDs", fromID)
	}
	if err := o.checkNames(); err != nil {
		return nil, err
	}
	rc, err := checkDNS(o.DNS)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Both task locks, in the stripes' order (one when they share it).
	i, j := m.taskStripe(fromID), m.taskStripe(toID)
	if i > j {
		i, j = j, i
	}
	m.taskMu[i].Lock()
	defer m.taskMu[i].Unlock()
	if j != i {
		m.taskMu[j].Lock()
		defer m.taskMu[j].Unlock()
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, m.errClosed()
	}
	l, ok := m.leases[fromID]
	if !ok {
		if done, ok := m.leases[toID]; ok && done.name() == fromID {
			c := *done
			m.mu.Unlock()
			return m.attachment(&c), nil
		}
		m.mu.Unlock()
		return nil, errdefs.NotFound("network: task %s is not attached; nothing to move to %s", fromID, toID)
	}
	if !l.Attached {
		m.mu.Unlock()
		return nil, errdefs.NotFound("network: task %s's attach never finished; nothing to move to %s", fromID, toID)
	}
	if _, taken := m.leases[toID]; taken {
		m.mu.Unlock()
		return nil, errdefs.AlreadyExists("network: task %s is already attached; detach it before moving %s's attachment to it", toID, fromID)
	}
	for _, o := range m.leases {
		if o != l && o.name() == toID {
			m.mu.Unlock()
			return nil, errdefs.AlreadyExists("network: %s names the namespace of task %s's attachment; pick another ID", toID, o.TaskID)
		}
	}
	prev := *l
	name := l.name()
	moved := *l
	moved.TaskID = toID
	moved.Name = name
	if name == toID {
		moved.Name = "" // back under the name it was made with
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = defaultHostname(l.IP)
	}
	moved.Hostname, moved.Domain = hostname, o.Domain
	delete(m.leases, fromID)
	m.leases[toID] = &moved
	if err := m.persistLocked(); err != nil {
		delete(m.leases, toID)
		m.leases[fromID] = &prev
		m.mu.Unlock()
		return nil, err
	}
	sub := m.subnets[moved.Subnet]
	c := moved
	m.mu.Unlock()

	switch {
	case rc.nameservers != nil:
	case o.DNS != nil && m.gwDNS && sub != nil:
		rc.nameservers = []netip.Addr{sub.gateway}
	case sub != nil:
		rc.nameservers = m.nameservers(sub)
	}
	if o.DNS == nil {
		rc.search = m.search
	}
	if err := writeEtcFiles(m.etcPath(name), c.IP, c.Hostname, c.Domain, rc); err != nil {
		// The lease is toID's now: its owner detaches it with the rest.
		return nil, fmt.Errorf("network: rekey %s to %s: %w", fromID, toID, err)
	}
	// The firewall knows veths, MACs and addresses, none of which moved.
	m.log.Info("attachment moved", "from", fromID, "task", toID, "ip", c.IP, "netns", name)
	return m.attachment(&c), nil
}

// Detach removes the task's veth, namespace and /etc files and then releases
// its lease. Missing pieces are not an error, nor is an unknown task. It
// blocks while it tears down. A process still running in the namespace keeps
// an isolated namespace with no interfaces but lo.
func (m *Manager) Detach(ctx context.Context, taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	unlock := m.lockTask(taskID)
	defer unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.errClosed()
	}
	veth, name := "", taskID
	l, ok := m.leases[taskID]
	if ok {
		veth, name = l.HostVeth, l.name()
	} else {
		for _, o := range m.leases {
			if o.name() == taskID {
				// Moved to another task by Rekey: the namespace is its.
				m.mu.Unlock()
				return nil
			}
		}
	}
	m.mu.Unlock()
	if err := m.teardown(name, veth); err != nil {
		return fmt.Errorf("network: detach task %s: %w", taskID, err)
	}
	if !ok {
		return nil
	}
	if err := m.release(taskID); err != nil {
		return err
	}
	if err := m.syncFirewall(); err != nil {
		return fmt.Errorf("network: detach task %s: %w", taskID, err)
	}
	m.log.Info("task detached", "task", taskID, "ip", l.IP)
	return nil
}

// Get returns the task's attachment, a copy. A task whose lease was written
// but whose attach never finished is not returned.
func (m *Manager) Get(taskID string) (*Attachment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[taskID]
	if !ok || !l.Attached {
		return nil, false
	}
	return m.attachment(l), true
}

// List returns every finished attachment, sorted by task ID.
func (m *Manager) List() []Attachment {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Attachment, 0, len(m.leases))
	for _, l := range m.leases {
		if l.Attached {
			out = append(out, *m.attachment(l))
		}
	}
	slices.SortFunc(out, func(a, b Attachment) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out
}

// BrokenAttachment is a kept task whose plumbing is not what its lease says.
type BrokenAttachment struct {
	TaskID   string
	Problems []string
}

// ReconcileError lists the kept attachments Reconcile found broken. Calling
// Attach again for such a task rebuilds it with the same address.
type ReconcileError struct {
	Broken []BrokenAttachment
}

func (e *ReconcileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "network: %d broken attachment(s):", len(e.Broken))
	for _, t := range e.Broken {
		fmt.Fprintf(&b, " task %s: %s;", t.TaskID, strings.Join(t.Problems, ", "))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Reconcile is for after an agent restart. It detaches every leased or
// attached task for which keep returns false (including leases whose attach
// never finished), removes namespaces, /etc directories and veths on this
// manager's bridges that no lease accounts for, and verifies the rest: the
// namespace is mounted, the veth is up on the right bridge, eth0 has the
// address and the default route, the /etc files exist. Broken kept tasks are
// returned in a *ReconcileError (joined with any teardown errors); nothing is
// rebuilt. keep is called without locks held.
func (m *Manager) Reconcile(ctx context.Context, keep func(taskID string) bool) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.errClosed()
	}
	var snapshot []lease
	for _, l := range m.leases {
		snapshot = append(snapshot, *l)
	}
	m.mu.Unlock()
	slices.SortFunc(snapshot, func(a, b lease) int { return strings.Compare(a.TaskID, b.TaskID) })

	var errs []error
	var broken []BrokenAttachment
	leased := map[string]bool{}
	for i := range snapshot {
		l := &snapshot[i]
		leased[l.TaskID] = true
		leased[l.name()] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if !keep(l.TaskID) {
			m.log.Info("freeing attachment of a task that is gone", "task", l.TaskID, "ip", l.IP, "attached", l.Attached)
			if err := m.Detach(ctx, l.TaskID); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		var problems []string
		if !l.Attached {
			problems = append(problems, "attach never finished")
		} else if err := m.fixMAC(l); err != nil {
			problems = append(problems, err.Error())
		}
		problems = append(problems, m.verify(l)...)
		if len(problems) > 0 {
			m.log.Warn("attachment is broken", "task", l.TaskID, "ip", l.IP, "problems", problems)
			broken = append(broken, BrokenAttachment{TaskID: l.TaskID, Problems: problems})
		}
	}

	// Leftovers no lease accounts for (e.g. the lease file was lost).
	for _, dir := range []string{m.netnsDir, m.etcDir} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("network: reconcile: %w", err))
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if leased[id] || checkTaskID(id) != nil {
				continue
			}
			leased[id] = true
			if keep(id) {
				broken = append(broken, BrokenAttachment{TaskID: id, Problems: []string{"has a namespace or /etc files but no lease"}})
				continue
			}
			if err := m.removeLeftovers(id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.removeOrphanVeths(); err != nil {
		errs = append(errs, err)
	}
	// The rules follow the leases as they are now (they may be missing
	// after a reboot, or stale after a crash).
	if err := m.syncFirewall(); err != nil {
		errs = append(errs, err)
	}
	if len(broken) > 0 {
		errs = append(errs, &ReconcileError{Broken: broken})
	}
	return errors.Join(errs...)
}

// removeLeftovers tears down what a task with no lease left behind, unless
// an Attach running meanwhile has leased it (leases come before namespaces).
func (m *Manager) removeLeftovers(taskID string) error {
	unlock := m.lockTask(taskID)
	defer unlock()
	m.mu.Lock()
	_, leased := m.leases[taskID]
	m.mu.Unlock()
	if leased {
		return nil
	}
	m.log.Info("removing leftovers of a task with no lease", "task", taskID)
	return m.teardown(taskID, "")
}

// Close stops the manager. Attachments stay in place on the host (sandboxes
// outlive the agent); the next Open picks them up again.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *Manager) subnetNames() []string {
	var names []string
	for n := range m.subnets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (m *Manager) nameservers(sub *subnetState) []netip.Addr {
	if len(m.dns) > 0 {
		return m.dns
	}
	if ns := hostNameservers(m.hostResolvConf); len(ns) > 0 {
		return ns
	}
	return []netip.Addr{sub.gateway}
}

// now is a seam for tests.
var now = time.Now

// RemoveFirewall deletes the nftables tables and the VXLAN device (with
// its routes) of the manager whose state directory is stateDir, for
// uninstall and tests that remove a host's bridges by hand. A running
// manager puts them back at its next change.
func RemoveFirewall(stateDir string) error {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return errdefs.InvalidArgument("network: StateDir %q: %v", stateDir, err)
	}
	m := &Manager{fwTable: firewallTableName(dir)}
	return errors.Join(m.removeFirewall(), deleteLink(vxlanName(dir)))
}
