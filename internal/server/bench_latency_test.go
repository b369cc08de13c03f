package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// BenchmarkRunTaskToRunning measures the control path alone: an
// in-process server on its embedded store with one in-process sim agent
// (no process per task), and the time from RunTask's call until the
// store holds the task RUNNING (seen through the store's own watch), for
// tasks run one after another. First with no other task, then with
// VESSEL_BENCH_RUNNING (1,000) tasks already RUNNING on the host; the
// figure is the ratio of the two p50s.
//
//	go test -run '^$' -bench RunTaskToRunning -benchtime 200x ./internal/server/
func BenchmarkRunTaskToRunning(b *testing.B) {
	const running = 1000
	t := b // the env's temporary directories go with the benchmark
	e := newEnv(t, envOptions{hostMilliCPU: 1 << 20, hostMemoryMiB: 1 << 30})
	defer e.cancel()
	def := e.register("latency", "256", "512", "sleep", "3600")
	c := context.Background()
	measure := func(n int) []time.Duration {
		_, rev, err := e.st.List(c, "tasks/")
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithCancel(c)
		defer cancel()
		events, err := e.st.Watch(wctx, "tasks/", rev)
		if err != nil {
			b.Fatal(err)
		}
		var out []time.Duration
		for range n {
			start := time.Now()
			res, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def)})
			if err != nil {
				b.Fatal(err)
			}
			arn := aws.ToString(res.Tasks[0].TaskArn)
			key := "tasks/" + arn[strings.LastIndex(arn, "/")+1:]
			for ev := range events {
				if ev.KV.Key != key || ev.Type != store.EventPut {
					continue
				}
				var tk task.Task
				if err := json.Unmarshal(ev.KV.Value, &tk); err != nil {
					b.Fatal(err)
				}
				if tk.LastStatus == task.StatusRunning {
					break
				}
			}
			out = append(out, time.Since(start))
		}
		slices.Sort(out)
		return out
	}
	pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }

	b.ResetTimer()
	empty := measure(b.N)
	b.StopTimer()
	// Fill the host: running tasks, in RunTask calls of 10.
	for i := 0; i < running; i += 10 {
		if _, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Count: aws.Int32(10)}); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		all, _, err := e.st.List(c, "tasks/")
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, kv := range all {
			var tk task.Task
			if json.Unmarshal(kv.Value, &tk) == nil && tk.LastStatus == task.StatusRunning {
				n++
			}
		}
		if n >= running+b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d tasks RUNNING after 2 minutes", n, running+b.N)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.StartTimer()
	full := measure(b.N)
	b.StopTimer()
	fmt.Printf("RunTask → RUNNING, %d tasks one after another: none running p50 %v p99 %v; %d running p50 %v p99 %v; p50 ratio %.2f×\n",
		b.N, pct(empty, 50).Round(10*time.Microsecond), pct(empty, 99).Round(10*time.Microsecond), running,
		pct(full, 50).Round(10*time.Microsecond), pct(full, 99).Round(10*time.Microsecond), float64(pct(full, 50))/float64(pct(empty, 50)))
	b.ReportMetric(float64(pct(empty, 50).Microseconds()), "µs-p50-empty")
	b.ReportMetric(float64(pct(full, 50).Microseconds()), "µs-p50-1000-running")
	b.ReportMetric(float64(pct(full, 50))/float64(pct(empty, 50)), "x-p50")
}
