package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The figure to read is the ratio of placements/s between Schedule and the
// first-fit baseline measured in the same run, not either alone.

func BenchmarkSchedule1000Hosts10000Tasks(b *testing.B) {
	benchmark(b, SyntheticSnapshot(1000, 10000), Schedule)
}

func BenchmarkFirstFitBaseline1000Hosts10000Tasks(b *testing.B) {
	benchmark(b, SyntheticSnapshot(1000, 10000), firstFit)
}

// The same, on a fleet half full already, where every host differs from the
// others so that no two can be grouped: the scheduler's worst case.
func BenchmarkScheduleDistinctHosts1000Hosts10000Tasks(b *testing.B) {
	benchmark(b, distinctSnapshot(1000, 10000), Schedule)
}

func BenchmarkFirstFitBaselineDistinctHosts1000Hosts10000Tasks(b *testing.B) {
	benchmark(b, distinctSnapshot(1000, 10000), firstFit)
}

func benchmark(b *testing.B, s Snapshot, schedule func(Snapshot) Plan) {
	b.ReportAllocs()
	placed := 0
	for b.Loop() {
		placed += len(schedule(s).Placements)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
}

func distinctSnapshot(hosts, tasks int) Snapshot {
	s := SyntheticSnapshot(hosts, tasks)
	rng := rand.New(rand.NewPCG(3, 4))
	for i, h := range s.Hosts {
		for j := range 1 + i%12 {
			s.Placed = append(s.Placed, Placed{TaskID: fmt.Sprintf("old-%d-%d", i, j), HostID: h.ID,
				Size: fargateSizes[rng.IntN(len(fargateSizes))]})
		}
	}
	return s
}
