package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
)

// BenchmarkRuncWarmLaunch measures RunTask → RUNNING (startedAt −
// createdAt, p50/p99 over 30 tasks one at a time) on runc with a warm pool
// (`--warm-pool runc=2`, each task a hit: the next starts once the pool
// has refilled) and without one (cold), each next to bare `runc run -d` of
// the same root file system measured in the same run. Run it with
//
//	go test -run x -bench RuncWarmLaunch -benchtime 1x ./test/e2e/
func BenchmarkRuncWarmLaunch(b *testing.B) {
	t := b
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	const serial = 30
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	measure := func(s *server, warm bool) []time.Duration {
		c := s.ecsClient()
		ctx := context.Background()
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("idle"),
			Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				StopTimeout: aws.Int32(1)}}}); err != nil {
			b.Fatal(err)
		}
		// The image in the cache.
		first := runOneB(b, c, "idle")
		waitForB(b, c, first, "RUNNING")
		stopAllB(c)
		out := make([]time.Duration, 0, serial)
		var hits0 float64
		if warm {
			// The first task (the image's pull) took a warm sandbox too.
			waitPoolB(b, s, 1, 2)
			hits0 = 1
		}
		for i := 0; i < serial; i++ {
			if warm {
				// A report after the previous task's hit, the pool full
				// again (the agent reports with its heartbeats).
				waitPoolB(b, s, hits0+float64(i), 2)
			}
			arn := runOneB(b, c, "idle")
			tk := waitForB(b, c, arn, "RUNNING")
			out = append(out, tk.StartedAt.Sub(*tk.CreatedAt))
		}
		if warm {
			waitPoolB(b, s, hits0+serial, 2) // every task a hit
			if m := warmMetric(b, s, "vessel_warm_pool_misses_total", "runc"); m != 0 {
				b.Fatalf("%v warm pool misses; want none", m)
			}
		}
		stopAllB(c)
		return out
	}

	ws := startBenchServer(b, "--runtime", "runc", "--runtimes", "sim,runc", "--warm-pool", "runc=2")
	b.Cleanup(func() { dropPoolB(b, ws) })
	warmD := measure(ws, true)
	dropPoolB(b, ws)
	cs := startBenchServer(b, "--runtime", "runc", "--runtimes", "sim,runc")
	coldD := measure(cs, false)

	bundle := bareBundle(b)
	bare := make([]time.Duration, 0, serial)
	for i := 0; i < serial; i++ {
		start := time.Now()
		bareRun(b, bundle, fmt.Sprintf("warmbench-%d", i))
		bare = append(bare, time.Since(start))
	}
	bareCleanup(bundle, serial)

	p := func(d []time.Duration, q float64) time.Duration {
		d = slices.Clone(d)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"warm (pool hit)", warmD}, {"cold (no pool)", coldD}} {
		fmt.Printf("runc %-16s RunTask→RUNNING p50 %v p99 %v   bare runc run -d p50 %v p99 %v   ratio p50 %.2f× p99 %.2f×\n",
			row.name, p(row.d, .5), p(row.d, .99), p(bare, .5), p(bare, .99),
			float64(p(row.d, .5))/float64(p(bare, .5)), float64(p(row.d, .99))/float64(p(bare, .99)))
	}
	b.ReportMetric(float64(p(warmD, .5))/float64(p(bare, .5)), "warm-x-bare-p50")
	b.ReportMetric(float64(p(coldD, .5))/float64(p(bare, .5)), "cold-x-bare-p50")
}

// waitPoolB waits until the server's runc pool reports hits hits and n
// warm sandboxes.
func waitPoolB(b *testing.B, s *server, hits, n float64) {
	deadline := time.Now().Add(60 * time.Second)
	for warmMetric(b, s, "vessel_warm_pool_hits_total", "runc") != hits || warmMetric(b, s, "vessel_warm_pool_size", "runc") != n {
		if time.Now().After(deadline) {
			b.Fatalf("the runc pool did not report %v hits and %v ready: hits %v, size %v, misses %v; the server's warm pool log:\n%s", hits, n,
				warmMetric(b, s, "vessel_warm_pool_hits_total", "runc"), warmMetric(b, s, "vessel_warm_pool_size", "runc"),
				warmMetric(b, s, "vessel_warm_pool_misses_total", "runc"), logLinesOf(s, []string{"warm"}))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dropPoolB starts the server again without its pool, which deletes the
// warm sandboxes (they outlive the server, as tasks do), and waits until
// no lease is left.
func dropPoolB(b *testing.B, s *server) {
	if s.cmd == nil || !slices.Contains(s.extra, "--warm-pool") {
		return
	}
	stopAllB(s.ecsClient())
	s.kill(syscall.SIGTERM)
	i := slices.Index(s.extra, "--warm-pool")
	s.extra = slices.Delete(slices.Clone(s.extra), i, i+2)
	s.start()
	testutil.Wait(60*time.Second, func() error {
		if _, ips := warmLeases(b, s); len(ips) > 0 {
			return fmt.Errorf("leases left: %v", ips)
		}
		return nil
	})
}
