package etcd

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

// BenchmarkConcurrentPuts measures what committing concurrent requests
// together saves: clients put 2 KB values (a task record's size) to a
// three-member etcd through the store, batched and with every request
// alone, in alternating turns of the same run; it reports puts/s and the
// members' CPU time per put of both, and their ratios.
//
//	go test -run '^$' -bench ConcurrentPuts -benchtime 1x ./internal/store/etcd/
func BenchmarkConcurrentPuts(b *testing.B) {
	c := etcdtest.Start(b, 3)
	s, err := Open(b.Context(), Config{Endpoints: c.Endpoints(), Prefix: "/bench/"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	value := []byte(strings.Repeat("x", 2048))
	const turns, window = 3, 3 * time.Second
	for _, clients := range []int{1, 16} {
		var puts, cpu [2]float64 // [batched, alone]
		var wall [2]time.Duration
		for turn := range turns {
			for mode, alone := range []bool{false, true} {
				s.writes.alone = alone
				before := membersCPU(b, c)
				start := time.Now()
				var n sync.WaitGroup
				var mu sync.Mutex
				done := 0
				for i := range clients {
					n.Go(func() {
						for k := 0; time.Since(start) < window; k++ {
							key := fmt.Sprintf("n%d/t%d/m%d/c%d/%d", clients, turn, mode, i, k)
							if _, err := s.Put(b.Context(), key, value, store.MustNotExist); err != nil {
								b.Error(err)
								return
							}
							mu.Lock()
							done++
							mu.Unlock()
						}
					})
				}
				n.Wait()
				wall[mode] += time.Since(start)
				cpu[mode] += (membersCPU(b, c) - before).Seconds()
				puts[mode] += float64(done)
			}
		}
		rate := [2]float64{puts[0] / wall[0].Seconds(), puts[1] / wall[1].Seconds()}
		per := [2]time.Duration{time.Duration(cpu[0] / puts[0] * 1e9), time.Duration(cpu[1] / puts[1] * 1e9)}
		b.Logf("%2d clients: puts/s batched %.0f, alone %.0f (%.2f×); members' CPU per put batched %v, alone %v (%.2f×)",
			clients, rate[0], rate[1], rate[0]/rate[1], per[0].Round(time.Microsecond), per[1].Round(time.Microsecond), per[1].Seconds()/per[0].Seconds())
		b.ReportMetric(rate[0]/rate[1], fmt.Sprintf("x-puts/s-%dclients", clients))
	}
}

// membersCPU is the CPU time (user and system) the members have used so
// far.
func membersCPU(b *testing.B, c *etcdtest.Cluster) time.Duration {
	var sec float64
	for i := range 3 {
		p, err := procfs.NewProc(c.PID(i))
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Stat()
		if err != nil {
			b.Fatal(err)
		}
		sec += st.CPUTime()
	}
	return time.Duration(sec * float64(time.Second))
}
