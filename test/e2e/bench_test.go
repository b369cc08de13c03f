package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// BenchmarkRuncLaunch measures, for a cached image on the runc runtime:
// RunTask → RUNNING latency (startedAt − createdAt, p50/p99 over 50 tasks
// one at a time), launches per second with 20 in flight, and the host
// memory each idle sandbox costs; each next to bare `runc run -d` of the
// same root file system measured in the same run. Run it with
//
//	go test -run x -bench RuncLaunch -benchtime 1x ./test/e2e/
func BenchmarkRuncLaunch(b *testing.B) {
	t := b // temporary directories and processes go with the benchmark
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	s := startRuncServerB(b)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	c := s.ecsClient()
	ctx := context.Background()
	if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("idle"),
		Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			StopTimeout: aws.Int32(1)}}}); err != nil {
		b.Fatal(err)
	}
	// Warm the image cache.
	warm := runOneB(b, c, "idle")
	waitForB(b, c, warm, "RUNNING")
	stopAllB(c)

	bundle := bareBundle(b)
	const serial, inFlight, burst = 50, 20, 60

	// Serial latency.
	vessel := make([]time.Duration, 0, serial)
	for i := 0; i < serial; i++ {
		arn := runOneB(b, c, "idle")
		tk := waitStampedB(b, c, arn, "RUNNING")
		vessel = append(vessel, tk.StartedAt.Sub(*tk.CreatedAt))
	}
	stopAllB(c)
	bare := make([]time.Duration, 0, serial)
	for i := 0; i < serial; i++ {
		start := time.Now()
		bareRun(b, bundle, fmt.Sprintf("bench-%d", i))
		bare = append(bare, time.Since(start))
	}
	bareCleanup(bundle, serial)

	// Throughput with 20 in flight.
	vesselRate := launchRate(burst, inFlight, func(i int) {
		arn := runOneB(b, c, "idle")
		waitForB(b, c, arn, "RUNNING")
	})
	memVessel := idleMemory(b, s.dataDir, burst)
	stopAllB(c)
	bareRate := launchRate(burst, inFlight, func(i int) { bareRun(b, bundle, fmt.Sprintf("rate-%d", i)) })
	bareCleanup(bundle, burst)

	p := func(d []time.Duration, q float64) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	fmt.Printf("RunTask→RUNNING  p50 %v  p99 %v   bare runc run -d  p50 %v  p99 %v   ratio p50 %.2f× p99 %.2f×\n",
		p(vessel, .5), p(vessel, .99), p(bare, .5), p(bare, .99),
		float64(p(vessel, .5))/float64(p(bare, .5)), float64(p(vessel, .99))/float64(p(bare, .99)))
	fmt.Printf("launches/s with %d in flight: vessel %.1f   bare runc %.1f   ratio %.2f×\n", inFlight, vesselRate, bareRate, bareRate/vesselRate)
	fmt.Printf("host memory per idle sandbox beyond its workload: %.2f MiB (conmon RSS + kernel objects)\n", memVessel)
	b.ReportMetric(float64(p(vessel, .5))/float64(p(bare, .5)), "x-bare-p50")
	b.ReportMetric(bareRate/vesselRate, "x-bare-rate")
	b.ReportMetric(memVessel, "MiB/sandbox")
}

func launchRate(n, inFlight int, launch func(i int)) float64 {
	start := time.Now()
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			launch(i)
		}(i)
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// idleMemory is the memory the sandboxes cost beyond their workloads:
// the RSS of every process of the data directory that is not a workload
// (the conmon monitors), per sandbox.
func idleMemory(b *testing.B, dataDir string, n int) float64 {
	var kib int64
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmd), dataDir) || !strings.HasPrefix(string(cmd), "/usr/bin/conmon") && !strings.Contains(string(cmd), "conmon") {
			continue
		}
		f, err := os.Open(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				k, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				kib += k
			}
		}
		f.Close()
	}
	return float64(kib) / 1024 / float64(n)
}

// bareBundle is an OCI bundle over a copy of the same busybox root file
// system, made with `runc spec` and set to run `sleep 3600` detached.
func bareBundle(b *testing.B) string {
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755)
	for _, a := range busyboxApplets {
		os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
	}
	cmd := exec.Command("runc", "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(raw, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "3600"}
	raw, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
	return dir
}

func bareRun(b *testing.B, bundle, id string) {
	// The detached container inherits runc's stdio: give it /dev/null, or
	// reading its output would wait for the container to end.
	cmd := exec.Command("runc", "--root", filepath.Join(bundle, "state"), "run", "-d", "--bundle", bundle, id)
	if err := cmd.Run(); err != nil {
		b.Fatalf("runc run %s: %v", id, err)
	}
}

func bareCleanup(bundle string, n int) {
	out, _ := exec.Command("runc", "--root", filepath.Join(bundle, "state"), "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		exec.Command("runc", "--root", filepath.Join(bundle, "state"), "kill", id, "KILL").Run()
	}
	time.Sleep(200 * time.Millisecond)
	for _, id := range strings.Fields(string(out)) {
		exec.Command("runc", "--root", filepath.Join(bundle, "state"), "delete", "-f", id).Run()
	}
}

// Benchmark helpers over *testing.B.

func startRuncServerB(b *testing.B) *server {
	return startBenchServer(b, "--runtime", "runc")
}

// startBenchServer starts vessel server for a benchmark on a subnet of its
// own with generous allocation ratios, and stops everything afterwards.
func startBenchServer(b *testing.B, runtimes ...string) *server {
	t := b // temporary directories and processes go with the benchmark
	cidr := freeSubnet(t)
	s := &server{t: t, dataDir: b.TempDir(), addr: freeAddr(t),
		extra: append(runtimes, "--subnet", "subnet-default="+cidr,
			"--cpu-allocation-ratio", "64", "--memory-allocation-ratio", "4", "--launch-rate", "0", "--api-rate", "0")}
	s.endpoint = "http://" + s.addr
	s.start()
	b.Cleanup(func() {
		stopAllB(s.ecsClient())
		s.kill(15)
		removeBridges(cidr)
		s.removeFirewall()
	})
	return s
}

func runOneB(b *testing.B, c *ecs.Client, family string) string {
	out, err := c.RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String(family)})
	if err != nil || len(out.Tasks) != 1 {
		b.Fatalf("RunTask: %v %+v", err, out)
	}
	return aws.ToString(out.Tasks[0].TaskArn)
}

func waitForB(b *testing.B, c *ecs.Client, arn, status string) ecstypes.Task {
	return pollTaskB(b, c, arn, status, 5*time.Millisecond)
}

// waitStampedB is waitForB for a figure taken from the task's own
// timestamps (startedAt − createdAt, the server's clock), which the
// poll's pace does not move: it polls every 50 ms, where waitForB's 5 ms
// took a fifth of a core from the launch it waited for.
func waitStampedB(b *testing.B, c *ecs.Client, arn, status string) ecstypes.Task {
	return pollTaskB(b, c, arn, status, 50*time.Millisecond)
}

func pollTaskB(b *testing.B, c *ecs.Client, arn, status string, every time.Duration) ecstypes.Task {
	deadline := time.Now().Add(120 * time.Second)
	last := "unknown"
	for {
		out, err := c.DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Tasks: []string{arn}})
		if err == nil && len(out.Tasks) == 1 {
			if s := aws.ToString(out.Tasks[0].LastStatus); s == status {
				return out.Tasks[0]
			} else if s == "STOPPED" {
				b.Fatalf("task %s stopped: %s", arn, aws.ToString(out.Tasks[0].StoppedReason))
			} else {
				last = s
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("task %s not %s within 2 minutes: %s", arn, status, last)
		}
		time.Sleep(every)
	}
}

func stopAllB(c *ecs.Client) {
	ctx := context.Background()
	for {
		out, err := c.ListTasks(ctx, &ecs.ListTasksInput{})
		if err != nil || len(out.TaskArns) == 0 {
			break
		}
		for _, arn := range out.TaskArns {
			c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arn)})
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Wait for them to be STOPPED.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatusStopped})
		if err != nil || len(out.TaskArns) == 0 {
			return
		}
		d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: out.TaskArns})
		if err != nil {
			return
		}
		busy := false
		for _, tk := range d.Tasks {
			busy = busy || aws.ToString(tk.LastStatus) != "STOPPED"
		}
		if !busy {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
