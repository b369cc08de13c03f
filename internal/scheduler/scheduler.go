package scheduler

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Default allocation ratios, used when a Host's ratio is zero (or negative,
// NaN or infinite). CPU is oversubscribed 4× (tasks rarely use their whole
// vCPU share and the kernel shares CPU time fairly); memory is never
// oversubscribed, because a task that runs out of it is killed.
const (
	DefaultCPUAllocationRatio    = 4.0
	DefaultMemoryAllocationRatio = 1.0
)

// Unplaced reasons. They mirror the failure reasons of ECS RunTask.
const (
	// ReasonCPU: no ready host that satisfies the runtime and subnets has
	// enough CPU free (or CPU is the scarcer of the two resources).
	ReasonCPU = "RESOURCE:CPU"
	// ReasonMemory: as ReasonCPU, for memory.
	ReasonMemory = "RESOURCE:MEMORY"
	// ReasonRuntime: no ready host offers the requested runtime.
	ReasonRuntime = "RUNTIME"
	// ReasonSubnet: no ready host (offering the runtime) reaches any of the
	// requested subnets.
	ReasonSubnet = "SUBNET"
	// ReasonAddress: hosts that satisfy the runtime and subnets have room
	// for the task's size but no free address in its subnets (their slices
	// of the subnet are full, or they have none), as ECS's reason for a
	// task whose network interface can not be given.
	ReasonAddress = "RESOURCE:ENI"
	// ReasonNoHost: there is no ready host at all.
	ReasonNoHost = "NO_HOST"
	// ReasonInvalidRequest: the request's size is negative. Sizes are
	// validated by the caller (internal/sizing); this only guards the
	// bookkeeping.
	ReasonInvalidRequest = "INVALID_REQUEST"
)

// Resources is an amount of CPU and memory. MilliCPU counts thousandths of
// a vCPU (1000 = one vCPU, 250 = 0.25 vCPU).
type Resources struct {
	MilliCPU  int64
	MemoryMiB int64
}

// Host is a machine that can run tasks, as the scheduler sees it.
type Host struct {
	// ID identifies the host; IDs are unique within a Snapshot (a repeated
	// ID is ignored after its first occurrence) and break ties in placement.
	ID string
	// Capacity is the physical size of the host.
	Capacity Resources
	// CPUAllocationRatio and MemoryAllocationRatio scale Capacity to what
	// may be allocated to tasks: allocatable = floor(capacity × ratio).
	// Zero means the default (DefaultCPUAllocationRatio,
	// DefaultMemoryAllocationRatio).
	CPUAllocationRatio    float64
	MemoryAllocationRatio float64
	// Runtimes lists the runtimes the host offers ("sim", "runc", ...).
	Runtimes []string
	// Subnets lists the subnets the host reaches, preferred first.
	Subnets []string
	// Addresses, when not nil, is how many task addresses the host has in
	// each subnet (its slice's size less the addresses no task gets); a
	// subnet of Subnets missing from it has none. Each Placed task on the
	// host holds one of its subnet's unless NoAddress. nil: addresses are
	// not counted (the host's tasks get none, as simulated ones).
	Addresses map[string]int
	// Ready is true while the host heartbeats. Nothing is ever placed on a
	// host that is not ready.
	Ready bool
	// Draining is true while the host is drained (vessel host drain):
	// nothing new is placed on it, as on a host that is not ready, but its
	// Placed tasks still count.
	Draining bool
}

// Allocatable returns the resources that tasks may hold on h in total:
// Capacity × allocation ratio, rounded down.
func (h Host) Allocatable() Resources {
	return Resources{
		MilliCPU:  scale(h.Capacity.MilliCPU, ratioOr(h.CPUAllocationRatio, DefaultCPUAllocationRatio)),
		MemoryMiB: scale(h.Capacity.MemoryMiB, ratioOr(h.MemoryAllocationRatio, DefaultMemoryAllocationRatio)),
	}
}

// Placed is a task that already holds resources on a host, or, with Count
// above one, that many tasks of a host alike in Subnet, Spread and
// NoAddress, holding Size together (what a caller that keeps its tasks'
// use by host hands over, instead of one entry per task). Placed tasks on
// a host that is not in the Snapshot are ignored.
type Placed struct {
	TaskID string
	HostID string
	Size   Resources
	// Count is how many tasks the entry stands for; 0 means one.
	Count int
	// Subnet and Spread, when Spread is set, count the task for the spread
	// of later requests with the same Spread key.
	Subnet string
	Spread string
	// NoAddress says the task holds no address of its host's (a simulated
	// sandbox).
	NoAddress bool
}

// tasks is how many tasks p stands for.
func (p Placed) tasks() int { return max(p.Count, 1) }

// Request is a task waiting to be placed.
type Request struct {
	TaskID string
	// Size is the task's provisioned size.
	Size Resources
	// Runtime is the runtime the task needs; "" accepts any.
	Runtime string
	// Subnets lists the subnets the task may join, preferred first; the task
	// needs a host that reaches any one of them. Empty accepts any host.
	Subnets []string
	// Spread, when set, names a group of tasks (an ECS service) to spread:
	// the task goes to the subnet, then the host, holding the fewest tasks
	// of the group (Placed and earlier placements of this plan), and only
	// among equals to the fullest host.
	Spread string
	// NoAddress says the task needs no address (a simulated sandbox);
	// otherwise it needs a free one in its subnet on hosts that count
	// them (Host.Addresses).
	NoAddress bool
}

// Snapshot is the scheduler's read-only view of the fleet. Schedule never
// modifies it, nor anything it points to.
type Snapshot struct {
	Hosts []Host
	// Placed are the tasks already holding resources.
	Placed []Placed
	// Pending are the tasks to place, in the order they should be
	// considered (the caller puts the oldest first).
	Pending []Request
}

// Placement assigns a task to a host and a subnet ("" when the task named no
// subnet and the host has none).
type Placement struct {
	TaskID string
	HostID string
	Subnet string
}

// Unplaced is a task that could not be placed, with a reason (one of the
// Reason constants) and a message that says in words what was missing.
type Unplaced struct {
	TaskID  string
	Reason  string
	Message string
}

// Plan is the outcome of Schedule. Every pending task appears exactly once,
// in either Placements or Unplaced, each in the order of Snapshot.Pending.
type Plan struct {
	Placements []Placement
	Unplaced   []Unplaced
}

// Schedule places s.Pending onto s.Hosts and returns the plan; it does not
// block, does no I/O, and never modifies s. The plan is a new value owned by
// the caller (its strings may share memory with s).
//
// Requests are considered one at a time in the given order; a large request
// that does not fit is not retried after smaller ones, and smaller ones are
// not held back for it. A request goes to the ready host that offers its
// runtime, reaches one of its subnets with a free address there (when the
// host counts them), has room for it after the Placed tasks and the earlier
// placements of this plan, and would be the most full
// afterwards, measured by its dominant share max(cpu used/allocatable,
// memory used/allocatable). Ties go to the smallest host ID, so the same
// snapshot always yields the same plan.
func Schedule(s Snapshot) Plan {
	sc := newScheduler(&s)
	plan := Plan{Placements: make([]Placement, 0, len(s.Pending))}
	for i := range s.Pending {
		r := &s.Pending[i]
		if r.Size.MilliCPU < 0 || r.Size.MemoryMiB < 0 {
			plan.Unplaced = append(plan.Unplaced, Unplaced{
				TaskID:  r.TaskID,
				Reason:  ReasonInvalidRequest,
				Message: fmt.Sprintf("task size must not be negative (got %s and %d MiB)", vcpu(r.Size.MilliCPU), r.Size.MemoryMiB),
			})
			continue
		}
		c := &sc.cons[sc.constraintFor(r)]
		if c.reason != "" {
			plan.Unplaced = append(plan.Unplaced, Unplaced{TaskID: r.TaskID, Reason: c.reason, Message: c.message})
			continue
		}
		var h int32
		var subnet string
		var ok bool
		if r.Spread != "" {
			h, subnet, ok = sc.placeSpread(c, r)
		} else {
			h, subnet, ok = sc.place(c, r)
		}
		if !ok {
			reason, msg := sc.diagnose(c, r)
			plan.Unplaced = append(plan.Unplaced, Unplaced{TaskID: r.TaskID, Reason: reason, Message: msg})
			continue
		}
		plan.Placements = append(plan.Placements, Placement{TaskID: r.TaskID, HostID: sc.hosts[h].id, Subnet: subnet})
	}
	return plan
}

// hostState is a ready host's bookkeeping.
type hostState struct {
	id                 string
	freeCPU, freeMem   int64
	allocCPU, allocMem int64
	invCPU, invMem     float64 // 1/allocatable, 0 when allocatable <= 0
	group              int32
	// freeAddr is the host's free addresses by subnet; nil: not counted.
	freeAddr map[string]int
}

// group gathers ready hosts that are identical but for their ID: same
// allocatable and free resources, runtimes and subnets. Among its untouched
// members only the one with the smallest ID (the head) can ever win, so the
// untouched members cost one look per request, however many they are.
// A member leaves the untouched run when it receives a placement.
type group struct {
	members []int32 // host indices, sorted by ID; members[head:] are untouched
	head    int
	touched []int32 // members that received a placement and may still fit something
	rep     *Host
}

// candidate is a group that satisfies a constraint, with the subnet the
// constraint's tasks would get on its hosts.
type candidate struct {
	group  int32
	subnet string
}

// constraint is the set of hosts that satisfy one (runtime, subnets) pair.
type constraint struct {
	reason, message string      // set when no ready host satisfies it at all
	all             []candidate // every satisfying group, for diagnosis
	live            []candidate // groups that may still fit something

	diagVersion        int // sc.version when the fields below were computed; -1 never
	maxCPU, maxMem     int64
	maxCPUID, maxMemID string
	diags              map[diagKey]diag // by request size, valid for diagVersion
}

type diagKey struct {
	size      Resources
	noAddress bool
}

type diag struct{ reason, message string }

type scheduler struct {
	s      *Snapshot
	hosts  []hostState
	groups []group
	keys   map[string]int32
	cons   []constraint
	buf    []byte

	lastReq *Request // the last request whose constraint was looked up
	lastCon int32

	minCPU, minMem int64 // smallest valid pending request; a host with less free is dead
	version        int   // placements made so far
	draining       int   // ready hosts left out because they drain

	hostOf  []*Host                 // by host index
	spreads map[string]*spreadCount // by Spread key; nil when no request spreads
}

// spreadCount counts the tasks of one Spread key by host index and subnet.
type spreadCount struct {
	hosts   map[int32]int
	subnets map[string]int
}

func newScheduler(s *Snapshot) *scheduler {
	sc := &scheduler{s: s, keys: make(map[string]int32), lastCon: -1}

	// Ready hosts, first occurrence of each ID.
	index := make(map[string]int, len(s.Hosts))
	firstIndex := make(map[string]int, len(s.Hosts)) // ID → its first occurrence in s.Hosts
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if _, dup := index[h.ID]; dup {
			continue
		}
		index[h.ID] = -1
		firstIndex[h.ID] = i
		if !h.Ready || h.Draining {
			if h.Ready {
				sc.draining++
			}
			continue
		}
		a := h.Allocatable()
		index[h.ID] = len(sc.hosts)
		sc.hosts = append(sc.hosts, hostState{
			id: h.ID, freeCPU: a.MilliCPU, freeMem: a.MemoryMiB,
			allocCPU: a.MilliCPU, allocMem: a.MemoryMiB,
			invCPU: inv(a.MilliCPU), invMem: inv(a.MemoryMiB),
		})
	}
	for i := range sc.hosts {
		if h := &s.Hosts[firstIndex[sc.hosts[i].id]]; h.Addresses != nil {
			sc.hosts[i].freeAddr = make(map[string]int, len(h.Addresses))
			for n, c := range h.Addresses {
				sc.hosts[i].freeAddr[n] = c
			}
		}
	}
	for _, p := range s.Placed {
		if i, ok := index[p.HostID]; ok && i >= 0 {
			hs := &sc.hosts[i]
			hs.freeCPU -= p.Size.MilliCPU
			hs.freeMem -= p.Size.MemoryMiB
			if hs.freeAddr != nil && p.Subnet != "" && !p.NoAddress {
				hs.freeAddr[p.Subnet] -= p.tasks()
			}
		}
	}

	// Groups of identical hosts.
	hostOf := make([]*Host, len(sc.hosts))
	for i := range s.Hosts {
		if j, ok := index[s.Hosts[i].ID]; ok && j >= 0 && hostOf[j] == nil {
			hostOf[j] = &s.Hosts[i]
		}
	}
	sc.hostOf = hostOf
	for i := range s.Pending {
		if k := s.Pending[i].Spread; k != "" && sc.spreads[k] == nil {
			if sc.spreads == nil {
				sc.spreads = make(map[string]*spreadCount)
			}
			sc.spreads[k] = &spreadCount{hosts: map[int32]int{}, subnets: map[string]int{}}
		}
	}
	for _, p := range s.Placed {
		if sp := sc.spreads[p.Spread]; p.Spread != "" && sp != nil {
			if i, ok := index[p.HostID]; ok && i >= 0 {
				sp.hosts[int32(i)] += p.tasks()
			}
			sp.subnets[p.Subnet] += p.tasks()
		}
	}
	byKey := make(map[string]int32)
	for i := range sc.hosts {
		k := groupKey(&sc.hosts[i], hostOf[i])
		g, ok := byKey[k]
		if !ok {
			g = int32(len(sc.groups))
			byKey[k] = g
			sc.groups = append(sc.groups, group{rep: hostOf[i]})
		}
		sc.hosts[i].group = g
		sc.groups[g].members = append(sc.groups[g].members, int32(i))
	}
	for gi := range sc.groups {
		g := &sc.groups[gi]
		slices.SortFunc(g.members, func(a, b int32) int { return strings.Compare(sc.hosts[a].id, sc.hosts[b].id) })
	}
	slices.SortFunc(sc.groups, func(a, b group) int {
		return strings.Compare(sc.hosts[a.members[0]].id, sc.hosts[b.members[0]].id)
	})
	// A host enters its group's touched list at most once, so one array
	// holds every list.
	touched := make([]int32, len(sc.hosts))
	for gi := range sc.groups {
		g := &sc.groups[gi]
		for _, h := range g.members {
			sc.hosts[h].group = int32(gi)
		}
		g.touched, touched = touched[:0:len(g.members)], touched[len(g.members):]
	}

	first := true
	for i := range s.Pending {
		sz := s.Pending[i].Size
		if sz.MilliCPU < 0 || sz.MemoryMiB < 0 {
			continue
		}
		if first || sz.MilliCPU < sc.minCPU {
			sc.minCPU = sz.MilliCPU
		}
		if first || sz.MemoryMiB < sc.minMem {
			sc.minMem = sz.MemoryMiB
		}
		first = false
	}
	return sc
}

// groupKey encodes everything about a ready host but its ID.
func groupKey(hs *hostState, h *Host) string {
	var b []byte
	b = binary.AppendVarint(b, hs.allocCPU)
	b = binary.AppendVarint(b, hs.allocMem)
	b = binary.AppendVarint(b, hs.freeCPU)
	b = binary.AppendVarint(b, hs.freeMem)
	first := ""
	if len(h.Subnets) > 0 {
		first = h.Subnets[0]
	}
	b = appendString(b, first)
	if hs.freeAddr == nil {
		b = binary.AppendVarint(b, -1)
	} else {
		names := make([]string, 0, len(hs.freeAddr))
		for n := range hs.freeAddr {
			names = append(names, n)
		}
		slices.Sort(names)
		b = binary.AppendVarint(b, int64(len(names)))
		for _, n := range names {
			b = appendString(b, n)
			b = binary.AppendVarint(b, int64(hs.freeAddr[n]))
		}
	}
	for _, list := range [][]string{h.Runtimes, h.Subnets} {
		set := slices.Clone(list)
		slices.Sort(set)
		set = slices.Compact(set)
		b = binary.AppendUvarint(b, uint64(len(set)))
		for _, x := range set {
			b = appendString(b, x)
		}
	}
	return string(b)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// constraintFor returns the index of r's constraint, building it the first
// time. Consecutive requests with the same runtime and subnets cost one
// comparison; others one map look-up that does not allocate.
func (sc *scheduler) constraintFor(r *Request) int32 {
	if l := sc.lastReq; l != nil && l.Runtime == r.Runtime && slices.Equal(l.Subnets, r.Subnets) {
		sc.lastReq = r
		return sc.lastCon
	}
	b := appendString(sc.buf[:0], r.Runtime)
	for _, n := range r.Subnets {
		b = appendString(b, n)
	}
	sc.buf = b
	ci, ok := sc.keys[string(b)]
	if !ok {
		ci = int32(len(sc.cons))
		sc.keys[string(b)] = ci
		sc.cons = append(sc.cons, sc.buildConstraint(r))
	}
	sc.lastReq, sc.lastCon = r, ci
	return ci
}

func (sc *scheduler) buildConstraint(r *Request) constraint {
	c := constraint{diagVersion: -1}
	anyRuntime := false
	for gi := range sc.groups {
		h := sc.groups[gi].rep
		if !offers(h, r.Runtime) {
			continue
		}
		anyRuntime = true
		if subnet, ok := chooseSubnet(h, r.Subnets); ok {
			c.all = append(c.all, candidate{group: int32(gi), subnet: subnet})
		}
	}
	c.live = slices.Clone(c.all)
	switch {
	case len(sc.groups) == 0:
		c.reason = ReasonNoHost
		c.message = fmt.Sprintf("no ready host (%d hosts known, none ready)", len(sc.s.Hosts))
		if sc.draining > 0 {
			c.message = fmt.Sprintf("no ready host (%d hosts known: %d draining, the others not ready)", len(sc.s.Hosts), sc.draining)
		}
	case !anyRuntime:
		c.reason = ReasonRuntime
		c.message = fmt.Sprintf("no ready host offers runtime %q", r.Runtime)
	case len(c.all) == 0:
		c.reason = ReasonSubnet
		if r.Runtime != "" {
			c.message = fmt.Sprintf("no ready host offering runtime %q reaches any of subnets %q", r.Runtime, r.Subnets)
		} else {
			c.message = fmt.Sprintf("no ready host reaches any of subnets %q", r.Subnets)
		}
	}
	return c
}

func offers(h *Host, runtime string) bool {
	return runtime == "" || slices.Contains(h.Runtimes, runtime)
}

// chooseSubnet returns the first of want that h reaches, or h's first subnet
// ("" if none) when want is empty.
func chooseSubnet(h *Host, want []string) (string, bool) {
	if len(want) == 0 {
		if len(h.Subnets) == 0 {
			return "", true
		}
		return h.Subnets[0], true
	}
	for _, w := range want {
		if slices.Contains(h.Subnets, w) {
			return w, true
		}
	}
	return "", false
}

// hasAddress reports whether host h can give r an address in subnet.
func (sc *scheduler) hasAddress(h int32, r *Request, subnet string) bool {
	fa := sc.hosts[h].freeAddr
	return fa == nil || r.NoAddress || subnet == "" || fa[subnet] > 0
}

// subnetOn returns the subnet r gets on host h: pref (the first of r's
// subnets the host reaches) when the host has an address there, else the
// next of r's (or, when r names none, of the host's) with one.
func (sc *scheduler) subnetOn(h int32, r *Request, pref string) (string, bool) {
	if sc.hasAddress(h, r, pref) {
		return pref, true
	}
	want := r.Subnets
	if len(want) == 0 {
		want = sc.hostOf[h].Subnets
	}
	for _, w := range want {
		if slices.Contains(sc.hostOf[h].Subnets, w) && sc.hasAddress(h, r, w) {
			return w, true
		}
	}
	return "", false
}

// charge takes r's size, and its address in subnet, from host h.
func (sc *scheduler) charge(h int32, r *Request, subnet string) {
	hs := &sc.hosts[h]
	hs.freeCPU -= r.Size.MilliCPU
	hs.freeMem -= r.Size.MemoryMiB
	if hs.freeAddr != nil && !r.NoAddress && subnet != "" {
		hs.freeAddr[subnet]--
	}
}

func (sc *scheduler) dead(h int32) bool {
	hs := &sc.hosts[h]
	return hs.freeCPU < sc.minCPU || hs.freeMem < sc.minMem
}

// place picks the best host for r among c's live groups, charges it, and
// returns it with the subnet. Groups and touched hosts that can no longer fit
// the smallest pending request are dropped on the way.
func (sc *scheduler) place(c *constraint, r *Request) (int32, string, bool) {
	size := r.Size
	best := int32(-1)
	var bestScore float64
	var bestSubnet string
	consider := func(h int32, subnet string) {
		hs := &sc.hosts[h]
		if size.MilliCPU > hs.freeCPU || size.MemoryMiB > hs.freeMem {
			return
		}
		subnet, ok := sc.subnetOn(h, r, subnet)
		if !ok {
			return
		}
		score := max(float64(hs.allocCPU-hs.freeCPU+size.MilliCPU)*hs.invCPU,
			float64(hs.allocMem-hs.freeMem+size.MemoryMiB)*hs.invMem)
		if best < 0 || score > bestScore || (score == bestScore && hs.id < sc.hosts[best].id) {
			best, bestScore, bestSubnet = h, score, subnet
		}
	}
	live := c.live
	for j := 0; j < len(live); {
		cand := live[j]
		g := &sc.groups[cand.group]
		if g.head < len(g.members) {
			if h := g.members[g.head]; sc.dead(h) {
				g.head = len(g.members) // its twins are just as full
			} else {
				consider(h, cand.subnet)
			}
		}
		t := g.touched
		for k := 0; k < len(t); {
			if sc.dead(t[k]) {
				t[k] = t[len(t)-1]
				t = t[:len(t)-1]
				continue
			}
			consider(t[k], cand.subnet)
			k++
		}
		g.touched = t
		if g.head == len(g.members) && len(t) == 0 {
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			continue
		}
		j++
	}
	c.live = live
	if best < 0 {
		return -1, "", false
	}
	sc.charge(best, r, bestSubnet)
	hs := &sc.hosts[best]
	g := &sc.groups[hs.group]
	if g.head < len(g.members) && g.members[g.head] == best {
		g.head++
		g.touched = append(g.touched, best)
	}
	sc.version++
	return best, bestSubnet, true
}

// placeSpread is place for a request with a Spread key: among c's live
// groups it looks at every host that fits r (not only each group's head, as
// identical hosts may hold different numbers of the key's tasks) and picks
// the least-used subnet, then the least-used host, then the fullest host,
// then the smallest ID. It costs one look per host.
func (sc *scheduler) placeSpread(c *constraint, r *Request) (int32, string, bool) {
	sp := sc.spreads[r.Spread]
	size := r.Size
	best := int32(-1)
	var bestSubnet string
	var bestSub, bestHost int
	var bestScore float64
	consider := func(h int32, fallback string) {
		hs := &sc.hosts[h]
		if size.MilliCPU > hs.freeCPU || size.MemoryMiB > hs.freeMem {
			return
		}
		subnet, ok := sc.subnetOn(h, r, fallback)
		if !ok {
			return
		}
		subCount := sp.subnets[subnet]
		for _, w := range r.Subnets {
			if n := sp.subnets[w]; n < subCount && slices.Contains(sc.hostOf[h].Subnets, w) && sc.hasAddress(h, r, w) {
				subnet, subCount = w, n
			}
		}
		hostCount := sp.hosts[h]
		score := max(float64(hs.allocCPU-hs.freeCPU+size.MilliCPU)*hs.invCPU,
			float64(hs.allocMem-hs.freeMem+size.MemoryMiB)*hs.invMem)
		better := best < 0 || subCount < bestSub ||
			(subCount == bestSub && (hostCount < bestHost ||
				(hostCount == bestHost && (score > bestScore || (score == bestScore && hs.id < sc.hosts[best].id)))))
		if better {
			best, bestSubnet, bestSub, bestHost, bestScore = h, subnet, subCount, hostCount, score
		}
	}
	for _, cand := range c.live {
		g := &sc.groups[cand.group]
		for _, h := range g.members[g.head:] {
			consider(h, cand.subnet)
		}
		for _, h := range g.touched {
			consider(h, cand.subnet)
		}
	}
	if best < 0 {
		return -1, "", false
	}
	sc.charge(best, r, bestSubnet)
	hs := &sc.hosts[best]
	g := &sc.groups[hs.group]
	if j := slices.Index(g.members[g.head:], best); j >= 0 {
		// Keep the untouched run sorted: move best to its front, then out.
		j += g.head
		copy(g.members[g.head+1:j+1], g.members[g.head:j])
		g.members[g.head] = best
		g.head++
		g.touched = append(g.touched, best)
	}
	sp.hosts[best]++
	sp.subnets[bestSubnet]++
	sc.version++
	return best, bestSubnet, true
}

// diagnose says why r fits on none of c's hosts: no free address in its
// subnets on the hosts with room for it, or the resource that no host has
// enough of, or, when both fall short (or each is found but never
// together), the scarcer one relative to the request. Tasks of one size
// that fail with no placement in between share one message.
func (sc *scheduler) diagnose(c *constraint, r *Request) (string, string) {
	size := r.Size
	if c.diagVersion != sc.version {
		c.diagVersion = sc.version
		if c.diags == nil {
			c.diags = make(map[diagKey]diag)
		}
		clear(c.diags)
		firstCPU, firstMem := true, true
		for _, cand := range c.all {
			for _, h := range sc.groups[cand.group].members {
				hs := &sc.hosts[h]
				if firstCPU || hs.freeCPU > c.maxCPU || (hs.freeCPU == c.maxCPU && hs.id < c.maxCPUID) {
					c.maxCPU, c.maxCPUID, firstCPU = hs.freeCPU, hs.id, false
				}
				if firstMem || hs.freeMem > c.maxMem || (hs.freeMem == c.maxMem && hs.id < c.maxMemID) {
					c.maxMem, c.maxMemID, firstMem = hs.freeMem, hs.id, false
				}
			}
		}
	}
	key := diagKey{size: size, noAddress: r.NoAddress}
	d, ok := c.diags[key]
	if !ok {
		if n, subnets := sc.roomWithoutAddress(c, r); n > 0 {
			d.reason, d.message = ReasonAddress, addressMessage(subnets, n)
		} else {
			d.reason, d.message = c.explain(size)
		}
		c.diags[key] = d
	}
	return d.reason, d.message
}

// roomWithoutAddress counts c's hosts that have room for r's size but no
// address for it, and names the subnets it was looked for in.
func (sc *scheduler) roomWithoutAddress(c *constraint, r *Request) (int, []string) {
	if r.NoAddress {
		return 0, nil
	}
	n := 0
	var subnets []string // r.Subnets, or those of the hosts looked at
	if len(r.Subnets) > 0 {
		subnets = r.Subnets
	}
	for _, cand := range c.all {
		for _, h := range sc.groups[cand.group].members {
			hs := &sc.hosts[h]
			if r.Size.MilliCPU <= hs.freeCPU && r.Size.MemoryMiB <= hs.freeMem {
				if _, ok := sc.subnetOn(h, r, cand.subnet); !ok {
					n++
					if len(r.Subnets) == 0 {
						for _, s := range sc.hostOf[h].Subnets {
							if !slices.Contains(subnets, s) {
								subnets = append(subnets, s)
							}
						}
					}
				}
			}
		}
	}
	return n, subnets
}

func addressMessage(subnets []string, hosts int) string {
	where := fmt.Sprintf("in any of subnets %q", subnets)
	if len(subnets) == 1 {
		where = fmt.Sprintf("in subnet %q", subnets[0])
	}
	return fmt.Sprintf("no ready host has a free address %s: the %d ready host(s) with room for the task have their slice of it full, or no slice", where, hosts)
}

func (c *constraint) explain(size Resources) (string, string) {
	cpuShort := size.MilliCPU > c.maxCPU
	memShort := size.MemoryMiB > c.maxMem
	cpuFree := fmt.Sprintf("%s on host %s", vcpu(c.maxCPU), c.maxCPUID)
	memFree := fmt.Sprintf("%d MiB on host %s", c.maxMem, c.maxMemID)
	switch {
	case cpuShort && !memShort:
		return ReasonCPU, fmt.Sprintf("no ready host has %s free (largest free: %s)", vcpu(size.MilliCPU), cpuFree)
	case memShort && !cpuShort:
		return ReasonMemory, fmt.Sprintf("no ready host has %d MiB of memory free (largest free: %s)", size.MemoryMiB, memFree)
	}
	reason := ReasonMemory
	if fraction(c.maxCPU, size.MilliCPU) < fraction(c.maxMem, size.MemoryMiB) {
		reason = ReasonCPU
	}
	if cpuShort {
		return reason, fmt.Sprintf("no ready host has %s or %d MiB of memory free (largest free: %s; %s)",
			vcpu(size.MilliCPU), size.MemoryMiB, cpuFree, memFree)
	}
	return reason, fmt.Sprintf("no ready host has %s and %d MiB of memory free at once (largest free: %s; %s)",
		vcpu(size.MilliCPU), size.MemoryMiB, cpuFree, memFree)
}

// fraction is how much of need the amount free covers (+Inf when nothing is needed).
func fraction(free, need int64) float64 {
	if need <= 0 {
		return math.Inf(1)
	}
	return float64(free) / float64(need)
}

func vcpu(milli int64) string {
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64) + " vCPU"
}

func ratioOr(r, def float64) float64 {
	if !(r > 0) || math.IsInf(r, 1) {
		return def
	}
	return r
}

func scale(v int64, r float64) int64 {
	f := math.Floor(float64(v) * r)
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

func inv(v int64) float64 {
	if v <= 0 {
		return 0
	}
	return 1 / float64(v)
}
