package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// fargateSizes are the provisioned sizes the synthetic workload draws from:
// the Fargate table from 0.25 vCPU / 0.5 GiB up to 4 vCPU / 8 GiB.
var fargateSizes = func() []Resources {
	var out []Resources
	add := func(milli int64, gib ...float64) {
		for _, g := range gib {
			out = append(out, Resources{MilliCPU: milli, MemoryMiB: int64(g * 1024)})
		}
	}
	add(250, 0.5, 1, 2)
	add(500, 1, 2, 3, 4)
	add(1000, 2, 3, 4, 5, 6, 7, 8)
	add(2000, 4, 5, 6, 7, 8)
	add(4000, 8)
	return out
}()

// SyntheticSnapshot builds a deterministic snapshot: hosts of 16 vCPU /
// 64 GiB with the default allocation ratios, all ready, offering the "sim"
// runtime, half reaching subnet "a" and half subnet "b"; and tasks of mixed
// Fargate sizes (0.25 vCPU / 0.5 GiB up to 4 vCPU / 8 GiB), a third asking
// for subnet "a", a third for "b", a third for any. The same arguments
// always give the same snapshot.
func SyntheticSnapshot(hosts, tasks int) Snapshot {
	rng := rand.New(rand.NewPCG(1, 2))
	s := Snapshot{Hosts: make([]Host, hosts), Pending: make([]Request, tasks)}
	subnetA, subnetB := []string{"a"}, []string{"b"}
	for i := range s.Hosts {
		subnets := subnetA
		if i%2 == 1 {
			subnets = subnetB
		}
		s.Hosts[i] = Host{
			ID:       fmt.Sprintf("host-%05d", i),
			Capacity: Resources{MilliCPU: 16000, MemoryMiB: 64 * 1024},
			Runtimes: []string{"sim"},
			Subnets:  subnets,
			Ready:    true,
		}
	}
	for i := range s.Pending {
		var subnets []string
		switch i % 3 {
		case 0:
			subnets = subnetA
		case 1:
			subnets = subnetB
		}
		s.Pending[i] = Request{
			TaskID:  fmt.Sprintf("task-%06d", i),
			Size:    fargateSizes[rng.IntN(len(fargateSizes))],
			Runtime: "sim",
			Subnets: subnets,
		}
	}
	return s
}

// Bench schedules SyntheticSnapshot(hosts, tasks) with Schedule and with a
// naive first-fit that keeps the same capacity bookkeeping, and returns how
// many placements per second each made. Each is run three times, alternating,
// and the fastest run counts. Compare the two figures, not either alone: the
// machines are shared and noisy.
func Bench(hosts, tasks int) (placementsPerSec, baselinePerSec float64) {
	s := SyntheticSnapshot(hosts, tasks)
	var best, baseline time.Duration
	var placed, baselinePlaced int
	for range 3 {
		start := time.Now()
		p := Schedule(s)
		if d := time.Since(start); best == 0 || d < best {
			best, placed = d, len(p.Placements)
		}
		start = time.Now()
		p = firstFit(s)
		if d := time.Since(start); baseline == 0 || d < baseline {
			baseline, baselinePlaced = d, len(p.Placements)
		}
	}
	return float64(placed) / best.Seconds(), float64(baselinePlaced) / baseline.Seconds()
}

// firstFit is the baseline: each request goes to the first ready host, in
// snapshot order, that offers its runtime, reaches one of its subnets and
// has room. Same bookkeeping as Schedule, no choice of host, no index.
func firstFit(s Snapshot) Plan {
	free := make([]Resources, len(s.Hosts))
	usable := make([]bool, len(s.Hosts)) // ready, and the first host of its ID
	index := make(map[string]int, len(s.Hosts))
	for i, h := range s.Hosts {
		free[i] = h.Allocatable()
		if _, dup := index[h.ID]; !dup {
			index[h.ID] = i
			usable[i] = h.Ready && !h.Draining
		}
	}
	for _, p := range s.Placed {
		if i, ok := index[p.HostID]; ok {
			free[i].MilliCPU -= p.Size.MilliCPU
			free[i].MemoryMiB -= p.Size.MemoryMiB
		}
	}
	plan := Plan{Placements: make([]Placement, 0, len(s.Pending))}
	for _, r := range s.Pending {
		placed := false
		for i := range s.Hosts {
			h := &s.Hosts[i]
			if !usable[i] || r.Size.MilliCPU > free[i].MilliCPU || r.Size.MemoryMiB > free[i].MemoryMiB {
				continue
			}
			if r.Runtime != "" && !slices.Contains(h.Runtimes, r.Runtime) {
				continue
			}
			subnet, ok := chooseSubnet(h, r.Subnets)
			if !ok {
				continue
			}
			free[i].MilliCPU -= r.Size.MilliCPU
			free[i].MemoryMiB -= r.Size.MemoryMiB
			plan.Placements = append(plan.Placements, Placement{TaskID: r.TaskID, HostID: h.ID, Subnet: subnet})
			placed = true
			break
		}
		if !placed {
			plan.Unplaced = append(plan.Unplaced, Unplaced{TaskID: r.TaskID, Reason: "UNPLACED"})
		}
	}
	return plan
}
