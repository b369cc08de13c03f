package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"vessel.dev/vessel/internal/scheduler"
)

// BenchmarkControlPathAtScale runs the real control path at a fleet's
// scale: one built `vessel server --no-agent` on its embedded store, 100
// `vessel agent` processes offering the sim runtime (each a host of its own
// over the real agent protocol: join, heartbeats, assignments, status
// reports), and 10,000 tasks launched by 16 clients with RunTask (count
// 10), until all are RUNNING. It prints the tasks per second from the
// first RunTask to the last task RUNNING, the admission alone, and, next to
// them, the scheduler alone placing the same 10,000 tasks on 100 hosts in
// passes of the size the server's passes had. VESSEL_BENCH_HOSTS and
// VESSEL_BENCH_TASKS change the sizes. Run it with
//
//	go test -run '^$' -bench ControlPathAtScale -benchtime 1x ./test/e2e/
func BenchmarkControlPathAtScale(b *testing.B) {
	hosts, tasks := envInt(b, "VESSEL_BENCH_HOSTS", 100), envInt(b, "VESSEL_BENCH_TASKS", 10000)
	const clients, perCall = 16, 10
	s := startBenchReplica(b)
	var wg sync.WaitGroup
	agents := make([]int, hosts)
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Room for about 110 tasks of the benchmark's size each, so
			// that they spread over the hosts.
			agents[i] = startSimAgent(b, []*server{s}, "--host-id", fmt.Sprintf("sim-%03d", i),
				"--cpu-allocation-ratio", "14", "--memory-allocation-ratio", "4").Process.Pid
		}()
	}
	wg.Wait()
	waitHosts(b, s, hosts)
	id, secret := s.keys()
	c := ecsClientFor(s.endpoint, id, secret)
	registerDef(b, c, "scale", "256", "512", 0, "sleep", "3600")

	cpu := func() [3]time.Duration {
		return [3]time.Duration{cpuTime(b, s.cmd.Process.Pid), cpuTime(b, agents...), cpuTime(b, os.Getpid())}
	}
	cpu0 := cpu()
	start := time.Now()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := ecsClientFor(s.endpoint, id, secret)
			for next.Add(perCall) <= int64(tasks) {
				_, err := cc.RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String("scale"), Count: aws.Int32(perCall)})
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("RunTask: %v", firstErr)
	}
	admitted := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		counts := taskCounts(b, s)
		if counts["RUNNING"] >= float64(tasks) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not all %d tasks RUNNING after 10 minutes: %v", tasks, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu1 := cpu()
	placements := metricSum(b, s, "vessel_placements_total")
	passes := histogramCount(b, s, "vessel_scheduler_duration_seconds")

	// The scheduler alone: the same tasks on as many hosts, in passes of
	// the server's average size.
	perPass := max(1, int(placements/max(passes, 1)))
	snap := scheduler.Snapshot{}
	for i := range hosts {
		snap.Hosts = append(snap.Hosts, scheduler.Host{ID: fmt.Sprintf("h%03d", i), Ready: true, Runtimes: []string{"sim"},
			Capacity: scheduler.Resources{MilliCPU: 2000, MemoryMiB: 24 << 10}, CPUAllocationRatio: 14, MemoryAllocationRatio: 4})
	}
	schedStart := time.Now()
	for done := 0; done < tasks; {
		snap.Pending = snap.Pending[:0]
		for i := 0; i < perPass && done+i < tasks; i++ {
			snap.Pending = append(snap.Pending, scheduler.Request{TaskID: strconv.Itoa(done + i), Runtime: "sim", NoAddress: true,
				Size: scheduler.Resources{MilliCPU: 256, MemoryMiB: 512}})
		}
		plan := scheduler.Schedule(snap)
		if len(plan.Placements) != len(snap.Pending) {
			b.Fatalf("the scheduler placed %d of %d", len(plan.Placements), len(snap.Pending))
		}
		for _, p := range plan.Placements {
			snap.Placed = append(snap.Placed, scheduler.Placed{TaskID: p.TaskID, HostID: p.HostID, NoAddress: true,
				Size: scheduler.Resources{MilliCPU: 256, MemoryMiB: 512}})
		}
		done += len(plan.Placements)
	}
	sched := time.Since(schedStart)

	rate := float64(tasks) / elapsed.Seconds()
	perTask := func(i int) time.Duration { return (cpu1[i] - cpu0[i]) / time.Duration(tasks) }
	fmt.Printf("%d sim hosts, %d tasks: RunTask → all RUNNING in %v: %.0f tasks/s (admission alone %.0f tasks/s); %.0f placements in %.0f passes (%d a pass); the scheduler alone, in passes of %d: %.0f tasks/s (the control path is %.1f%% of it); CPU per task: server %v, agents %v, clients %v\n",
		hosts, tasks, elapsed.Round(time.Millisecond), rate, float64(tasks)/admitted.Seconds(), placements, passes, perPass, perPass,
		float64(tasks)/sched.Seconds(), 100*rate/(float64(tasks)/sched.Seconds()), perTask(0), perTask(1), perTask(2))
	b.ReportMetric(rate, "tasks/s-to-RUNNING")
	b.ReportMetric(float64(tasks)/sched.Seconds(), "tasks/s-scheduler-alone")
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// waitHosts waits until n hosts are registered with s and ready, as
// `vessel host ls` tells.
func waitHosts(b *testing.B, s *server, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _, _ := s.vessel("host", "ls", "-o", "json")
		var list struct{ Hosts []hostInfo }
		ready := 0
		if json.Unmarshal([]byte(out), &list) == nil {
			for _, h := range list.Hosts {
				if h.State == "ready" {
					ready++
				}
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d hosts ready after 2 minutes:\n%s", ready, n, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metricFamilies reads the server's /metrics.
func metricFamilies(b *testing.B, s *server) map[string]*dto.MetricFamily {
	resp, err := http.Get(s.endpoint + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("%s/metrics: %v", s.endpoint, err)
	}
	return families
}

// metricSum is the sum of a counter's or gauge's series.
func metricSum(b *testing.B, s *server, name string) float64 {
	f := metricFamilies(b, s)[name]
	if f == nil {
		b.Fatalf("%s/metrics has no %s", s.endpoint, name)
	}
	var sum float64
	for _, m := range f.GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// histogramCount is how many observations a histogram has.
func histogramCount(b *testing.B, s *server, name string) float64 {
	f := metricFamilies(b, s)[name]
	if f == nil {
		b.Fatalf("%s/metrics has no %s", s.endpoint, name)
	}
	var n float64
	for _, m := range f.GetMetric() {
		n += float64(m.GetHistogram().GetSampleCount())
	}
	return n
}

// taskCounts is the server's count of tasks by status (vessel_tasks, as of
// its controller's last pass).
func taskCounts(b *testing.B, s *server) map[string]float64 {
	out := map[string]float64{}
	f := metricFamilies(b, s)["vessel_tasks"]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "status" {
				out[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
