package scheduler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// host is a ready host with allocation ratios of 1, so that its capacity is
// what may be allocated, offering "sim" and reaching subnet "a".
func host(id string, milli, mib int64) Host {
	return Host{ID: id, Capacity: Resources{milli, mib}, CPUAllocationRatio: 1, MemoryAllocationRatio: 1,
		Runtimes: []string{"sim"}, Subnets: []string{"a"}, Ready: true}
}

func req(id string, milli, mib int64) Request {
	return Request{TaskID: id, Size: Resources{milli, mib}}
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

func TestAllocatable(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Host
		want Resources
	}{
		{"defaults 4.0 / 1.0", Host{Capacity: Resources{2000, 4096}}, Resources{8000, 4096}},
		{"custom", Host{Capacity: Resources{2000, 4096}, CPUAllocationRatio: 1.5, MemoryAllocationRatio: 1.25}, Resources{3000, 5120}},
		{"rounded down", Host{Capacity: Resources{1001, 1001}, CPUAllocationRatio: 0.5, MemoryAllocationRatio: 0.5}, Resources{500, 500}},
		{"negative ratio means default", Host{Capacity: Resources{1000, 1000}, CPUAllocationRatio: -1, MemoryAllocationRatio: -2}, Resources{4000, 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.Allocatable(); got != tc.want {
				t.Errorf("Allocatable() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	type want struct {
		placed   []Placement
		unplaced map[string]string // task → reason
	}
	notReady := with(host("h0", 64000, 65536), func(h *Host) { h.Ready = false })
	for _, tc := range []struct {
		name string
		s    Snapshot
		want want
	}{
		{
			name: "fits exactly",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 2048)}, Pending: []Request{req("t1", 1000, 2048)}},
			want: want{placed: []Placement{{"t1", "h1", "a"}}},
		},
		{
			// h1 would win (it is the fuller, and first by ID), but it drains.
			name: "a draining host takes nothing new",
			s: Snapshot{Hosts: []Host{with(host("h1", 8000, 8192), func(h *Host) { h.Draining = true }), host("h2", 8000, 8192)},
				Placed:  []Placed{{TaskID: "p", HostID: "h1", Size: Resources{250, 512}}},
				Pending: []Request{req("t1", 250, 512)}},
			want: want{placed: []Placement{{"t1", "h2", "a"}}},
		},
		{
			name: "memory does not fit",
			s:    Snapshot{Hosts: []Host{host("h1", 4000, 1024)}, Pending: []Request{req("t1", 250, 2048)}},
			want: want{unplaced: map[string]string{"t1": ReasonMemory}},
		},
		{
			name: "cpu does not fit",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 8192)}, Pending: []Request{req("t1", 2000, 512)}},
			want: want{unplaced: map[string]string{"t1": ReasonCPU}},
		},
		{
			name: "both short, memory scarcer",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 1024)}, Pending: []Request{req("t1", 1500, 4096)}},
			want: want{unplaced: map[string]string{"t1": ReasonMemory}},
		},
		{
			name: "both short, cpu scarcer",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 1024)}, Pending: []Request{req("t1", 4000, 1500)}},
			want: want{unplaced: map[string]string{"t1": ReasonCPU}},
		},
		{
			name: "each found but never together",
			s: Snapshot{Hosts: []Host{host("h1", 4000, 1024), host("h2", 1000, 8192)},
				Pending: []Request{req("t1", 2000, 2048)}},
			// Largest free covers 4000/2000 = 2× the CPU and 8192/2048 = 4× the memory: CPU is scarcer.
			want: want{unplaced: map[string]string{"t1": ReasonCPU}},
		},
		{
			name: "no hosts",
			s:    Snapshot{Pending: []Request{req("t1", 250, 512)}},
			want: want{unplaced: map[string]string{"t1": ReasonNoHost}},
		},
		{
			name: "no ready hosts",
			s:    Snapshot{Hosts: []Host{notReady}, Pending: []Request{req("t1", 250, 512)}},
			want: want{unplaced: map[string]string{"t1": ReasonNoHost}},
		},
		{
			name: "not-ready host skipped",
			s:    Snapshot{Hosts: []Host{notReady, host("h1", 1000, 1024)}, Pending: []Request{req("t1", 250, 512), req("t2", 4000, 512)}},
			want: want{placed: []Placement{{"t1", "h1", "a"}}, unplaced: map[string]string{"t2": ReasonCPU}},
		},
		{
			name: "runtime offered",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192), with(host("h2", 1000, 1024), func(h *Host) { h.Runtimes = []string{"sim", "runc"} })},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Runtime = "runc" })}},
			want: want{placed: []Placement{{"t1", "h2", "a"}}},
		},
		{
			name: "runtime missing",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192), with(host("h2", 8000, 8192), func(h *Host) { h.Runtimes = []string{"runc"}; h.Ready = false })},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Runtime = "runc" })}},
			want: want{unplaced: map[string]string{"t1": ReasonRuntime}},
		},
		{
			name: "subnet missing",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192)},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Subnets = []string{"x", "y"} })}},
			want: want{unplaced: map[string]string{"t1": ReasonSubnet}},
		},
		{
			name: "runtime and subnet only on different hosts",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192), with(host("h2", 8000, 8192), func(h *Host) { h.Runtimes = []string{"runc"} })},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Runtime = "runc"; r.Subnets = []string{"a"} })}},
			want: want{placed: []Placement{{"t1", "h2", "a"}}},
		},
		{
			name: "runtime host reaches no requested subnet",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192), with(host("h2", 8000, 8192), func(h *Host) { h.Runtimes = []string{"runc"}; h.Subnets = []string{"b"} })},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Runtime = "runc"; r.Subnets = []string{"a"} })}},
			want: want{unplaced: map[string]string{"t1": ReasonSubnet}},
		},
		{
			name: "subnet: first of the request's that the host reaches",
			s: Snapshot{Hosts: []Host{with(host("h1", 8000, 8192), func(h *Host) { h.Subnets = []string{"x", "y"} })},
				Pending: []Request{
					with(req("t1", 250, 512), func(r *Request) { r.Subnets = []string{"z", "y", "x"} }),
					req("t2", 250, 512),
				}},
			want: want{placed: []Placement{{"t1", "h1", "y"}, {"t2", "h1", "x"}}},
		},
		{
			name: "subnet: none named, host has none",
			s: Snapshot{Hosts: []Host{with(host("h1", 8000, 8192), func(h *Host) { h.Subnets = nil })},
				Pending: []Request{req("t1", 250, 512)}},
			want: want{placed: []Placement{{"t1", "h1", ""}}},
		},
		{
			name: "bin-packing prefers the fuller host",
			s: Snapshot{Hosts: []Host{host("h1", 4000, 4096), host("h2", 4000, 4096)},
				Placed:  []Placed{{TaskID: "old", HostID: "h2", Size: Resources{1000, 1024}}},
				Pending: []Request{req("t1", 1000, 1024)}},
			want: want{placed: []Placement{{"t1", "h2", "a"}}},
		},
		{
			name: "bin-packing: the host left most full, measured by dominant share",
			s: Snapshot{Hosts: []Host{host("big", 16000, 16384), host("small", 2000, 2048)},
				Pending: []Request{req("t1", 1000, 1024), req("t2", 1000, 1024), req("t3", 1000, 1024)}},
			want: want{placed: []Placement{{"t1", "small", "a"}, {"t2", "small", "a"}, {"t3", "big", "a"}}},
		},
		{
			name: "ties go to the smallest host ID",
			s:    Snapshot{Hosts: []Host{host("h3", 1000, 1024), host("h1", 1000, 1024), host("h2", 1000, 1024)}, Pending: []Request{req("t1", 500, 512)}},
			want: want{placed: []Placement{{"t1", "h1", "a"}}},
		},
		{
			name: "placements in one plan accumulate",
			s: Snapshot{Hosts: []Host{host("h1", 1000, 2048)},
				Pending: []Request{req("t1", 600, 512), req("t2", 600, 512), req("t3", 400, 512)}},
			want: want{placed: []Placement{{"t1", "h1", "a"}, {"t3", "h1", "a"}}, unplaced: map[string]string{"t2": ReasonCPU}},
		},
		{
			name: "placed tasks on unknown hosts are ignored",
			s: Snapshot{Hosts: []Host{host("h1", 1000, 1024)}, Placed: []Placed{{TaskID: "old", HostID: "gone", Size: Resources{1000, 1024}}},
				Pending: []Request{req("t1", 1000, 1024)}},
			want: want{placed: []Placement{{"t1", "h1", "a"}}},
		},
		{
			name: "already over-allocated host takes nothing",
			s: Snapshot{Hosts: []Host{host("h1", 1000, 1024)}, Placed: []Placed{{TaskID: "old", HostID: "h1", Size: Resources{2000, 512}}},
				Pending: []Request{req("t1", 0, 256)}},
			want: want{unplaced: map[string]string{"t1": ReasonCPU}},
		},
		{
			name: "negative size",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 1024)}, Pending: []Request{req("t1", -1, 512)}},
			want: want{unplaced: map[string]string{"t1": ReasonInvalidRequest}},
		},
		{
			name: "repeated host ID: first occurrence counts",
			s:    Snapshot{Hosts: []Host{host("h1", 1000, 1024), host("h1", 8000, 8192)}, Pending: []Request{req("t1", 2000, 512)}},
			want: want{unplaced: map[string]string{"t1": ReasonCPU}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Schedule(tc.s)
			if !slices.Equal(got.Placements, tc.want.placed) && len(got.Placements)+len(tc.want.placed) > 0 {
				t.Errorf("placements = %v, want %v", got.Placements, tc.want.placed)
			}
			reasons := map[string]string{}
			for _, u := range got.Unplaced {
				reasons[u.TaskID] = u.Reason
				if u.Message == "" {
					t.Errorf("%s: empty message", u.TaskID)
				}
			}
			if len(reasons)+len(tc.want.unplaced) > 0 && !reflect.DeepEqual(reasons, tc.want.unplaced) {
				t.Errorf("unplaced = %v, want %v (%v)", reasons, tc.want.unplaced, got.Unplaced)
			}
		})
	}
}

func TestMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Snapshot
		want string
	}{
		{"memory", Snapshot{Hosts: []Host{host("h1", 4000, 1024), host("h2", 4000, 512)}, Pending: []Request{req("t", 250, 2048)}},
			"no ready host has 2048 MiB of memory free (largest free: 1024 MiB on host h1)"},
		{"cpu", Snapshot{Hosts: []Host{host("h1", 1500, 8192)}, Pending: []Request{req("t", 2000, 512)}},
			"no ready host has 2 vCPU free (largest free: 1.5 vCPU on host h1)"},
		{"runtime", Snapshot{Hosts: []Host{host("h1", 1500, 8192)}, Pending: []Request{with(req("t", 250, 512), func(r *Request) { r.Runtime = "runc" })}},
			`no ready host offers runtime "runc"`},
		{"subnet", Snapshot{Hosts: []Host{host("h1", 1500, 8192)}, Pending: []Request{with(req("t", 250, 512), func(r *Request) { r.Subnets = []string{"x", "y"} })}},
			`no ready host reaches any of subnets ["x" "y"]`},
		{"no host", Snapshot{Hosts: []Host{with(host("h1", 1500, 8192), func(h *Host) { h.Ready = false })}, Pending: []Request{req("t", 250, 512)}},
			"no ready host (1 hosts known, none ready)"},
		{"draining", Snapshot{Hosts: []Host{with(host("h1", 1500, 8192), func(h *Host) { h.Draining = true }),
			with(host("h2", 1500, 8192), func(h *Host) { h.Ready = false })}, Pending: []Request{req("t", 250, 512)}},
			"no ready host (2 hosts known: 1 draining, the others not ready)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Schedule(tc.s)
			if len(p.Unplaced) != 1 || p.Unplaced[0].Message != tc.want {
				t.Errorf("unplaced = %+v, want message %q", p.Unplaced, tc.want)
			}
		})
	}
}

func TestAllocationRatios(t *testing.T) {
	// A 2-vCPU, 4-GiB host.
	base := Host{ID: "h1", Capacity: Resources{2000, 4096}, Runtimes: []string{"sim"}, Ready: true}
	for _, tc := range []struct {
		name       string
		h          Host
		size       Resources
		wantPlaced int
		wantReason string
	}{
		{"default cpu ratio 4: 32 × 0.25 vCPU", base, Resources{250, 64}, 32, ReasonCPU},
		{"default memory ratio 1: 8 × 0.5 GiB", base, Resources{250, 512}, 8, ReasonMemory},
		{"cpu ratio 1: 8 × 0.25 vCPU", with(base, func(h *Host) { h.CPUAllocationRatio = 1 }), Resources{250, 64}, 8, ReasonCPU},
		{"memory ratio 2: 16 × 0.5 GiB", with(base, func(h *Host) { h.MemoryAllocationRatio = 2 }), Resources{250, 512}, 16, ReasonMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Snapshot{Hosts: []Host{tc.h}}
			for i := range 40 {
				s.Pending = append(s.Pending, Request{TaskID: fmt.Sprint(i), Size: tc.size})
			}
			p := Schedule(s)
			if len(p.Placements) != tc.wantPlaced {
				t.Errorf("placed %d, want %d", len(p.Placements), tc.wantPlaced)
			}
			for _, u := range p.Unplaced {
				if u.Reason != tc.wantReason {
					t.Fatalf("unplaced %+v, want reason %s", u, tc.wantReason)
				}
			}
		})
	}
}

// randomSnapshot draws hosts from a few shapes, so that many are identical
// (the scheduler groups those), with random readiness, ratios, runtimes,
// subnets, placed tasks and requests.
func randomSnapshot(rng *rand.Rand) Snapshot {
	var s Snapshot
	pick := func(xs []string) []string {
		var out []string
		for _, x := range xs {
			if rng.IntN(2) == 0 {
				out = append(out, x)
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	runtimes, subnets := []string{"sim", "runc", "gvisor"}, []string{"a", "b", "c"}
	nHosts := rng.IntN(30)
	for i := range nHosts {
		shape := rng.IntN(3)
		h := Host{
			ID:       fmt.Sprintf("h%02d", rng.IntN(1000)),
			Capacity: Resources{int64(1000 * (1 + shape*3)), int64(2048 * (1 + shape))},
			Runtimes: []string{"sim"},
			Subnets:  []string{"a"},
			Ready:    rng.IntN(8) != 0,
		}
		if i%3 == 0 {
			h.Runtimes, h.Subnets = pick(runtimes), pick(subnets)
			h.CPUAllocationRatio = []float64{0, 1, 2}[rng.IntN(3)]
			h.MemoryAllocationRatio = []float64{0, 1, 1.5}[rng.IntN(3)]
		}
		if rng.IntN(2) == 0 {
			// Few addresses, so that slices run out; some subnets have none.
			h.Addresses = map[string]int{}
			for _, n := range h.Subnets {
				if rng.IntN(4) != 0 {
					h.Addresses[n] = rng.IntN(4)
				}
			}
		}
		s.Hosts = append(s.Hosts, h)
	}
	size := func() Resources {
		return fargateSizes[rng.IntN(len(fargateSizes))]
	}
	for i := range rng.IntN(20) {
		id := "gone"
		if nHosts > 0 && rng.IntN(5) != 0 {
			id = s.Hosts[rng.IntN(nHosts)].ID
		}
		s.Placed = append(s.Placed, Placed{TaskID: fmt.Sprint("p", i), HostID: id, Size: size(),
			Subnet: subnets[rng.IntN(3)], NoAddress: rng.IntN(5) == 0})
	}
	for i := range rng.IntN(80) {
		r := Request{TaskID: fmt.Sprint("t", i), Size: size()}
		if rng.IntN(4) == 0 {
			r.Runtime = runtimes[rng.IntN(3)]
		}
		if rng.IntN(4) == 0 {
			r.Subnets = pick(subnets)
		}
		if rng.IntN(50) == 0 {
			r.Size = Resources{}
		}
		r.NoAddress = rng.IntN(6) == 0
		s.Pending = append(s.Pending, r)
	}
	return s
}

func cloneSnapshot(s Snapshot) Snapshot {
	c := Snapshot{Hosts: slices.Clone(s.Hosts), Placed: slices.Clone(s.Placed), Pending: slices.Clone(s.Pending)}
	for i := range c.Hosts {
		c.Hosts[i].Runtimes = slices.Clone(c.Hosts[i].Runtimes)
		c.Hosts[i].Subnets = slices.Clone(c.Hosts[i].Subnets)
		c.Hosts[i].Addresses = maps.Clone(c.Hosts[i].Addresses)
	}
	for i := range c.Pending {
		c.Pending[i].Subnets = slices.Clone(c.Pending[i].Subnets)
	}
	return c
}

// reference is the rules written as plainly as possible: for each request,
// look at every host.
func reference(s Snapshot) Plan {
	type st struct {
		h    *Host
		free Resources
		addr map[string]int // nil: not counted
	}
	has := func(x *st, r Request, subnet string) bool {
		return x.addr == nil || r.NoAddress || subnet == "" || x.addr[subnet] > 0
	}
	// The subnet r gets on x: the first of r's (or x's) subnets that x
	// reaches and has an address in.
	subnetOn := func(x *st, r Request) (string, bool) {
		want := r.Subnets
		if len(want) == 0 {
			if len(x.h.Subnets) == 0 {
				return "", true
			}
			want = x.h.Subnets
		}
		for _, w := range want {
			if slices.Contains(x.h.Subnets, w) && has(x, r, w) {
				return w, true
			}
		}
		return "", false
	}
	var hosts []*st
	byID := map[string]*st{}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if _, dup := byID[h.ID]; dup {
			continue
		}
		x := &st{h: h, free: h.Allocatable(), addr: maps.Clone(h.Addresses)}
		byID[h.ID] = x
		if h.Ready {
			hosts = append(hosts, x)
		}
	}
	for _, p := range s.Placed {
		if x, ok := byID[p.HostID]; ok {
			x.free.MilliCPU -= p.Size.MilliCPU
			x.free.MemoryMiB -= p.Size.MemoryMiB
			if x.addr != nil && p.Subnet != "" && !p.NoAddress {
				x.addr[p.Subnet]--
			}
		}
	}
	var plan Plan
	for _, r := range s.Pending {
		var best *st
		var bestScore float64
		var bestSubnet string
		anyRuntime, anySubnet, roomNoAddress := false, false, false
		var maxCPU, maxMem int64
		first := true
		for _, x := range hosts {
			if !offers(x.h, r.Runtime) {
				continue
			}
			anyRuntime = true
			if _, ok := chooseSubnet(x.h, r.Subnets); !ok {
				continue
			}
			anySubnet = true
			if first || x.free.MilliCPU > maxCPU {
				maxCPU = x.free.MilliCPU
			}
			if first || x.free.MemoryMiB > maxMem {
				maxMem = x.free.MemoryMiB
			}
			first = false
			if r.Size.MilliCPU > x.free.MilliCPU || r.Size.MemoryMiB > x.free.MemoryMiB {
				continue
			}
			subnet, ok := subnetOn(x, r)
			if !ok {
				roomNoAddress = true
				continue
			}
			a := x.h.Allocatable()
			score := max(float64(a.MilliCPU-x.free.MilliCPU+r.Size.MilliCPU)*inv(a.MilliCPU),
				float64(a.MemoryMiB-x.free.MemoryMiB+r.Size.MemoryMiB)*inv(a.MemoryMiB))
			if best == nil || score > bestScore || (score == bestScore && x.h.ID < best.h.ID) {
				best, bestScore, bestSubnet = x, score, subnet
			}
		}
		if best != nil {
			best.free.MilliCPU -= r.Size.MilliCPU
			best.free.MemoryMiB -= r.Size.MemoryMiB
			if best.addr != nil && bestSubnet != "" && !r.NoAddress {
				best.addr[bestSubnet]--
			}
			plan.Placements = append(plan.Placements, Placement{r.TaskID, best.h.ID, bestSubnet})
			continue
		}
		reason := ReasonMemory
		switch {
		case len(hosts) == 0:
			reason = ReasonNoHost
		case !anyRuntime:
			reason = ReasonRuntime
		case !anySubnet:
			reason = ReasonSubnet
		case roomNoAddress:
			reason = ReasonAddress
		case r.Size.MilliCPU > maxCPU && r.Size.MemoryMiB <= maxMem:
			reason = ReasonCPU
		case r.Size.MemoryMiB > maxMem && r.Size.MilliCPU <= maxCPU:
		case fraction(maxCPU, r.Size.MilliCPU) < fraction(maxMem, r.Size.MemoryMiB):
			reason = ReasonCPU
		}
		plan.Unplaced = append(plan.Unplaced, Unplaced{TaskID: r.TaskID, Reason: reason})
	}
	return plan
}

// TestRandomSnapshots checks, over many random snapshots, that no host is
// ever allocated beyond its allocatable capacity, that every placement
// respects readiness, runtime and subnets, that every task is accounted for
// once, that the plan equals the plain reference (the grouping and pruning
// change nothing), that it does not depend on the order of hosts, and that
// the snapshot is not modified.
func TestRandomSnapshots(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	outcomes := map[string]int{}
	defer func() { t.Logf("outcomes: %v", outcomes) }()
	for iter := range 2000 {
		s := randomSnapshot(rng)
		orig := cloneSnapshot(s)
		plan := Schedule(s)
		if !reflect.DeepEqual(s, orig) {
			t.Fatalf("#%d: snapshot modified", iter)
		}

		// Capacity and constraints.
		first := map[string]*Host{}
		used := map[string]Resources{}
		for i := range s.Hosts {
			if _, dup := first[s.Hosts[i].ID]; !dup {
				first[s.Hosts[i].ID] = &s.Hosts[i]
			}
		}
		addrUsed := map[string]int{} // host/subnet
		for _, p := range s.Placed {
			u := used[p.HostID]
			used[p.HostID] = Resources{u.MilliCPU + p.Size.MilliCPU, u.MemoryMiB + p.Size.MemoryMiB}
			if !p.NoAddress {
				addrUsed[p.HostID+"/"+p.Subnet]++
			}
		}
		reqs := map[string]Request{}
		for _, r := range s.Pending {
			reqs[r.TaskID] = r
		}
		seen := map[string]bool{}
		for _, p := range plan.Placements {
			r, h := reqs[p.TaskID], first[p.HostID]
			if seen[p.TaskID] {
				t.Fatalf("#%d: %s accounted for twice", iter, p.TaskID)
			}
			seen[p.TaskID] = true
			if h == nil || !h.Ready || !offers(h, r.Runtime) {
				t.Fatalf("#%d: %+v on a host that is missing, not ready or lacks runtime %q", iter, p, r.Runtime)
			}
			if want, ok := chooseSubnet(h, r.Subnets); !ok || (want != p.Subnet && h.Addresses == nil) {
				t.Fatalf("#%d: %+v: subnet should be %q (ok=%v)", iter, p, want, ok)
			}
			if !slices.Contains(h.Subnets, p.Subnet) && len(h.Subnets) > 0 || len(r.Subnets) > 0 && !slices.Contains(r.Subnets, p.Subnet) {
				t.Fatalf("#%d: %+v: subnet is not one the host reaches and the task accepts", iter, p)
			}
			if h.Addresses != nil && p.Subnet != "" && !r.NoAddress {
				addrUsed[p.HostID+"/"+p.Subnet]++
				if addrUsed[p.HostID+"/"+p.Subnet] > h.Addresses[p.Subnet] {
					t.Fatalf("#%d: host %s gave more addresses of subnet %s than it has (%d)", iter, h.ID, p.Subnet, h.Addresses[p.Subnet])
				}
			}
			u := used[p.HostID]
			u = Resources{u.MilliCPU + r.Size.MilliCPU, u.MemoryMiB + r.Size.MemoryMiB}
			used[p.HostID] = u
			if a := h.Allocatable(); u.MilliCPU > a.MilliCPU || u.MemoryMiB > a.MemoryMiB {
				t.Fatalf("#%d: host %s over-allocated: %+v > %+v", iter, h.ID, u, a)
			}
		}
		for _, u := range plan.Unplaced {
			if seen[u.TaskID] {
				t.Fatalf("#%d: %s accounted for twice", iter, u.TaskID)
			}
			seen[u.TaskID] = true
		}
		if len(seen) != len(s.Pending) {
			t.Fatalf("#%d: %d tasks accounted for, want %d", iter, len(seen), len(s.Pending))
		}

		outcomes["placed"] += len(plan.Placements)
		for _, u := range plan.Unplaced {
			outcomes[u.Reason]++
		}

		// Same as the reference.
		ref := reference(s)
		if !slices.Equal(plan.Placements, ref.Placements) {
			t.Fatalf("#%d: placements\n got %v\nwant %v", iter, plan.Placements, ref.Placements)
		}
		if len(plan.Unplaced) != len(ref.Unplaced) {
			t.Fatalf("#%d: unplaced\n got %v\nwant %v", iter, plan.Unplaced, ref.Unplaced)
		}
		for i, u := range plan.Unplaced {
			if u.TaskID != ref.Unplaced[i].TaskID || u.Reason != ref.Unplaced[i].Reason {
				t.Fatalf("#%d: unplaced\n got %v\nwant %v", iter, plan.Unplaced, ref.Unplaced)
			}
		}

		// Deterministic, and independent of the order of distinct hosts.
		if again := Schedule(s); !reflect.DeepEqual(plan, again) {
			t.Fatalf("#%d: two runs differ:\n%v\n%v", iter, plan, again)
		}
		ids := map[string]bool{}
		distinct := true
		for _, h := range s.Hosts {
			distinct = distinct && !ids[h.ID]
			ids[h.ID] = true
		}
		if distinct {
			shuffled := cloneSnapshot(s)
			rng.Shuffle(len(shuffled.Hosts), func(i, j int) { shuffled.Hosts[i], shuffled.Hosts[j] = shuffled.Hosts[j], shuffled.Hosts[i] })
			if again := Schedule(shuffled); !reflect.DeepEqual(plan, again) {
				t.Fatalf("#%d: host order changed the plan:\n%v\n%v", iter, plan, again)
			}
		}
	}
}

func TestSnapshotNotModified(t *testing.T) {
	s := SyntheticSnapshot(50, 2000)
	s.Placed = []Placed{{TaskID: "old", HostID: "host-00001", Size: Resources{1000, 1024}}}
	orig := cloneSnapshot(s)
	Schedule(s)
	if !reflect.DeepEqual(s, orig) {
		t.Fatal("Schedule modified its snapshot")
	}
}

func TestSyntheticSnapshotDeterministic(t *testing.T) {
	a, b := SyntheticSnapshot(10, 100), SyntheticSnapshot(10, 100)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("SyntheticSnapshot is not deterministic")
	}
	if p := Schedule(a); !reflect.DeepEqual(p, Schedule(b)) {
		t.Fatal("Schedule is not deterministic")
	}
	if !strings.HasPrefix(a.Hosts[0].ID, "host-") {
		t.Fatal(a.Hosts[0].ID)
	}
}

func TestBench(t *testing.T) {
	got, base := Bench(1000, 10000)
	if !(got > 0) || !(base > 0) {
		t.Fatalf("Bench = %v, %v", got, base)
	}
	t.Logf("Bench(1000, 10000): %.0f placements/s, first-fit baseline %.0f/s, ratio %.1f", got, base, got/base)
}

// TestAllocationsDoNotGrowWithTasks: placing allocates per host and per
// distinct constraint, not per task (beyond the plan's own slice).
func TestAllocationsDoNotGrowWithTasks(t *testing.T) {
	small, large := distinctSnapshot(2000, 500), distinctSnapshot(2000, 5000)
	if p := Schedule(large); len(p.Unplaced) > 0 {
		t.Fatalf("%d unplaced; the fleet should hold every task", len(p.Unplaced))
	}
	a := testing.AllocsPerRun(3, func() { Schedule(small) })
	b := testing.AllocsPerRun(3, func() { Schedule(large) })
	t.Logf("allocations: %v for 500 tasks, %v for 5000", a, b)
	if b > a+20 {
		t.Errorf("allocations grew from %v to %v with ten times the tasks", a, b)
	}
}

// TestSpread: requests with a Spread key go to the least-used subnet, then
// the least-used host, counting tasks already placed; others bin-pack.
func TestSpread(t *testing.T) {
	two := func(id string) Host {
		return with(host(id, 8000, 16384), func(h *Host) { h.Subnets = []string{"a", "b"} })
	}
	s := Snapshot{
		Hosts:  []Host{two("h1"), two("h2"), two("h3")},
		Placed: []Placed{{TaskID: "old", HostID: "h1", Size: Resources{250, 512}, Subnet: "a", Spread: "svc"}},
	}
	for i := 0; i < 5; i++ {
		s.Pending = append(s.Pending, Request{TaskID: fmt.Sprint("t", i), Size: Resources{250, 512}, Subnets: []string{"a", "b"}, Spread: "svc"})
	}
	s.Pending = append(s.Pending, Request{TaskID: "packed", Size: Resources{250, 512}, Subnets: []string{"a", "b"}})
	plan := Schedule(s)
	if len(plan.Unplaced) != 0 {
		t.Fatalf("unplaced: %+v", plan.Unplaced)
	}
	hosts, subnets := map[string]int{"h1": 1}, map[string]int{"a": 1}
	for _, p := range plan.Placements[:5] {
		hosts[p.HostID]++
		subnets[p.Subnet]++
	}
	if hosts["h1"] != 2 || hosts["h2"] != 2 || hosts["h3"] != 2 {
		t.Errorf("tasks per host %v, want 2 each", hosts)
	}
	if subnets["a"] != 3 || subnets["b"] != 3 {
		t.Errorf("tasks per subnet %v, want 3 each", subnets)
	}
	// The fullest host takes the task that does not spread.
	if p := plan.Placements[5]; p.HostID != "h1" {
		t.Errorf("the unspread task went to %s, want h1 (the fullest, by ID)", p.HostID)
	}
}

// TestAddresses: hosts that count their addresses (a slice of each subnet)
// take no more tasks in a subnet than they have addresses there; a task
// goes to another host, or another of its subnets, that still has one, and
// otherwise waits with RESOURCE:ENI naming the subnet.
func TestAddresses(t *testing.T) {
	addrs := func(h Host, m map[string]int) Host { h.Addresses = m; return h }
	ab := func(h Host) Host { h.Subnets = []string{"a", "b"}; return h }
	subnets := func(r Request, s ...string) Request { r.Subnets = s; return r }
	for _, tc := range []struct {
		name     string
		s        Snapshot
		placed   []Placement
		unplaced map[string]string
	}{
		{
			name:     "no more tasks than addresses",
			s:        Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 2})}, Pending: []Request{req("t1", 250, 512), req("t2", 250, 512), req("t3", 250, 512)}},
			placed:   []Placement{{"t1", "h1", "a"}, {"t2", "h1", "a"}},
			unplaced: map[string]string{"t3": ReasonAddress},
		},
		{
			name: "placed tasks hold addresses, simulated ones none",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 2})},
				Placed:  []Placed{{TaskID: "p1", HostID: "h1", Subnet: "a"}, {TaskID: "p2", HostID: "h1", Subnet: "a", NoAddress: true}},
				Pending: []Request{req("t1", 250, 512), req("t2", 250, 512)}},
			placed:   []Placement{{"t1", "h1", "a"}},
			unplaced: map[string]string{"t2": ReasonAddress},
		},
		{
			name: "the fuller host has no address left: the other takes it",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 1000, 1024), map[string]int{"a": 0}), addrs(host("h2", 8000, 8192), map[string]int{"a": 5})},
				Pending: []Request{req("t1", 250, 512)}},
			placed: []Placement{{"t1", "h2", "a"}},
		},
		{
			name: "a host with no slice of the subnet takes none of its tasks",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{})},
				Pending: []Request{req("t1", 250, 512)}},
			unplaced: map[string]string{"t1": ReasonAddress},
		},
		{
			name: "the next of the task's subnets with an address",
			s: Snapshot{Hosts: []Host{addrs(ab(host("h1", 8000, 8192)), map[string]int{"a": 0, "b": 1})},
				Pending: []Request{subnets(req("t1", 250, 512), "a", "b"), subnets(req("t2", 250, 512), "a", "b")}},
			placed:   []Placement{{"t1", "h1", "b"}},
			unplaced: map[string]string{"t2": ReasonAddress},
		},
		{
			name: "a task naming no subnet gets the host's next with an address",
			s: Snapshot{Hosts: []Host{addrs(ab(host("h1", 8000, 8192)), map[string]int{"a": 0, "b": 1})},
				Pending: []Request{req("t1", 250, 512)}},
			placed: []Placement{{"t1", "h1", "b"}},
		},
		{
			name: "a simulated task needs no address",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 0})},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.NoAddress = true })}},
			placed: []Placement{{"t1", "h1", "a"}},
		},
		{
			name: "hosts that do not count addresses are not limited",
			s: Snapshot{Hosts: []Host{host("h1", 8000, 8192)},
				Placed:  []Placed{{TaskID: "p1", HostID: "h1", Subnet: "a"}},
				Pending: []Request{req("t1", 250, 512)}},
			placed: []Placement{{"t1", "h1", "a"}},
		},
		{
			name: "twin hosts: each one's addresses",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 1}), addrs(host("h2", 8000, 8192), map[string]int{"a": 1})},
				Pending: []Request{req("t1", 250, 512), req("t2", 250, 512), req("t3", 250, 512)}},
			placed:   []Placement{{"t1", "h1", "a"}, {"t2", "h2", "a"}},
			unplaced: map[string]string{"t3": ReasonAddress},
		},
		{
			name: "memory short and no address: memory is named (no host has room)",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 1024), map[string]int{"a": 0})},
				Pending: []Request{req("t1", 250, 2048)}},
			unplaced: map[string]string{"t1": ReasonMemory},
		},
		{
			name: "spread: to the host that still has an address",
			s: Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 1}), addrs(host("h2", 8000, 8192), map[string]int{"a": 1})},
				Placed:  []Placed{{TaskID: "p1", HostID: "h2", Subnet: "a", Spread: "svc"}},
				Pending: []Request{with(req("t1", 250, 512), func(r *Request) { r.Spread = "svc" }), with(req("t2", 250, 512), func(r *Request) { r.Spread = "svc" })}},
			placed:   []Placement{{"t1", "h1", "a"}},
			unplaced: map[string]string{"t2": ReasonAddress},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := cloneSnapshot(tc.s)
			got := Schedule(tc.s)
			if !reflect.DeepEqual(tc.s, orig) {
				t.Fatal("Schedule modified its snapshot")
			}
			if !slices.Equal(got.Placements, tc.placed) && len(got.Placements)+len(tc.placed) > 0 {
				t.Errorf("placements = %v, want %v", got.Placements, tc.placed)
			}
			reasons := map[string]string{}
			for _, u := range got.Unplaced {
				reasons[u.TaskID] = u.Reason
			}
			if len(reasons)+len(tc.unplaced) > 0 && !reflect.DeepEqual(reasons, tc.unplaced) {
				t.Errorf("unplaced = %v, want %v (%v)", reasons, tc.unplaced, got.Unplaced)
			}
		})
	}
	p := Schedule(Snapshot{Hosts: []Host{addrs(host("h1", 8000, 8192), map[string]int{"a": 0})}, Pending: []Request{subnets(req("t", 250, 512), "a")}})
	if want := `no ready host has a free address in subnet "a": the 1 ready host(s) with room for the task have their slice of it full, or no slice`; len(p.Unplaced) != 1 || p.Unplaced[0].Message != want {
		t.Errorf("unplaced = %+v, want message %q", p.Unplaced, want)
	}
}

// TestPlacedCounts checks, over random snapshots, that Placed entries
// standing for several tasks (Count) give the plan that one entry per task
// gives: a caller may hand over its hosts' use summed by host, subnet,
// spread and address.
func TestPlacedCounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	summed := 0
	for iter := range 1000 {
		s := randomSnapshot(rng)
		type key struct {
			host, subnet, spread string
			noAddress            bool
		}
		sums := map[key]*Placed{}
		var keys []key
		for _, p := range s.Placed {
			k := key{p.HostID, p.Subnet, p.Spread, p.NoAddress}
			if sums[k] == nil {
				sums[k] = &Placed{HostID: p.HostID, Subnet: p.Subnet, Spread: p.Spread, NoAddress: p.NoAddress}
				keys = append(keys, k)
			}
			sum := sums[k]
			sum.Count++
			sum.Size.MilliCPU += p.Size.MilliCPU
			sum.Size.MemoryMiB += p.Size.MemoryMiB
		}
		agg := cloneSnapshot(s)
		agg.Placed = nil
		for _, k := range keys {
			agg.Placed = append(agg.Placed, *sums[k])
			if sums[k].Count > 1 {
				summed++
			}
		}
		if want, got := Schedule(s), Schedule(agg); !reflect.DeepEqual(want, got) {
			t.Fatalf("#%d: with the use summed the plan differs:\n got %v\nwant %v", iter, got, want)
		}
	}
	if summed == 0 {
		t.Fatal("no snapshot had two tasks alike on a host: the test compared nothing")
	}
	t.Logf("%d summed entries", summed)
}
