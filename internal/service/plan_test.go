package service

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// The planner's passes, from plain values: no store, no clock.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testService(desired, minH, maxP int32, deps ...Deployment) *Record {
	r := &Record{Name: "web", Cluster: "default", Status: StatusActive, DesiredCount: desired,
		Subnets: []string{"subnet-default"}, MinimumHealthyPercent: minH, MaximumPercent: maxP, Deployments: deps,
		CreatedAt: t0, StatusChangedAt: t0}
	if len(deps) > 0 {
		r.TaskDefinition = deps[0].TaskDefinition
	}
	return r
}

func dep(id, status, rollout, def string) Deployment {
	return Deployment{ID: id, Status: status, RolloutState: rollout, TaskDefinition: def, CreatedAt: t0, UpdatedAt: t0}
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

// taskIDs returns a NewTaskID that counts: t1, t2, ...
func taskIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprint("t", n) }
}

// noLimits are the defaults with no launch limit.
func noLimits() Limits { return Limits{LaunchBudget: -1} }

// computeAt plans r's pass at now with no limits.
func computeAt(r *Record, now time.Time, tasks ...*task.Task) Result {
	return Compute(Input{Service: r, Tasks: tasks, Now: now, NewTaskID: taskIDs(), Limits: noLimits()})
}

// compute plans r's pass a minute after t0.
func compute(r *Record, tasks ...*task.Task) Result {
	return computeAt(r, t0.Add(time.Minute), tasks...)
}

func stoppedIDs(p Result) string {
	var ids []string
	for _, s := range p.Stop {
		ids = append(ids, s.TaskID)
	}
	return strings.Join(ids, ",")
}

func TestComputeNewService(t *testing.T) {
	r := testService(3, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	p := compute(r)
	if len(p.Launch) != 3 || len(p.Stop) != 0 || !p.Changed {
		t.Fatalf("launch %d stop %d changed %v, want 3 launches", len(p.Launch), len(p.Stop), p.Changed)
	}
	for _, l := range p.Launch {
		if l.Deployment != "ecs-svc/1" || l.TaskDefinition != "td:1" {
			t.Errorf("launch %+v is not of the primary deployment", l)
		}
	}
	if msg := p.Record.Events[0].Message; msg != "(service web) has started 3 tasks: (task t1) (task t2) (task t3)." {
		t.Errorf("event %q", msg)
	}
	if r.Events != nil {
		t.Error("Compute changed its input")
	}
}

// TestComputeFirstDeployment: a service stored without deployments gets
// its first one, of its task definition.
func TestComputeFirstDeployment(t *testing.T) {
	r := testService(1, 100, 200)
	r.TaskDefinition = "td:1"
	p := compute(r)
	if len(p.Record.Deployments) != 1 || p.Record.Deployments[0].Status != DeploymentPrimary ||
		len(p.Launch) != 1 || p.Launch[0].TaskDefinition != "td:1" || p.Launch[0].Deployment != p.Record.Deployments[0].ID {
		t.Fatalf("deployments %+v, launches %+v", p.Record.Deployments, p.Launch)
	}
	if len(r.Deployments) != 0 {
		t.Error("Compute changed its input")
	}
}

// TestComputeRollingDeployment walks a deployment of 4 tasks through its
// passes, checking minimumHealthyPercent and maximumPercent at each: drain
// old, launch and complete together.
func TestComputeRollingDeployment(t *testing.T) {
	yes := true
	old := func(n int) []*task.Task {
		var ts []*task.Task
		for i := 0; i < n; i++ {
			ts = append(ts, svcTask(fmt.Sprint("old", i), "ecs-svc/1", task.StatusRunning, &yes))
		}
		return ts
	}
	deps := []Deployment{dep("ecs-svc/2", DeploymentPrimary, RolloutInProgress, "td:2"),
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
			p := compute(testService(4, tc.minH, tc.maxP, deps...), old(4)...)
			if len(p.Launch) != tc.wantLaunch || len(p.Stop) != tc.wantStop {
				t.Errorf("launch %d stop %d, want %d and %d", len(p.Launch), len(p.Stop), tc.wantLaunch, tc.wantStop)
			}
		})
	}

	// Second pass at 100/200: the new tasks are pending; nothing may stop.
	r := testService(4, 100, 200, deps...)
	tasks := old(4)
	for i := 0; i < 4; i++ {
		tasks = append(tasks, svcTask(fmt.Sprint("new", i), "ecs-svc/2", task.StatusPending, &yes))
	}
	if p := compute(r, tasks...); len(p.Launch) != 0 || len(p.Stop) != 0 {
		t.Fatalf("with the new tasks pending: launch %d stop %s", len(p.Launch), stoppedIDs(p))
	}
	// Two are RUNNING but not yet HEALTHY: still nothing.
	no := false
	tasks[4], tasks[5] = svcTask("new0", "ecs-svc/2", task.StatusRunning, &no), svcTask("new1", "ecs-svc/2", task.StatusRunning, nil)
	tasks[4].Containers[0].HealthStatus = task.HealthUnknown
	if p := compute(r, tasks...); stoppedIDs(p) != "old0" {
		// new1 has no health check, so it counts as healthy: one old may go.
		t.Fatalf("with one new task healthy: stopped %q, want old0", stoppedIDs(p))
	}
	// All new ones healthy: every old one goes, and the deployment is not
	// complete until they have stopped.
	for i := 4; i < 8; i++ {
		tasks[i] = svcTask(fmt.Sprint("new", i-4), "ecs-svc/2", task.StatusRunning, &yes)
	}
	p := compute(r, tasks...)
	if stoppedIDs(p) != "old0,old1,old2,old3" {
		t.Fatalf("stopped %q, want every old task", stoppedIDs(p))
	}
	if p.Record.Deployments[0].RolloutState != RolloutInProgress {
		t.Fatal("the deployment completed while old tasks still run")
	}
	for _, s := range p.Stop {
		if !strings.Contains(s.Reason, "Scaling activity initiated by (deployment ecs-svc/2)") {
			t.Errorf("stop reason %q", s.Reason)
		}
	}
	// The old ones have stopped: complete, steady, and the old deployment
	// is gone.
	for i := 0; i < 4; i++ {
		tasks[i] = svcTask(fmt.Sprint("old", i), "ecs-svc/1", task.StatusStopped, &yes)
		tasks[i].StopCode = task.StopCodeServiceSchedulerInitiated
	}
	p = compute(r, tasks...)
	got := p.Record
	if len(got.Deployments) != 1 || got.Deployments[0].RolloutState != RolloutCompleted || !got.Steady ||
		got.StableTaskDefinition != "td:2" {
		t.Fatalf("after the rollout: %+v", got)
	}
	if got.Events[0].Message != "(service web) has reached a steady state." ||
		got.Events[1].Message != "(service web) (deployment ecs-svc/2) deployment completed." {
		t.Errorf("events %+v", got.Events)
	}
	// Steady stays quiet.
	if p := compute(got, tasks...); p.Changed || len(p.Launch)+len(p.Stop) != 0 {
		t.Errorf("a steady service changed: %+v", p)
	}
}

// TestComputeStablePeriod: a deployment whose tasks have run for less than
// StablePeriod is not yet complete.
func TestComputeStablePeriod(t *testing.T) {
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	tk := svcTask("a", "ecs-svc/1", task.StatusRunning, nil)
	if p := computeAt(r, t0.Add(StablePeriod/2), tk); p.Record.Deployments[0].RolloutState != RolloutInProgress || p.Record.Steady {
		t.Fatalf("completed within the stable period: %+v", p.Record.Deployments[0])
	}
	if p := computeAt(r, t0.Add(StablePeriod), tk); p.Record.Deployments[0].RolloutState != RolloutCompleted || !p.Record.Steady {
		t.Fatalf("not completed after the stable period: %+v", p.Record.Deployments[0])
	}
}

func TestComputeUnplacedEventIsThrottled(t *testing.T) {
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	pending := svcTask("p", "ecs-svc/1", task.StatusPending, nil)
	why := func(string) string { return "RESOURCE:MEMORY: no ready host has 4096 MiB of memory free" }
	in := func(r *Record, now time.Time) Input {
		return Input{Service: r, Tasks: []*task.Task{pending}, Now: now, Unplaced: why, NewTaskID: taskIDs(), Limits: noLimits()}
	}
	p := Compute(in(r, t0))
	want := "(service web) was unable to place a task because no host met all of its requirements. Reason: RESOURCE:MEMORY: no ready host has 4096 MiB of memory free."
	if len(p.Record.Events) != 1 || p.Record.Events[0].Message != want {
		t.Fatalf("events %+v", p.Record.Events)
	}
	if p2 := Compute(in(p.Record, t0.Add(10*time.Second))); len(p2.Record.Events) != 1 {
		t.Errorf("the same reason was repeated within %s", UnplacedEventInterval)
	}
	if p3 := Compute(in(p.Record, t0.Add(UnplacedEventInterval))); len(p3.Record.Events) != 2 {
		t.Errorf("the reason was not repeated after %s", UnplacedEventInterval)
	}
}

func TestComputeDraining(t *testing.T) {
	r := testService(0, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	r.Status = StatusDraining
	p := compute(r, svcTask("a", "ecs-svc/1", task.StatusRunning, nil))
	if stoppedIDs(p) != "a" || p.Record.Status != StatusDraining {
		t.Fatalf("draining: stop %q status %s", stoppedIDs(p), p.Record.Status)
	}
	stopped := svcTask("a", "ecs-svc/1", task.StatusStopped, nil)
	if p := compute(r, stopped); p.Record.Status != StatusInactive || !p.Record.StatusChangedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("with every task stopped the service is %s, want INACTIVE", p.Record.Status)
	}
}

func TestSpreadKey(t *testing.T) {
	for _, tc := range []struct {
		group, stopCode, want string
	}{
		{"service:web", "", "default/service:web"},
		{"service:web", task.StopCodeServiceSchedulerInitiated, ""},
		{"family:web", "", ""},
		{"", "", ""},
	} {
		if got := SpreadKey(&task.Task{Cluster: "default", Group: tc.group, StopCode: tc.stopCode}); got != tc.want {
			t.Errorf("SpreadKey(group %q, stopCode %q) = %q, want %q", tc.group, tc.stopCode, got, tc.want)
		}
	}
}

func TestTaskList(t *testing.T) {
	var ids []string
	for i := 0; i < 23; i++ {
		ids = append(ids, fmt.Sprint(i))
	}
	if got := taskList(ids[:2]); got != "(task 0) (task 1)" {
		t.Errorf("taskList of 2: %q", got)
	}
	if got := taskList(ids); !strings.HasSuffix(got, "(task 19) and 3 more") {
		t.Errorf("taskList of 23: %q", got)
	}
}
