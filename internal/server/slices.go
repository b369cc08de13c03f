package server

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// The fleet network: subnets are defined once, on the control plane, and
// each host serving one gets a slice of it for its tasks' addresses. A
// slice is a record of its own, slices/<subnet>/<address>_<bits>, created
// with store.MustNotExist: two replicas never hand out one slice twice, and
// a slice stays its host's across restarts until ReleaseHostSlices.

// Defaults of the fleet network.
const (
	// DefaultSliceBits is the prefix length of a host's slice of a
	// subnet whose own prefix is shorter (a /24: 254 task addresses).
	DefaultSliceBits = 24
	// DefaultVNI and DefaultVXLANPort are the VXLAN network identifier
	// and UDP port of the fleet's back end. 4789 is VXLAN's IANA port;
	// the kernel's own default (8472, when a device names no port, as
	// flannel's) is left alone, and a device of another VNI may share the
	// port.
	DefaultVNI       = 1
	DefaultVXLANPort = 4789
)

// FleetNetwork is the fleet's network as the control plane defines it.
type FleetNetwork struct {
	// Subnets define the fleet's subnets: CIDR, slice size (SliceBits 0:
	// DefaultSliceBits, or the whole subnet when it is /24 or smaller),
	// NAT and peers. Empty: subnets are names only (Config.Subnets) and
	// no host gets a slice.
	Subnets []agentproto.FleetSubnet
	// Backend is agentproto.BackendVXLAN (default) or BackendHostGW.
	Backend string
	// VNI and Port of VXLAN; DefaultVNI and DefaultVXLANPort when 0.
	VNI  int
	Port int
}

// fill checks the fleet network and fills its defaults.
func (f *FleetNetwork) fill() error {
	switch f.Backend {
	case "":
		f.Backend = agentproto.BackendVXLAN
	case agentproto.BackendVXLAN, agentproto.BackendHostGW:
	default:
		return errdefs.InvalidArgument("fleet network back end %q is not known: use %s or %s", f.Backend, agentproto.BackendVXLAN, agentproto.BackendHostGW)
	}
	if f.VNI == 0 {
		f.VNI = DefaultVNI
	}
	if f.Port == 0 {
		f.Port = DefaultVXLANPort
	}
	if f.VNI < 1 || f.VNI > 1<<24-1 {
		return errdefs.InvalidArgument("VXLAN network identifier %d: give 1 to %d", f.VNI, 1<<24-1)
	}
	if f.Port < 1 || f.Port > 65535 {
		return errdefs.InvalidArgument("VXLAN port %d: give 1 to 65535", f.Port)
	}
	f.Subnets = slices.Clone(f.Subnets)
	names := map[string]bool{}
	for i := range f.Subnets {
		s := &f.Subnets[i]
		p := s.CIDR
		switch {
		case s.Name == "":
			return errdefs.InvalidArgument("a fleet subnet has no name: give NAME=CIDR, e.g. subnet-default=10.89.0.0/16")
		case names[s.Name]:
			return errdefs.InvalidArgument("subnet %q is defined twice; names must be unique", s.Name)
		case !p.IsValid() || !p.Addr().Is4():
			return errdefs.InvalidArgument("subnet %q: CIDR %v is not an IPv4 prefix such as 10.89.0.0/16", s.Name, p)
		case p.Bits() < 8 || p.Bits() > 30:
			return errdefs.InvalidArgument("subnet %q: prefix length /%d is not accepted; use /8 to /30", s.Name, p.Bits())
		case p != p.Masked():
			return errdefs.InvalidArgument("subnet %q: CIDR %s has host bits set; use %s", s.Name, p, p.Masked())
		}
		names[s.Name] = true
		if s.SliceBits == 0 {
			s.SliceBits = max(DefaultSliceBits, p.Bits())
		}
		if s.SliceBits < p.Bits() || s.SliceBits > 30 {
			return errdefs.InvalidArgument("subnet %q (%s): slice /%d is not accepted; give a slice of /%d (the whole subnet, for one host) to /30, e.g. slice=/%d",
				s.Name, p, s.SliceBits, p.Bits(), min(30, max(DefaultSliceBits, p.Bits()+2)))
		}
		for _, o := range f.Subnets[:i] {
			if o.CIDR.Overlaps(p) {
				return errdefs.InvalidArgument("subnet %q (%s) overlaps subnet %q (%s); CIDRs must be disjoint", s.Name, p, o.Name, o.CIDR)
			}
		}
	}
	for _, s := range f.Subnets {
		for _, peer := range s.Peers {
			if !names[peer] || peer == s.Name {
				return errdefs.InvalidArgument("subnet %q: peer %q is not another subnet of the fleet", s.Name, peer)
			}
		}
	}
	return nil
}

func (f *FleetNetwork) subnet(name string) (agentproto.FleetSubnet, bool) {
	for _, s := range f.Subnets {
		if s.Name == name {
			return s, true
		}
	}
	return agentproto.FleetSubnet{}, false
}

func (f *FleetNetwork) names() []string {
	out := make([]string, len(f.Subnets))
	for i, s := range f.Subnets {
		out[i] = s.Name
	}
	return out
}

const prefixSlices = "slices/" // slices/<subnet>/<address>_<bits>

func sliceKey(subnet string, p netip.Prefix) string {
	return prefixSlices + subnet + "/" + p.Addr().String() + "_" + strconv.Itoa(p.Bits())
}

// sliceRecord is one host's slice of a subnet.
type sliceRecord struct {
	Subnet    string       `json:"subnet"`
	CIDR      netip.Prefix `json:"cidr"`
	HostID    string       `json:"hostId"`
	CreatedAt time.Time    `json:"createdAt"`
}

// sliceAddresses is how many task addresses a host has in slice of subnet
// cidr: the slice's network and broadcast addresses and the subnet's
// gateway (its first address) go to no task, as internal/network hands
// them out.
func sliceAddresses(cidr, slice netip.Prefix) int {
	n := 1<<(32-slice.Bits()) - 2
	if gw := cidr.Masked().Addr().Next(); slice.Contains(gw) && gw != slice.Masked().Addr() {
		n--
	}
	return max(n, 0)
}

// takesAddresses reports whether a host's tasks get addresses of its own:
// it offers a runtime other than the simulated one.
func takesAddresses(h agentproto.Host) bool {
	for _, r := range h.Runtimes {
		if r != runtime.Sim {
			return true
		}
	}
	return false
}

// checkHostSubnets refuses a registration whose subnets the fleet does not
// define, or defines otherwise than the host was told.
func (s *Server) checkHostSubnets(h agentproto.Host) error {
	f := &s.cfg.Fleet
	if len(f.Subnets) == 0 {
		return nil
	}
	for _, n := range h.Subnets {
		if _, ok := f.subnet(n); !ok {
			return errdefs.InvalidArgument("host %s serves subnet %q, which the control plane does not define; its subnets are %s", h.ID, n, strings.Join(f.names(), ", "))
		}
	}
	for _, d := range h.SubnetDefinitions {
		own, ok := f.subnet(d.Name)
		if !ok {
			return errdefs.InvalidArgument("host %s defines subnet %s, which the control plane does not define; its subnets are %s", h.ID, describeSubnet(d), strings.Join(f.names(), ", "))
		}
		same := d.CIDR == own.CIDR && d.NAT == own.NAT && (d.SliceBits == 0 || d.SliceBits == own.SliceBits)
		a, b := slices.Clone(d.Peers), slices.Clone(own.Peers)
		slices.Sort(a)
		slices.Sort(b)
		if !same || !slices.Equal(slices.Compact(a), slices.Compact(b)) {
			return errdefs.InvalidArgument("host %s defines subnet %q as %s, but the control plane defines it as %s: give the agent --subnet %s alone (it takes the control plane's definition), or the same definition",
				h.ID, d.Name, describeSubnet(d), describeSubnet(own), d.Name)
		}
	}
	return nil
}

// describeSubnet writes a subnet as --subnet takes it.
func describeSubnet(s agentproto.FleetSubnet) string {
	out := s.Name + "=" + s.CIDR.String()
	if s.NAT {
		out += ",nat"
	}
	for _, p := range s.Peers {
		out += ",peer=" + p
	}
	if s.SliceBits != 0 {
		out += ",slice=/" + strconv.Itoa(s.SliceBits)
	}
	return out
}

// listSlices returns every slice record with its store revision.
func (s *Server) listSlices(ctx context.Context, prefix string) ([]sliceRecord, []int64, error) {
	recs, revs, _, err := listJSON[sliceRecord](ctx, s.reads(ctx), prefixSlices+prefix)
	return recs, revs, err
}

// assignSlices gives host h a slice of each fleet subnet it serves that it
// holds none of, and returns the subnets where none was free. A host whose
// tasks take no address (simulated only) gets none.
func (s *Server) assignSlices(ctx context.Context, h agentproto.Host) (full []string, err error) {
	if len(s.cfg.Fleet.Subnets) == 0 || !takesAddresses(h) {
		return nil, nil
	}
	for _, name := range h.Subnets {
		sub, ok := s.cfg.Fleet.subnet(name)
		if !ok {
			continue
		}
		got, err := s.assignSlice(ctx, h.ID, sub)
		if err != nil {
			return full, err
		}
		if !got {
			full = append(full, name)
		}
	}
	return full, nil
}

// assignSlice makes sure host holds a slice of sub; false when none is free.
func (s *Server) assignSlice(ctx context.Context, hostID string, sub agentproto.FleetSubnet) (bool, error) {
	for attempt := 0; ; attempt++ {
		recs, _, err := s.listSlices(ctx, sub.Name+"/")
		if err != nil {
			return false, err
		}
		var mine []netip.Prefix
		taken := make([]netip.Prefix, 0, len(recs))
		for _, r := range recs {
			if !sub.CIDR.Overlaps(r.CIDR) {
				continue // of an earlier definition of the subnet
			}
			taken = append(taken, r.CIDR)
			if r.HostID == hostID && sub.CIDR.Contains(r.CIDR.Addr()) && r.CIDR.Bits() >= sub.CIDR.Bits() {
				mine = append(mine, r.CIDR)
			}
		}
		if len(mine) > 0 {
			// Two replicas registering the host at once may each have
			// given it one: every one keeps the first and frees the rest.
			slices.SortFunc(mine, func(a, b netip.Prefix) int { return strings.Compare(sliceKey(sub.Name, a), sliceKey(sub.Name, b)) })
			for _, extra := range mine[1:] {
				if err := s.store.Delete(ctx, sliceKey(sub.Name, extra), store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
					return false, err
				}
			}
			return true, nil
		}
		p, ok := freeSlice(sub, taken)
		if !ok {
			return false, nil
		}
		_, err = putJSON(ctx, s.store, sliceKey(sub.Name, p), sliceRecord{Subnet: sub.Name, CIDR: p, HostID: hostID, CreatedAt: s.cfg.Now()}, store.MustNotExist)
		if errdefs.IsAlreadyExists(err) && attempt < 100 {
			continue // another replica gave it to another host meanwhile
		}
		if err != nil {
			return false, err
		}
		s.networkChanged()
		s.log.Info("host given a slice of a subnet", "host", hostID, "subnet", sub.Name, "slice", p)
		// Look again: the check above settles a race for this host.
	}
}

// freeSlice returns the first slice of sub that overlaps none of taken.
func freeSlice(sub agentproto.FleetSubnet, taken []netip.Prefix) (netip.Prefix, bool) {
	base := addrU32(sub.CIDR.Addr())
	size := uint64(1) << (32 - sub.SliceBits)
	count := uint64(1) << (sub.SliceBits - sub.CIDR.Bits())
	for i := uint64(0); i < count; i++ {
		p := netip.PrefixFrom(u32Addr(uint32(uint64(base)+i*size)), sub.SliceBits)
		free := true
		for _, t := range taken {
			if t.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ReleaseHostSlices frees the slices of a removed host, so that other
// hosts may be given them. The caller (`vessel host rm`) calls it once the
// host's registration is deleted and none of its tasks is left: it
// refuses, with an error of kind errdefs.ErrConflict, while the host is
// registered or a task placed on it is not STOPPED, since an address of a
// slice still in use must never be handed out twice. Releasing a host that
// holds none does nothing. It blocks for the store's writes.
func (s *Server) ReleaseHostSlices(ctx context.Context, hostID string) error {
	if _, err := s.store.Get(ctx, hostKey(hostID)); err == nil {
		return errdefs.Conflict("host %s is still registered: its slices are released only after it is removed", hostID)
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	tasks, _, err := s.storeTasks(ctx)
	if err != nil {
		return err
	}
	var left []string
	for _, t := range tasks {
		if t.HostID == hostID && !t.Stopped() {
			left = append(left, t.ID)
		}
	}
	if len(left) > 0 {
		return errdefs.Conflict("host %s still has %d task(s) not STOPPED (%s): its slices are released only once its tasks are gone", hostID, len(left), strings.Join(left[:min(len(left), 5)], ", "))
	}
	recs, revs, err := s.listSlices(ctx, "")
	if err != nil {
		return err
	}
	for i, r := range recs {
		if r.HostID != hostID {
			continue
		}
		if err := s.store.Delete(ctx, sliceKey(r.Subnet, r.CIDR), revs[i]); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		s.log.Info("slice released", "host", hostID, "subnet", r.Subnet, "slice", r.CIDR)
	}
	s.networkChanged()
	return nil
}

// networkChanged notes a change of the hosts' or slices' records (this
// replica's own, or any replica's through the store's watch) and wakes the
// long polls.
func (s *Server) networkChanged() {
	s.netChanges.Add(1)
	s.notify()
}

// isNetworkKey reports whether a change of key changes hosts' network views.
func isNetworkKey(key string) bool {
	return strings.HasPrefix(key, prefixHosts) || strings.HasPrefix(key, prefixSlices)
}

var _ agentproto.NetworkSource = (*Server)(nil)

// HostNetwork implements agentproto.NetworkSource: the host's subnets,
// slices and peers, read from the store. Its revision is a digest of that
// view, so every replica gives the same view the same revision, and a poll
// with the current one waits for the hosts' or slices' records to change
// the view. An unknown host is an error of kind errdefs.ErrNotFound.
func (s *Server) HostNetwork(ctx context.Context, hostID string, after int64) (agentproto.HostNetwork, error) {
	for {
		pulse := s.pulseChan()
		seen := s.netChanges.Load()
		// Read with a context of its own: a long poll that ran out still
		// answers with the view.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		hn, err := s.hostNetworkView(rctx, hostID)
		cancel()
		if err != nil {
			return hn, err
		}
		hn.Revision = viewDigest(hn)
		if hn.Revision != after || ctx.Err() != nil {
			return hn, nil
		}
		for s.netChanges.Load() == seen {
			select {
			case <-ctx.Done():
				return hn, nil
			case <-pulse:
			}
			pulse = s.pulseChan()
		}
	}
}

// viewDigest is a positive digest of a host's network view (its Revision
// left out).
func viewDigest(hn agentproto.HostNetwork) int64 {
	hn.Revision = 0
	b, _ := json.Marshal(hn)
	h := fnv.New64a()
	h.Write(b)
	return int64(h.Sum64()>>1) | 1
}

func (s *Server) hostNetworkView(ctx context.Context, hostID string) (agentproto.HostNetwork, error) {
	f := &s.cfg.Fleet
	out := agentproto.HostNetwork{Backend: f.Backend, Subnets: []agentproto.FleetSubnet{}, Slices: []agentproto.Slice{}, Peers: []agentproto.Peer{}}
	if f.Backend == agentproto.BackendVXLAN {
		out.VNI, out.Port = f.VNI, f.Port
	}
	hosts, _, _, err := listJSON[hostRecord](ctx, s.store, prefixHosts)
	if err != nil {
		return out, err
	}
	var self *hostRecord
	for i := range hosts {
		if hosts[i].ID == hostID {
			self = &hosts[i]
		}
	}
	if self == nil {
		return out, errdefs.NotFound("host %s is not registered", hostID)
	}
	for _, n := range self.Subnets {
		if sub, ok := f.subnet(n); ok {
			out.Subnets = append(out.Subnets, sub)
		}
	}
	recs, _, err := s.listSlices(ctx, "")
	if err != nil {
		return out, err
	}
	byHost := map[string][]agentproto.Slice{}
	for _, r := range recs {
		byHost[r.HostID] = append(byHost[r.HostID], agentproto.Slice{Subnet: r.Subnet, CIDR: r.CIDR})
	}
	if mine := byHost[hostID]; mine != nil {
		out.Slices = mine
	}
	for _, h := range hosts {
		if h.ID != hostID && len(byHost[h.ID]) > 0 {
			out.Peers = append(out.Peers, agentproto.Peer{HostID: h.ID, Address: h.Address, Slices: byHost[h.ID]})
		}
	}
	slices.SortFunc(out.Peers, func(a, b agentproto.Peer) int { return strings.Compare(a.HostID, b.HostID) })
	return out, nil
}

// hostAddresses returns, per host, how many task addresses it has in each
// subnet (scheduler.Host.Addresses): nil for hosts that count none (no
// fleet subnets defined, or simulated only).
func (s *Server) hostAddresses(ctx context.Context, hosts []hostRecord) (map[string]map[string]int, error) {
	if len(s.cfg.Fleet.Subnets) == 0 {
		return nil, nil
	}
	recs, _, err := s.listSlices(ctx, "")
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]int{}
	for _, h := range hosts {
		if takesAddresses(h.Host) {
			out[h.ID] = map[string]int{}
		}
	}
	for _, r := range recs {
		sub, ok := s.cfg.Fleet.subnet(r.Subnet)
		if m := out[r.HostID]; m != nil && ok && sub.CIDR.Contains(r.CIDR.Addr()) {
			m[r.Subnet] += sliceAddresses(sub.CIDR, r.CIDR)
		}
	}
	return out, nil
}

// holdsAddress reports whether a placed task holds one of its host's
// addresses (its sandbox is not simulated).
func holdsAddress(t *task.Task) bool { return t.Runtime != runtime.Sim }

// noSliceMessage says why a host serves no address in some subnets.
func noSliceMessage(hostID string, full []string) string {
	return fmt.Sprintf("host %s was given no slice of subnet(s) %s: every slice is held by another host; its tasks are placed elsewhere", hostID, strings.Join(full, ", "))
}
