package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/testutil"
)

// BenchmarkWarmLaunch measures RunTask → RUNNING (startedAt − createdAt,
// p50/p99 over 30 tasks one at a time) with a warm pool (`--warm-pool
// RUNTIME=2`, each task a hit: the next starts once the pool has
// refilled) and without one (cold), each next to the bare runtime
// measured in the same run: `runc run -d`, or `runsc run --detach`, of
// the same root file system. The runtimes are runc and gvisor, or those
// VESSEL_BENCH_RUNTIMES names. The tasks are of 0.25 vCPU / 512 MiB, or
// with VESSEL_BENCH_WARM_CLASS=VCPU/GB of that size, served by a pool of
// that size class alone (RUNTIME=0,RUNTIME:VCPU/GB=2). Run it with
//
//	go test -run x -bench WarmLaunch -benchtime 1x ./test/e2e/
func BenchmarkWarmLaunch(b *testing.B) {
	t := b
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	runtimes := []string{"runc", "gvisor"}
	if env := os.Getenv("VESSEL_BENCH_RUNTIMES"); env != "" {
		runtimes = strings.Split(env, ",")
	}
	const serial = 30
	// The tasks' size, and the pool: the runtime's own class, or with
	// VESSEL_BENCH_WARM_CLASS=VCPU/GB (e.g. 8/16) tasks of that size and a
	// pool of that size class alone.
	cpu, mem := "256", "512"
	poolOf := func(rt string) string { return rt + "=2" }
	// Large tasks are stopped one by one, or the host would be full.
	stopEach := false
	if class := os.Getenv("VESSEL_BENCH_WARM_CLASS"); class != "" {
		stopEach = true
		size, err := sizing.ParseClass(class)
		if err != nil {
			b.Fatalf("VESSEL_BENCH_WARM_CLASS: %v", err)
		}
		cpu, mem = strconv.FormatInt(size.CPUUnits(), 10), strconv.FormatInt(size.MemoryMiB, 10)
		poolOf = func(rt string) string { return rt + "=0," + rt + ":" + class + "=2" }
	}
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	measure := func(s *server, rt string, warm bool) []time.Duration {
		c := s.ecsClient()
		ctx := context.Background()
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("idle"),
			Cpu: aws.String(cpu), Memory: aws.String(mem),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				StopTimeout: aws.Int32(1)}}}); err != nil {
			b.Fatal(err)
		}
		if warm {
			// The pool full before the first task (a gVisor sandbox
			// takes a while to boot).
			waitPoolB(b, s, rt, 0, 2)
		}
		// The image in the cache.
		first := runOneB(b, c, "idle")
		waitForB(b, c, first, "RUNNING")
		stopAllB(c)
		out := make([]time.Duration, 0, serial)
		var hits0 float64
		if warm {
			// The first task (the image's pull) took a warm sandbox too.
			waitPoolB(b, s, rt, 1, 2)
			hits0 = 1
		}
		for i := 0; i < serial; i++ {
			if warm {
				// A report after the previous task's hit, the pool full
				// again (the agent reports with its heartbeats).
				waitPoolB(b, s, rt, hits0+float64(i), 2)
			}
			arn := runOneB(b, c, "idle")
			tk := waitStampedB(b, c, arn, "RUNNING")
			out = append(out, tk.StartedAt.Sub(*tk.CreatedAt))
			if stopEach {
				stopAllB(c)
			}
		}
		if warm {
			waitPoolB(b, s, rt, hits0+serial, 2) // every task a hit
			if m := warmMetric(b, s, "vessel_warm_pool_misses_total", rt); m != 0 {
				b.Fatalf("%v warm pool misses on %s; want none", m, rt)
			}
		}
		stopAllB(c)
		return out
	}
	p := func(d []time.Duration, q float64) time.Duration {
		d = slices.Clone(d)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	for _, rt := range runtimes {
		ws := startBenchServer(b, "--runtime", rt, "--runtimes", "sim,"+rt, "--warm-pool", poolOf(rt))
		b.Cleanup(func() { dropPool(b, ws) })
		warmD := measure(ws, rt, true)
		dropPool(b, ws)
		cs := startBenchServer(b, "--runtime", rt, "--runtimes", "sim,"+rt)
		coldD := measure(cs, rt, false)

		var bare []time.Duration
		bareName := "runc run -d"
		switch rt {
		case "runc":
			bundle := bareBundle(b)
			for i := 0; i < serial; i++ {
				start := time.Now()
				bareRun(b, bundle, fmt.Sprintf("warmbench-%d", i))
				bare = append(bare, time.Since(start))
			}
			bareCleanup(bundle, serial)
		case "gvisor":
			bareName = "runsc run --detach"
			bare = bareRunscRuns(b, serial)
		default:
			b.Fatalf("no bare baseline for runtime %q here (runc, gvisor)", rt)
		}
		for _, row := range []struct {
			name string
			d    []time.Duration
		}{{"warm (pool hit)", warmD}, {"cold (no pool)", coldD}} {
			fmt.Printf("%-6s %-16s %s/%s RunTask→RUNNING p50 %v p99 %v   bare %s p50 %v p99 %v   ratio p50 %.2f× p99 %.2f×\n",
				rt, row.name, cpu, mem, p(row.d, .5), p(row.d, .99), bareName, p(bare, .5), p(bare, .99),
				float64(p(row.d, .5))/float64(p(bare, .5)), float64(p(row.d, .99))/float64(p(bare, .99)))
		}
		b.ReportMetric(float64(p(warmD, .5))/float64(p(bare, .5)), rt+"-warm-x-bare-p50")
		b.ReportMetric(float64(p(coldD, .5))/float64(p(bare, .5)), rt+"-cold-x-bare-p50")
	}
}

// waitPoolB waits until the server's pool of runtime rt reports hits
// hits and n warm sandboxes.
func waitPoolB(b *testing.B, s *server, rt string, hits, n float64) {
	deadline := time.Now().Add(60 * time.Second)
	for warmMetric(b, s, "vessel_warm_pool_hits_total", rt) != hits || warmMetric(b, s, "vessel_warm_pool_size", rt) != n {
		if time.Now().After(deadline) {
			b.Fatalf("the %s pool did not report %v hits and %v ready: hits %v, size %v, misses %v; the server's warm pool log:\n%s", rt, hits, n,
				warmMetric(b, s, "vessel_warm_pool_hits_total", rt), warmMetric(b, s, "vessel_warm_pool_size", rt),
				warmMetric(b, s, "vessel_warm_pool_misses_total", rt), logLinesOf(s, []string{"warm"}))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dropPool stops every task, starts the server again without its pool,
// which deletes the warm sandboxes (they outlive the server, as tasks
// do), and waits until no lease is left.
func dropPool(t testing.TB, s *server) {
	if s.cmd == nil || !slices.Contains(s.extra, "--warm-pool") {
		return
	}
	stopAllB(s.ecsClient())
	s.kill(syscall.SIGTERM)
	i := slices.Index(s.extra, "--warm-pool")
	s.extra = slices.Delete(slices.Clone(s.extra), i, i+2)
	s.start()
	testutil.Wait(60*time.Second, func() error {
		if _, ips := warmLeases(t, s); len(ips) > 0 {
			return fmt.Errorf("leases left: %v", ips)
		}
		return nil
	})
}
