package service

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

func TestThrottleDelay(t *testing.T) {
	c := Throttle{After: 3, Delay: 10 * time.Second, MaxDelay: 45 * time.Second}
	for level, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 4: 45 * time.Second, 50: 45 * time.Second} {
		if got := c.delay(level); got != want {
			t.Errorf("level %d: %v, want %v", level, got, want)
		}
	}
	var d Throttle
	if err := d.Fill(); err != nil || d.After != 3 || d.Delay != 10*time.Second || d.MaxDelay != 27*time.Minute {
		t.Errorf("defaults %+v %v", d, err)
	}
	if err := (&Throttle{Delay: time.Minute, MaxDelay: time.Second}).Fill(); err == nil {
		t.Error("a MaxDelay shorter than Delay was accepted")
	}
	if err := (&Throttle{After: -1}).Fill(); err == nil {
		t.Error("a negative After was accepted")
	}
}

// failedToStart is a task of deployment d created at created that stopped
// before RUNNING.
func failedToStart(id, d string, created time.Time) *task.Task {
	tk := svcTask(id, d, task.StatusStopped, nil)
	tk.CreatedAt, tk.StartedAt, tk.StoppedAt = created, time.Time{}, created.Add(time.Second)
	tk.StopCode = task.StopCodeTaskFailedToStart
	return tk
}

func throttleEvents(r *Record) int {
	n := 0
	for _, e := range r.Events {
		if e.Message == "(service web) is unable to consistently start tasks successfully." {
			n++
		}
	}
	return n
}

func computeWith(r *Record, tasks []*task.Task, now time.Time, lim Limits) Result {
	return Compute(Input{Service: r, Tasks: tasks, Now: now, NewTaskID: taskIDs(), Limits: lim})
}

// TestThrottle walks a service whose tasks keep failing to start through
// the throttle's rounds with a fake clock.
func TestThrottle(t *testing.T) {
	lim := Limits{LaunchBudget: -1, Throttle: Throttle{After: 3, Delay: 10 * time.Second, MaxDelay: 30 * time.Second}}
	r := testService(1, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	var tasks []*task.Task
	type step struct {
		name     string
		at       time.Duration // after t0
		add      func(now time.Time) []*task.Task
		launches int
		level    int
		until    time.Duration // after t0; 0: zero
		events   int
	}
	fail := func(ids ...string) func(time.Time) []*task.Task {
		return func(now time.Time) []*task.Task {
			var out []*task.Task
			for _, id := range ids {
				out = append(out, failedToStart(id, "ecs-svc/1", now.Add(-time.Second)))
			}
			return out
		}
	}
	steps := []step{
		{name: "two failures: not yet", at: 10 * time.Second, add: fail("f1", "f2"), launches: 1},
		{name: "the third starts the first delay", at: 20 * time.Second, add: fail("f3"), level: 1, until: 30 * time.Second, events: 1},
		{name: "waiting", at: 25 * time.Second, level: 1, until: 30 * time.Second, events: 1},
		{name: "the delay has passed: launch again", at: 30 * time.Second, launches: 1, level: 1, until: 30 * time.Second, events: 1},
		{name: "failures of tasks launched before the delay count no more", at: 31 * time.Second,
			add: func(now time.Time) []*task.Task {
				return []*task.Task{failedToStart("old", "ecs-svc/1", t0.Add(19*time.Second))}
			},
			launches: 1, level: 1, until: 30 * time.Second, events: 1},
		{name: "the next round fails too: twice the delay", at: 40 * time.Second, add: fail("f4"), level: 2, until: 60 * time.Second, events: 2},
		{name: "and again: capped", at: 60 * time.Second, add: fail("f5"), level: 3, until: 90 * time.Second, events: 3},
		{name: "tasks that exit after RUNNING do not count", at: 90 * time.Second, add: func(now time.Time) []*task.Task {
			tk := svcTask("exited", "ecs-svc/1", task.StatusStopped, nil)
			tk.CreatedAt, tk.StartedAt, tk.StopCode = now.Add(-time.Second), now, task.StopCodeEssentialContainerExited
			return []*task.Task{tk}
		}, launches: 1, events: 3},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		if s.add != nil {
			tasks = append(tasks, s.add(now)...)
		}
		p := computeWith(r, tasks, now, lim)
		r = p.Record
		want := time.Time{}
		if s.until > 0 {
			want = t0.Add(s.until)
		}
		if len(p.Launch) != s.launches || r.Throttle.Level != s.level || !r.Throttle.Until.Equal(want) || throttleEvents(r) != s.events {
			t.Fatalf("%s: %d launches, level %d until %v, %d events; want %d, %d, %v, %d",
				s.name, len(p.Launch), r.Throttle.Level, r.Throttle.Until, throttleEvents(r), s.launches, s.level, want, s.events)
		}
		// The state is stored with the service: a restarted control
		// plane plans the same.
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Record
		if err := json.Unmarshal(data, &back); err != nil || back.Throttle != r.Throttle {
			t.Fatalf("%s: throttle state %+v stored as %+v (%v)", s.name, r.Throttle, back.Throttle, err)
		}
	}
	// The "exited" task reached RUNNING: the streak is over.
	if r.Throttle.Level != 0 {
		t.Fatalf("a task that reached RUNNING did not end the throttle: %+v", r.Throttle)
	}

	// A new deployment is not throttled.
	r.Throttle = ThrottleState{Level: 4, Since: t0.Add(2 * time.Minute), Until: t0.Add(time.Hour)}
	if p := computeWith(r, tasks, t0.Add(2*time.Minute), lim); len(p.Launch) != 0 {
		t.Fatalf("throttled service launched %d", len(p.Launch))
	}
	r.NewDeployment("td:2", t0.Add(2*time.Minute), "")
	if p := computeWith(r, tasks, t0.Add(2*time.Minute), lim); len(p.Launch) != 1 || p.Record.Throttle.Level != 0 {
		t.Fatalf("a new deployment: %d launches, %+v", len(p.Launch), p.Record.Throttle)
	}
}

// TestThrottleBatch: a batch that fails at once is one round, and one task
// of a batch that starts ends the streak.
func TestThrottleBatch(t *testing.T) {
	lim := Limits{LaunchBudget: -1, Throttle: Throttle{After: 3, Delay: 10 * time.Second, MaxDelay: time.Hour}}
	r := testService(5, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	var tasks []*task.Task
	for i := 0; i < 5; i++ {
		tasks = append(tasks, failedToStart(fmt.Sprint("a", i), "ecs-svc/1", t0))
	}
	p := computeWith(r, tasks, t0.Add(time.Minute), lim)
	if p.Record.Throttle.Level != 1 || len(p.Launch) != 0 || throttleEvents(p.Record) != 1 {
		t.Fatalf("5 failures at once: level %d, %d launches, %d events", p.Record.Throttle.Level, len(p.Launch), throttleEvents(p.Record))
	}
	// The next round: 4 fail, 1 starts.
	now := t0.Add(time.Minute + 10*time.Second)
	p = computeWith(p.Record, tasks, now, lim)
	if len(p.Launch) != 5 {
		t.Fatalf("after the delay: %d launches, want 5", len(p.Launch))
	}
	for i, l := range p.Launch {
		tk := failedToStart(l.TaskID, "ecs-svc/1", now)
		if i == 0 {
			tk = svcTask(l.TaskID, "ecs-svc/1", task.StatusRunning, nil)
			tk.CreatedAt = now
		}
		tasks = append(tasks, tk)
	}
	p = computeWith(p.Record, tasks, now.Add(time.Second), lim)
	if p.Record.Throttle.Level != 0 || !p.Record.Throttle.Until.IsZero() || len(p.Launch) != 4 {
		t.Fatalf("a task of the round started: %+v, %d launches", p.Record.Throttle, len(p.Launch))
	}
	if !strings.Contains(p.Record.Events[0].Message, "has started 4 tasks") {
		t.Errorf("events: %+v", p.Record.Events)
	}
}

// TestLaunchBudget: the planner launches no more than the launch bucket
// holds, the rest on later passes.
func TestLaunchBudget(t *testing.T) {
	r := testService(5, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	for budget, want := range map[int]int{-1: 5, 0: 0, 3: 3, 10: 5} {
		if p := computeWith(r, nil, t0, Limits{LaunchBudget: budget}); len(p.Launch) != want {
			t.Errorf("budget %d: %d launches, want %d", budget, len(p.Launch), want)
		}
	}
}
