package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
)

// deleteServices force-deletes every service of the default cluster and
// waits for them to be INACTIVE, so that stopAll's stops are not undone.
func deleteServices(c *ecs.Client) {
	ctx := context.Background()
	list, err := c.ListServices(ctx, &ecs.ListServicesInput{MaxResults: aws.Int32(100)})
	if err != nil {
		return
	}
	for _, arn := range list.ServiceArns {
		c.DeleteService(ctx, &ecs.DeleteServiceInput{Service: aws.String(arn), Force: aws.Bool(true)})
	}
	if len(list.ServiceArns) == 0 {
		return
	}
	testutil.Wait(60*time.Second, func() error {
		out, err := c.DescribeServices(ctx, &ecs.DescribeServicesInput{Services: list.ServiceArns[:min(10, len(list.ServiceArns))]})
		if err != nil {
			return nil // the server is gone: nothing to wait for
		}
		for _, s := range out.Services {
			if aws.ToString(s.Status) != "INACTIVE" {
				return errors.New("a service is not INACTIVE yet")
			}
		}
		return nil
	})
}

func describeService(t testing.TB, c *ecs.Client, name string) ecstypes.Service {
	t.Helper()
	// A poll may meet a kept-alive connection the server just closed; the
	// clients here do not retry, so ask again.
	out, err := c.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Services: []string{name}})
	for i := 0; err != nil && i < 3; i++ {
		time.Sleep(50 * time.Millisecond)
		out, err = c.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Services: []string{name}})
	}
	if err != nil || len(out.Services) != 1 {
		t.Fatalf("DescribeServices(%s): %v %+v", name, err, out)
	}
	return out.Services[0]
}

// serviceSteady: one COMPLETED deployment running every desired task, and
// the steady-state event last.
func serviceSteady(s ecstypes.Service) bool {
	return len(s.Deployments) == 1 && s.Deployments[0].RolloutState == ecstypes.DeploymentRolloutStateCompleted &&
		s.RunningCount == s.DesiredCount && s.PendingCount == 0 && len(s.Events) > 0 &&
		aws.ToString(s.Events[0].Message) == "(service "+aws.ToString(s.ServiceName)+") has reached a steady state."
}

func waitServiceE2E(t *testing.T, s *server, name, what string, timeout time.Duration, ok func(ecstypes.Service) bool) ecstypes.Service {
	t.Helper()
	c := s.ecsClient()
	var svc ecstypes.Service
	testutil.Eventually(t, timeout, func() error {
		if svc = describeService(t, c, name); !ok(svc) {
			var b strings.Builder
			for _, d := range svc.Deployments {
				b.WriteString("\n  " + aws.ToString(d.Id) + " " + aws.ToString(d.Status) + " " + aws.ToString(d.TaskDefinition) + " " +
					string(d.RolloutState) + ": " + aws.ToString(d.RolloutStateReason))
			}
			for _, ev := range svc.Events {
				b.WriteString("\n  " + aws.ToString(ev.Message))
			}
			return fmt.Errorf("service %s not %s: running %d pending %d desired %d%s\nserver log:\n%s", name, what,
				svc.RunningCount, svc.PendingCount, svc.DesiredCount, b.String(), s.log)
		}
		return nil
	})
	return svc
}

func serviceTaskARNs(t *testing.T, c *ecs.Client, name string) []string {
	t.Helper()
	out, err := c.ListTasks(context.Background(), &ecs.ListTasksInput{ServiceName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return out.TaskArns
}

func hasServiceEvent(s ecstypes.Service, part string) bool {
	for _, ev := range s.Events {
		if strings.Contains(aws.ToString(ev.Message), part) {
			return true
		}
	}
	return false
}

// TestServiceOnRunc runs a service of real sandboxes through the CLI and
// the SDK: steady state, replacement of a stopped task, scaling out and in,
// a rolling deployment gated by a health check within its minimum and
// maximum percent, a circuit breaker that rolls back a revision whose
// container exits 1, and a server restart that keeps the service.
func TestServiceOnRunc(t *testing.T) {
	s := startRuncServer(t)
	c := s.ecsClient()
	t.Cleanup(func() {
		if s.cmd != nil {
			deleteServices(c)
		}
	})
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	ctx := context.Background()
	register := func(cmd []string, health []string) string {
		t.Helper()
		cd := ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String(img), Command: cmd,
			Essential: aws.Bool(true), StopTimeout: aws.Int32(2)}
		if health != nil {
			cd.HealthCheck = &ecstypes.HealthCheck{Command: health, Interval: aws.Int32(1), Timeout: aws.Int32(2), Retries: aws.Int32(2)}
		}
		out, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("web"),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{cd}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
	}
	v1 := register([]string{"sleep", "3600"}, nil)

	out, errOut, code := s.vessel("service", "create", "web", "web:1", "--count", "2", "--min-healthy", "50", "--max-percent", "150", "--wait")
	if code != 0 {
		t.Fatalf("vessel service create: %d\n%s%s\nserver log:\n%s", code, out, errOut, s.log)
	}
	svc := waitServiceE2E(t, s, "web", "steady", 60*time.Second, serviceSteady)
	if svc.RunningCount != 2 || aws.ToString(svc.TaskDefinition) != v1 {
		t.Fatalf("after create: %+v", svc)
	}

	t.Run("ReplacesAStoppedTask", func(t *testing.T) {
		arns := serviceTaskARNs(t, c, "web")
		if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arns[0])}); err != nil {
			t.Fatal(err)
		}
		waitServiceE2E(t, s, "web", "replacing the task", 60*time.Second, func(svc ecstypes.Service) bool {
			now := serviceTaskARNs(t, c, "web")
			return serviceSteady(svc) && len(now) == 2 && now[0] != arns[0] && now[1] != arns[0]
		})
	})

	t.Run("ScalesOutAndIn", func(t *testing.T) {
		if out, errOut, code := s.vessel("service", "scale", "web", "3", "--wait"); code != 0 {
			t.Fatalf("vessel service scale: %d %s%s", code, out, errOut)
		}
		three := serviceTaskARNs(t, c, "web")
		if len(three) != 3 {
			t.Fatalf("%d tasks at 3", len(three))
		}
		if out, errOut, code := s.vessel("service", "scale", "web", "2", "--wait"); code != 0 {
			t.Fatalf("vessel service scale: %d %s%s", code, out, errOut)
		}
		scaledIn := 0
		for _, arn := range three {
			if tk := describeOne(t, c, arn); aws.ToString(tk.DesiredStatus) == "STOPPED" {
				tk = waitFor(t, c, arn, "STOPPED", 30*time.Second)
				if tk.StopCode == ecstypes.TaskStopCodeServiceSchedulerInitiated {
					scaledIn++
				}
			}
		}
		if scaledIn != 1 {
			t.Fatalf("%d tasks stopped with ServiceSchedulerInitiated, want 1", scaledIn)
		}
		list, _, _ := s.vessel("service", "ls")
		if !strings.Contains(list, "web") || !strings.Contains(list, "COMPLETED") {
			t.Errorf("vessel service ls:\n%s", list)
		}
	})

	v2 := register([]string{"sleep", "3600"}, []string{"CMD-SHELL", "test -d /tmp"})
	t.Run("RollingDeployment", func(t *testing.T) {
		if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Service: aws.String("web"), TaskDefinition: aws.String(v2)}); err != nil {
			t.Fatal(err)
		}
		// 2 desired at 50 %..150 %: never more than 3 tasks, never fewer
		// than 1 running.
		testutil.Eventually(t, 90*time.Second, func() error {
			svc := describeService(t, c, "web")
			if n := svc.RunningCount + svc.PendingCount; n > 3 {
				t.Fatalf("%d tasks during the deployment; maximumPercent 150 allows 3", n)
			}
			if svc.RunningCount < 1 {
				t.Fatalf("%d tasks running during the deployment; minimumHealthyPercent 50 keeps 1", svc.RunningCount)
			}
			if !serviceSteady(svc) || aws.ToString(svc.Deployments[0].TaskDefinition) != v2 {
				return fmt.Errorf("the deployment did not complete: %+v\n%s", svc.Deployments, s.log)
			}
			return nil
		})
		for _, arn := range serviceTaskARNs(t, c, "web") {
			if tk := describeOne(t, c, arn); aws.ToString(tk.TaskDefinitionArn) != v2 || tk.HealthStatus != ecstypes.HealthStatusHealthy {
				t.Errorf("task %s on %s, health %s", arn, aws.ToString(tk.TaskDefinitionArn), tk.HealthStatus)
			}
		}
	})

	v3 := register([]string{"sh", "-c", "exit 1"}, nil)
	t.Run("CircuitBreakerRollsBack", func(t *testing.T) {
		_, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Service: aws.String("web"), TaskDefinition: aws.String(v3),
			DeploymentConfiguration: &ecstypes.DeploymentConfiguration{
				DeploymentCircuitBreaker: &ecstypes.DeploymentCircuitBreaker{Enable: true, Rollback: true}}})
		if err != nil {
			t.Fatal(err)
		}
		svc := waitServiceE2E(t, s, "web", "rolled back", 120*time.Second, func(svc ecstypes.Service) bool {
			return serviceSteady(svc) && aws.ToString(svc.TaskDefinition) == v2 && hasServiceEvent(svc, "rolling back to deployment")
		})
		if !hasServiceEvent(svc, "deployment failed: tasks failed to start.") {
			t.Errorf("no failure event")
		}
	})

	t.Run("RestartKeepsTheService", func(t *testing.T) {
		before := serviceTaskARNs(t, c, "web")
		s.kill(syscall.SIGKILL)
		s.start()
		svc := waitServiceE2E(t, s, "web", "steady after the restart", 60*time.Second, serviceSteady)
		after := serviceTaskARNs(t, c, "web")
		if aws.ToString(svc.Status) != "ACTIVE" || svc.DesiredCount != 2 || aws.ToString(svc.TaskDefinition) != v2 {
			t.Fatalf("after the restart: status %s desired %d on %s", aws.ToString(svc.Status), svc.DesiredCount, aws.ToString(svc.TaskDefinition))
		}
		if strings.Join(before, ",") != strings.Join(after, ",") {
			t.Errorf("the tasks changed across the restart: %v → %v", before, after)
		}
	})

	t.Run("Remove", func(t *testing.T) {
		if _, errOut, code := s.vessel("service", "rm", "web"); code == 0 || !strings.Contains(errOut, "scaled above 0") {
			t.Fatalf("vessel service rm without --force: code %d, %s", code, errOut)
		}
		if out, errOut, code := s.vessel("service", "rm", "web", "--force", "--wait"); code != 0 || !strings.Contains(out, "INACTIVE") {
			t.Fatalf("vessel service rm --force: code %d, %s%s", code, out, errOut)
		}
		if arns := serviceTaskARNs(t, c, "web"); len(arns) != 0 {
			t.Fatalf("%d tasks left", len(arns))
		}
	})
}
