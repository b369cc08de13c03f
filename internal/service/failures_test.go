package service

import (
	"testing"

	"vessel.dev/vessel/internal/task"
)

func TestUnhealthyTaskIsReplaced(t *testing.T) {
	no := false
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	p := compute(r, svcTask("sick", "ecs-svc/1", task.StatusRunning, &no))
	if stoppedIDs(p) != "sick" || p.Stop[0].Reason != "Task failed container health checks" || len(p.Launch) != 1 {
		t.Fatalf("stop %+v launch %d", p.Stop, len(p.Launch))
	}
	if d := p.Record.Deployments[0]; len(d.Failed) != 1 {
		t.Errorf("the unhealthy task was not counted as failed: %+v", d)
	}
	// Within the grace period it is left alone.
	grace := int32(3600)
	r.HealthCheckGracePeriodSeconds = &grace
	if p := compute(r, svcTask("sick", "ecs-svc/1", task.StatusRunning, &no)); len(p.Stop) != 0 {
		t.Errorf("stopped within the grace period: %+v", p.Stop)
	}
}

// TestFailuresCountOnlyAgainstInProgress: failures count against an
// IN_PROGRESS deployment, not a completed one, and a task the user stopped
// is no failure.
func TestFailuresCountOnlyAgainstInProgress(t *testing.T) {
	exited := svcTask("x", "ecs-svc/1", task.StatusStopped, nil)
	exited.StopCode = task.StopCodeEssentialContainerExited
	user := svcTask("u", "ecs-svc/1", task.StatusStopped, nil)
	user.StopCode = task.StopCodeUserInitiated
	for _, tc := range []struct {
		rollout string
		tasks   []*task.Task
		want    int
	}{
		{RolloutInProgress, []*task.Task{exited, user}, 1},
		{RolloutCompleted, []*task.Task{exited}, 0},
	} {
		r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, tc.rollout, "td:1"))
		if got := compute(r, tc.tasks...).Record.Deployments[0].Failed; len(got) != tc.want {
			t.Errorf("%s: failed %v, want %d", tc.rollout, got, tc.want)
		}
	}
}
