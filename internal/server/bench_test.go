package server_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// BenchmarkAPI measures RunTask+DescribeTasks pairs per second through the
// SDK client against an in-process server on the sim runtime, next to a
// baseline measured in the same run: DescribeClusters of the default
// cluster, the cheapest signed round trip. The figure is the ratio.
//
//	go test -run x -bench API -benchtime 2000x ./internal/server/
func BenchmarkAPI(b *testing.B) {
	t := b // the env's temporary directories go with the benchmark
	e := newEnv(t, envOptions{hostMilliCPU: 64000, hostMemoryMiB: 1 << 20})
	defer e.cancel()
	def := e.register("bench", "256", "512", "sleep", "1000")
	c := ctx(t)
	const workers = 8
	run := func(n int, op func()) time.Duration {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					op()
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	b.ResetTimer()
	base := run(b.N, func() {
		if _, err := e.ecs.DescribeClusters(c, &ecs.DescribeClustersInput{}); err != nil {
			b.Error(err)
		}
	})
	pairs := run(b.N, func() {
		out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def)})
		if err != nil {
			b.Error(err)
			return
		}
		if _, err := e.ecs.DescribeTasks(c, &ecs.DescribeTasksInput{Tasks: []string{*out.Tasks[0].TaskArn}}); err != nil {
			b.Error(err)
		}
	})
	b.StopTimer()
	basePerSec := float64(b.N) / base.Seconds()
	pairsPerSec := float64(b.N) / pairs.Seconds()
	b.ReportMetric(pairsPerSec, "pairs/s")
	b.ReportMetric(basePerSec, "baseline-calls/s")
	b.ReportMetric(basePerSec/pairsPerSec, "x-baseline")
}
