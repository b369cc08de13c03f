package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// BenchmarkServiceScale measures how long a service takes to go from 0 to
// N tasks: until N run, and until its steady-state event (which waits for
// the tasks to have run for service.StablePeriod, 1 s). Baseline in
// the same run: the same N tasks launched by RunTask in batches of 10, as
// fast as the API answers, until all run. N is 200 on the sim runtime, and
// 20 on runc and on the host's default runtime (the strongest at native speed:
// gvisor here), image cached. Run it with
//
//	go test -run x -bench ServiceScale -benchtime 1x ./test/e2e/
func BenchmarkServiceScale(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	t := b // temporary directories and processes go with the benchmark
	s := startServiceBenchServer(b)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	c := s.ecsClientRetrying()
	ctx := context.Background()
	for _, family := range []string{"sim", "runc", "default"} {
		cd := ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String(img), Command: []string{"sleep", "3600"},
			StopTimeout: aws.Int32(1)}
		var tags []ecstypes.Tag
		if family != "default" {
			tags = []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String(family)}}
		}
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), ContainerDefinitions: []ecstypes.ContainerDefinition{cd},
			Tags: tags}); err != nil {
			b.Fatal(err)
		}
	}
	// Warm the image cache.
	waitForB(b, c, runOneB(b, c, "runc"), "RUNNING")
	stopAllB(c)

	for _, tc := range []struct {
		family string
		n      int32
	}{{"sim", 200}, {"runc", 20}, {"default", 20}} {
		base := runTaskBatches(b, c, tc.family, int(tc.n))
		stopAllB(c)
		running, steady := scaleService(b, c, tc.family, tc.n)
		label := tc.family
		if tc.family == "default" {
			label = "default (" + hostDefaultRuntime(s.log.String()) + ")"
		}
		fmt.Printf("%s 0→%d tasks: service all RUNNING %v, steady state %v   RunTask ×10 batches all RUNNING %v   ratio %.2f× (running) %.2f× (steady)\n",
			label, tc.n, running.Round(time.Millisecond), steady.Round(time.Millisecond), base.Round(time.Millisecond),
			running.Seconds()/base.Seconds(), steady.Seconds()/base.Seconds())
		b.ReportMetric(running.Seconds()/base.Seconds(), "x-runtask-"+tc.family)
		b.ReportMetric(steady.Seconds(), "s-steady-"+tc.family)
	}
}

// startServiceBenchServer is startBenchServer with room for 200 tasks of
// 0.5 GiB, every runtime offered and the host's strongest as the default.
func startServiceBenchServer(b *testing.B) *server {
	t := b // temporary directories and processes go with the benchmark
	buildTools(t)
	cidr := freeSubnet(t)
	s := &server{t: t, dataDir: b.TempDir(), addr: freeAddr(t),
		extra: []string{"--runtimes", "microvm,gvisor,runc,sim", "--subnet", "subnet-default=" + cidr,
			"--cpu-allocation-ratio", "64", "--memory-allocation-ratio", "16", "--log-level", "warn",
			"--launch-rate", "0", "--api-rate", "0"}}
	s.endpoint = "http://" + s.addr
	s.start()
	b.Cleanup(func() {
		deleteServices(s.ecsClient())
		stopAllB(s.ecsClient())
		s.kill(15)
		removeBridges(cidr)
		s.removeFirewall()
	})
	return s
}

// runTaskBatches launches n tasks with RunTask, 10 at a time, and returns
// how long until all are RUNNING.
func runTaskBatches(b *testing.B, c *ecs.Client, family string, n int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	var arns []string
	for len(arns) < n {
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String(family), Count: aws.Int32(int32(min(10, n-len(arns))))})
		if err != nil || len(out.Failures) > 0 {
			b.Fatalf("RunTask: %v %+v", err, out)
		}
		for _, tk := range out.Tasks {
			arns = append(arns, aws.ToString(tk.TaskArn))
		}
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		running := 0
		for i := 0; i < len(arns); i += 100 {
			out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: arns[i:min(i+100, len(arns))]})
			if err != nil {
				b.Fatal(err)
			}
			for _, tk := range out.Tasks {
				switch aws.ToString(tk.LastStatus) {
				case "RUNNING":
					running++
				case "STOPPED":
					b.Fatalf("task %s stopped: %s", aws.ToString(tk.TaskArn), aws.ToString(tk.StoppedReason))
				}
			}
		}
		if running == n {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d tasks RUNNING after 5 min", running, n)
		}
	}
}

// scaleService creates a service at 0, scales it to n, and returns how long
// until n tasks run and until its steady-state event; then deletes it.
func scaleService(b *testing.B, c *ecs.Client, family string, n int32) (time.Duration, time.Duration) {
	ctx := context.Background()
	name := "bench-" + family
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String(name), TaskDefinition: aws.String(family),
		DesiredCount: aws.Int32(0)}); err != nil {
		b.Fatal(err)
	}
	t := b // temporary directories and processes go with the benchmark
	for deadline := time.Now().Add(time.Minute); !serviceSteady(describeService(t, c, name)); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the empty service did not reach a steady state")
		}
	}
	start := time.Now()
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Service: aws.String(name), DesiredCount: aws.Int32(n)}); err != nil {
		b.Fatal(err)
	}
	var running time.Duration
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		svc := describeService(t, c, name)
		if running == 0 && svc.RunningCount == n {
			running = time.Since(start)
		}
		if serviceSteady(svc) && svc.RunningCount == n {
			steady := time.Since(start)
			c.DeleteService(ctx, &ecs.DeleteServiceInput{Service: aws.String(name), Force: aws.Bool(true)})
			for !(aws.ToString(describeService(t, c, name).Status) == "INACTIVE") {
				time.Sleep(100 * time.Millisecond)
			}
			return running, steady
		}
		if time.Now().After(deadline) {
			b.Fatalf("service %s: %d of %d running after 5 min", name, svc.RunningCount, n)
		}
	}
}
