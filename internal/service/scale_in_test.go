package service

import (
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

func TestScaleIn(t *testing.T) {
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	a := svcTask("a", "ecs-svc/1", task.StatusRunning, nil)
	b := svcTask("b", "ecs-svc/1", task.StatusRunning, nil)
	b.CreatedAt = t0.Add(time.Second)
	c := svcTask("c", "ecs-svc/1", task.StatusPending, nil)
	p := compute(r, a, b, c)
	if stoppedIDs(p) != "c,b" || len(p.Launch) != 0 {
		t.Fatalf("stopped %q, launched %d; want the pending one, then the newest", stoppedIDs(p), len(p.Launch))
	}
	if p.Record.Events[0].Message != "(service web) has stopped 1 running tasks: (task b)." {
		t.Errorf("event %q", p.Record.Events[0].Message)
	}
}
