package service

import (
	"fmt"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/task"
)

func TestCircuitBreaker(t *testing.T) {
	r := testService(2, 100, 200, dep("ecs-svc/2", DeploymentPrimary, RolloutInProgress, "td:2"))
	r.CircuitBreaker = CircuitBreaker{Enable: true, Rollback: true}
	r.StableDeployment, r.StableTaskDefinition = "ecs-svc/1", "td:1"
	var tasks []*task.Task
	for i := 0; i < 9; i++ {
		tk := svcTask(fmt.Sprint("f", i), "ecs-svc/2", task.StatusStopped, nil)
		tk.StopCode = task.StopCodeEssentialContainerExited
		tasks = append(tasks, tk)
	}
	p := compute(r, tasks...)
	if d := p.Record.Deployments[0]; d.RolloutState != RolloutInProgress || len(d.Failed) != 9 || len(p.Launch) != 2 {
		t.Fatalf("9 failures (threshold 10): %+v, %d launches", d, len(p.Launch))
	}
	// The same failures are not counted twice; a tenth trips the breaker.
	tk := svcTask("f9", "ecs-svc/2", task.StatusStopped, nil)
	tk.StopCode = task.StopCodeTaskFailedToStart
	p = compute(p.Record, append(tasks, tk)...)
	got := p.Record
	if len(got.Deployments) < 1 || got.Deployments[0].TaskDefinition != "td:1" || got.Deployments[0].Status != DeploymentPrimary ||
		!strings.Contains(got.Deployments[0].RolloutStateReason, "rolling back to deploymentId ecs-svc/1") {
		t.Fatalf("no rollback: %+v", got.Deployments)
	}
	events := ""
	for _, e := range got.Events {
		events += e.Message + "\n"
	}
	for _, want := range []string{"(service web) (deployment ecs-svc/2) deployment failed: tasks failed to start.",
		"(service web) rolling back to deployment ecs-svc/1.", "(service web) has started 2 tasks"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
	for _, l := range p.Launch {
		if l.TaskDefinition != "td:1" {
			t.Errorf("rollback launched %s", l.TaskDefinition)
		}
	}

	// Without rollback the failed deployment stays PRIMARY and starts no
	// more tasks.
	r.CircuitBreaker.Rollback = false
	p = compute(r, append(tasks, tk)...)
	if d := p.Record.Deployments[0]; d.RolloutState != RolloutFailed || d.ID != "ecs-svc/2" || len(p.Launch) != 0 {
		t.Fatalf("without rollback: %+v, %d launches", d, len(p.Launch))
	}
}

func TestCircuitBreakerThreshold(t *testing.T) {
	for desired, want := range map[int32]int{0: 10, 1: 10, 20: 10, 21: 11, 100: 50, 400: 200, 5000: 200} {
		if got := CircuitBreakerThreshold(desired); got != want {
			t.Errorf("threshold(%d) = %d, want %d", desired, got, want)
		}
	}
}
