package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/task"
)

// The service scheduler's plans, from plain values: no store, no clock.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testService(desired, minH, maxP int32, deps ...deploymentRecord) *serviceRecord {
	r := &serviceRecord{Name: "web", Cluster: "default", Status: api.ServiceStatusActive, DesiredCount: desired,
		Subnets: []string{"subnet-default"}, MinimumHealthyPercent: minH, MaximumPercent: maxP, Deployments: deps,
		CreatedAt: t0, StatusChangedAt: t0}
	if len(deps) > 0 {
		r.TaskDefinition = deps[0].TaskDefinition
	}
	return r
}

func dep(id, status, rollout, def string) deploymentRecord {
	return deploymentRecord{ID: id, Status: status, RolloutState: rollout, TaskDefinition: def, CreatedAt: t0, UpdatedAt: t0}
}

// svcTask is a task of deployment d in status st; healthy says whether its
// health-checked container is HEALTHY (nil: it has no health check).
func svcTask(id, d string, st task.Status, healthy *bool) *task.Task {
	t := &task.Task{ID: id, Cluster: "default", Group: "service:web", StartedBy: d, LastStatus: st,
		DesiredStatus: task.StatusRunning, CreatedAt: t0, StartedAt: t0,
		Containers: []task.Container{{Name: "app", Essential: true}}}
	if healthy != nil {
		t.Containers[0].HealthCheck = &task.HealthCheck{Command: []string{"CMD", "true"}}
		t.Containers[0].HealthStatus = task.HealthUnhealthy
		if *healthy {
			t.Containers[0].HealthStatus = task.HealthHealthy
		}
	}
	if st == task.StatusStopped {
		t.DesiredStatus = task.StatusStopped
	}
	return t
}

func noReason(string) string { return "" }

func plan(r *serviceRecord, tasks ...*task.Task) servicePlan {
	return planService(r, tasks, t0.Add(time.Minute), noReason, noPlanLimits())
}

func stoppedIDs(p servicePlan) string {
	var ids []string
	for _, s := range p.stop {
		ids = append(ids, s.taskID)
	}
	return strings.Join(ids, ",")
}

func TestPlanNewService(t *testing.T) {
	r := testService(3, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	p := plan(r)
	if len(p.launch) != 3 || len(p.stop) != 0 || !p.changed {
		t.Fatalf("launch %d stop %d changed %v, want 3 launches", len(p.launch), len(p.stop), p.changed)
	}
	for _, l := range p.launch {
		if l.deployment != "ecs-svc/1" || l.taskDef != "td:1" {
			t.Errorf("launch %+v is not of the primary deployment", l)
		}
	}
	if msg := p.record.Events[0].Message; !strings.HasPrefix(msg, "(service web) has started 3 tasks: (task ") {
		t.Errorf("event %q", msg)
	}
	if r.Events != nil {
		t.Error("planService changed its input")
	}
}

// TestPlanRollingDeployment walks a deployment of 4 tasks through its
// passes, checking minimumHealthyPercent and maximumPercent at each.
func TestPlanRollingDeployment(t *testing.T) {
	yes := true
	old := func(n int) []*task.Task {
		var ts []*task.Task
		for i := 0; i < n; i++ {
			ts = append(ts, svcTask(fmt.Sprint("old", i), "ecs-svc/1", task.StatusRunning, &yes))
		}
		return ts
	}
	deps := []deploymentRecord{dep("ecs-svc/2", DeploymentPrimary, RolloutInProgress, "td:2"),
		dep("ecs-svc/1", DeploymentActive, RolloutCompleted, "td:1")}
	for _, tc := range []struct {
		minH, maxP           int32
		wantLaunch, wantStop int
	}{
		{100, 200, 4, 0}, // start all new ones first
		{50, 200, 4, 2},  // two old ones may go at once
		{50, 100, 2, 2},  // no room beyond 4: stop two, start two
		{0, 100, 4, 4},   // replace everything at once
		{75, 125, 2, 1},  // 5 at most, 3 healthy at least
	} {
		t.Run(fmt.Sprintf("min%d-max%d", tc.minH, tc.maxP), func(t *testing.T) {
			p := plan(testService(4, tc.minH, tc.maxP, deps...), old(4)...)
			if len(p.launch) != tc.wantLaunch || len(p.stop) != tc.wantStop {
				t.Errorf("launch %d stop %d, want %d and %d", len(p.launch), len(p.stop), tc.wantLaunch, tc.wantStop)
			}
		})
	}

	// Second pass at 100/200: the new tasks are pending; nothing may stop.
	r := testService(4, 100, 200, deps...)
	tasks := old(4)
	for i := 0; i < 4; i++ {
		tasks = append(tasks, svcTask(fmt.Sprint("new", i), "ecs-svc/2", task.StatusPending, &yes))
	}
	if p := plan(r, tasks...); len(p.launch) != 0 || len(p.stop) != 0 {
		t.Fatalf("with the new tasks pending: launch %d stop %s", len(p.launch), stoppedIDs(p))
	}
	// Two are RUNNING but not yet HEALTHY: still nothing.
	no := false
	tasks[4], tasks[5] = svcTask("new0", "ecs-svc/2", task.StatusRunning, &no), svcTask("new1", "ecs-svc/2", task.StatusRunning, nil)
	tasks[4].Containers[0].HealthStatus = task.HealthUnknown
	if p := plan(r, tasks...); stoppedIDs(p) != "old0" {
		// new1 has no health check, so it counts as healthy: one old may go.
		t.Fatalf("with one new task healthy: stopped %q, want old0", stoppedIDs(p))
	}
	// All new ones healthy: every old one goes, and the deployment is not
	// complete until they have stopped.
	for i := 4; i < 8; i++ {
		tasks[i] = svcTask(fmt.Sprint("new", i-4), "ecs-svc/2", task.StatusRunning, &yes)
	}
	p := plan(r, tasks...)
	if stoppedIDs(p) != "old0,old1,old2,old3" {
		t.Fatalf("stopped %q, want every old task", stoppedIDs(p))
	}
	if p.record.Deployments[0].RolloutState != RolloutInProgress {
		t.Fatal("the deployment completed while old tasks still run")
	}
	for _, s := range p.stop {
		if !strings.Contains(s.reason, "Scaling activity initiated by (deployment ecs-svc/2)") {
			t.Errorf("stop reason %q", s.reason)
		}
	}
	// The old ones have stopped: complete, steady, and the old deployment
	// is gone.
	for i := 0; i < 4; i++ {
		tasks[i] = svcTask(fmt.Sprint("old", i), "ecs-svc/1", task.StatusStopped, &yes)
		tasks[i].StopCode = task.StopCodeServiceSchedulerInitiated
	}
	p = plan(r, tasks...)
	got := p.record
	if len(got.Deployments) != 1 || got.Deployments[0].RolloutState != RolloutCompleted || !got.Steady ||
		got.StableTaskDefinition != "td:2" {
		t.Fatalf("after the rollout: %+v", got)
	}
	if got.Events[0].Message != "(service web) has reached a steady state." ||
		got.Events[1].Message != "(service web) (deployment ecs-svc/2) deployment completed." {
		t.Errorf("events %+v", got.Events)
	}
	// Steady stays quiet.
	if p := plan(got, tasks...); p.changed || len(p.launch)+len(p.stop) != 0 {
		t.Errorf("a steady service changed: %+v", p)
	}
}

func TestPlanScaleIn(t *testing.T) {
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	a := svcTask("a", "ecs-svc/1", task.StatusRunning, nil)
	b := svcTask("b", "ecs-svc/1", task.StatusRunning, nil)
	b.CreatedAt = t0.Add(time.Second)
	c := svcTask("c", "ecs-svc/1", task.StatusPending, nil)
	p := plan(r, a, b, c)
	if stoppedIDs(p) != "c,b" || len(p.launch) != 0 {
		t.Fatalf("stopped %q, launched %d; want the pending one, then the newest", stoppedIDs(p), len(p.launch))
	}
	if p.record.Events[0].Message != "(service web) has stopped 1 running tasks: (task b)." {
		t.Errorf("event %q", p.record.Events[0].Message)
	}
}

func TestPlanCircuitBreaker(t *testing.T) {
	r := testService(2, 100, 200, dep("ecs-svc/2", DeploymentPrimary, RolloutInProgress, "td:2"))
	r.CircuitBreaker = api.DeploymentCircuitBreaker{Enable: true, Rollback: true}
	r.StableDeployment, r.StableTaskDefinition = "ecs-svc/1", "td:1"
	var tasks []*task.Task
	for i := 0; i < 9; i++ {
		tk := svcTask(fmt.Sprint("f", i), "ecs-svc/2", task.StatusStopped, nil)
		tk.StopCode = task.StopCodeEssentialContainerExited
		tasks = append(tasks, tk)
	}
	p := plan(r, tasks...)
	if d := p.record.Deployments[0]; d.RolloutState != RolloutInProgress || len(d.Failed) != 9 || len(p.launch) != 2 {
		t.Fatalf("9 failures (threshold 10): %+v, %d launches", d, len(p.launch))
	}
	// The same failures are not counted twice; a tenth trips the breaker.
	tk := svcTask("f9", "ecs-svc/2", task.StatusStopped, nil)
	tk.StopCode = task.StopCodeTaskFailedToStart
	p = plan(p.record, append(tasks, tk)...)
	got := p.record
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
	for _, l := range p.launch {
		if l.taskDef != "td:1" {
			t.Errorf("rollback launched %s", l.taskDef)
		}
	}

	// Without rollback the failed deployment stays PRIMARY and starts no
	// more tasks.
	r.CircuitBreaker.Rollback = false
	p = plan(r, append(tasks, tk)...)
	if d := p.record.Deployments[0]; d.RolloutState != RolloutFailed || d.ID != "ecs-svc/2" || len(p.launch) != 0 {
		t.Fatalf("without rollback: %+v, %d launches", d, len(p.launch))
	}
}

func TestPlanUnhealthyTaskIsReplaced(t *testing.T) {
	no := false
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	p := plan(r, svcTask("sick", "ecs-svc/1", task.StatusRunning, &no))
	if stoppedIDs(p) != "sick" || p.stop[0].reason != "Task failed container health checks" || len(p.launch) != 1 {
		t.Fatalf("stop %+v launch %d", p.stop, len(p.launch))
	}
	if d := p.record.Deployments[0]; len(d.Failed) != 1 {
		t.Errorf("the unhealthy task was not counted as failed: %+v", d)
	}
	// Within the grace period it is left alone.
	r.HealthCheckGracePeriodSeconds = ptr(int32(3600))
	if p := plan(r, svcTask("sick", "ecs-svc/1", task.StatusRunning, &no)); len(p.stop) != 0 {
		t.Errorf("stopped within the grace period: %+v", p.stop)
	}
}

func TestPlanDraining(t *testing.T) {
	r := testService(0, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	r.Status = api.ServiceStatusDraining
	p := plan(r, svcTask("a", "ecs-svc/1", task.StatusRunning, nil))
	if stoppedIDs(p) != "a" || p.record.Status != api.ServiceStatusDraining {
		t.Fatalf("draining: stop %q status %s", stoppedIDs(p), p.record.Status)
	}
	stopped := svcTask("a", "ecs-svc/1", task.StatusStopped, nil)
	if p := plan(r, stopped); p.record.Status != api.ServiceStatusInactive {
		t.Fatalf("with every task stopped the service is %s, want INACTIVE", p.record.Status)
	}
}

func TestPlanUnplacedEventIsThrottled(t *testing.T) {
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	pending := svcTask("p", "ecs-svc/1", task.StatusPending, nil)
	why := func(string) string { return "RESOURCE:MEMORY: no ready host has 4096 MiB of memory free" }
	p := planService(r, []*task.Task{pending}, t0, why, noPlanLimits())
	want := "(service web) was unable to place a task because no host met all of its requirements. Reason: RESOURCE:MEMORY: no ready host has 4096 MiB of memory free."
	if len(p.record.Events) != 1 || p.record.Events[0].Message != want {
		t.Fatalf("events %+v", p.record.Events)
	}
	if p2 := planService(p.record, []*task.Task{pending}, t0.Add(10*time.Second), why, noPlanLimits()); len(p2.record.Events) != 1 {
		t.Errorf("the same reason was repeated within %s", UnplacedEventInterval)
	}
	if p3 := planService(p.record, []*task.Task{pending}, t0.Add(UnplacedEventInterval), why, noPlanLimits()); len(p3.record.Events) != 2 {
		t.Errorf("the reason was not repeated after %s", UnplacedEventInterval)
	}
}

func TestEventsAreBounded(t *testing.T) {
	r := testService(1, 100, 200)
	for i := 0; i < 3*MaxServiceEvents; i++ {
		r.addEvent(t0, "event %d", i)
	}
	if len(r.Events) != MaxServiceEvents || r.Events[0].Message != fmt.Sprintf("event %d", 3*MaxServiceEvents-1) {
		t.Fatalf("%d events, newest %q", len(r.Events), r.Events[0].Message)
	}
}

func TestCircuitBreakerThreshold(t *testing.T) {
	for desired, want := range map[int32]int{0: 10, 1: 10, 20: 10, 21: 11, 100: 50, 400: 200, 5000: 200} {
		if got := circuitBreakerThreshold(desired); got != want {
			t.Errorf("threshold(%d) = %d, want %d", desired, got, want)
		}
	}
}
