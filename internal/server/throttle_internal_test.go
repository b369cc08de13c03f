package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// The buckets and the service throttle, with a fake clock.

func TestKeyLimiterDropsIdleBuckets(t *testing.T) {
	k := newKeyLimiter(1, 3)
	for i := 0; i < 3; i++ {
		if !k.allow("a", t0) {
			t.Fatalf("call %d of a burst of 3 refused", i+1)
		}
	}
	if k.allow("a", t0) {
		t.Fatal("a 4th call within the same instant was allowed")
	}
	if !k.allow("b", t0) || k.size() != 2 {
		t.Fatalf("another key has a bucket of its own: %d buckets", k.size())
	}
	// 1 s later key a has one token again.
	if !k.allow("a", t0.Add(time.Second)) || k.allow("a", t0.Add(time.Second)) {
		t.Fatal("a bucket refills at its rate")
	}
	// Once full again, a's and b's buckets are dropped by the next sweep.
	if !k.allow("c", t0.Add(time.Second+bucketIdle)) || k.size() != 1 {
		t.Fatalf("%d buckets after the sweep, want c's alone", k.size())
	}
	// A bucket that is not full is kept.
	k.allow("c", t0.Add(2*bucketIdle+time.Second))
	k.allow("c", t0.Add(2*bucketIdle+time.Second))
	if k.allow("d", t0.Add(2*bucketIdle+time.Second)); k.size() != 2 {
		t.Fatalf("%d buckets, want c's (not full) and d's", k.size())
	}
	var none *keyLimiter
	if !none.allow("a", t0) {
		t.Fatal("no limiter allows everything")
	}
}

func TestLaunchBucket(t *testing.T) {
	b := newLaunchBucket(20, 100)
	if b.available(t0) != 100 || !b.take(100, t0) || b.take(1, t0) {
		t.Fatal("a full bucket of 100 serves 100 tasks and no more")
	}
	if got := b.available(t0.Add(500 * time.Millisecond)); got != 10 {
		t.Fatalf("%d tokens after 0.5 s at 20/s, want 10", got)
	}
	if b.take(11, t0.Add(500*time.Millisecond)) || !b.take(10, t0.Add(500*time.Millisecond)) {
		t.Fatal("all or none: 11 of 10 refused, 10 of 10 taken")
	}
	var none *launchBucket
	if none.available(t0) != -1 || !none.take(1000, t0) {
		t.Fatal("no bucket: no limit")
	}
}

func TestServiceThrottleDelay(t *testing.T) {
	c := ServiceThrottle{After: 3, Delay: 10 * time.Second, MaxDelay: 45 * time.Second}
	for level, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 4: 45 * time.Second, 50: 45 * time.Second} {
		if got := c.delay(level); got != want {
			t.Errorf("level %d: %v, want %v", level, got, want)
		}
	}
	var d ServiceThrottle
	if err := d.fill(); err != nil || d.After != 3 || d.Delay != 10*time.Second || d.MaxDelay != 27*time.Minute {
		t.Errorf("defaults %+v %v", d, err)
	}
	if err := (&ServiceThrottle{Delay: time.Minute, MaxDelay: time.Second}).fill(); err == nil {
		t.Error("a MaxDelay shorter than Delay was accepted")
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

func throttleEvents(r *serviceRecord) int {
	n := 0
	for _, e := range r.Events {
		if e.Message == "(service web) is unable to consistently start tasks successfully." {
			n++
		}
	}
	return n
}

// TestPlanServiceThrottle walks a service whose tasks keep failing to start
// through the throttle's rounds with a fake clock.
func TestPlanServiceThrottle(t *testing.T) {
	lim := planLimits{launchBudget: -1, throttle: ServiceThrottle{After: 3, Delay: 10 * time.Second, MaxDelay: 30 * time.Second}}
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
		p := planService(r, tasks, now, noReason, lim)
		r = p.record
		want := time.Time{}
		if s.until > 0 {
			want = t0.Add(s.until)
		}
		if len(p.launch) != s.launches || r.Throttle.Level != s.level || !r.Throttle.Until.Equal(want) || throttleEvents(r) != s.events {
			t.Fatalf("%s: %d launches, level %d until %v, %d events; want %d, %d, %v, %d",
				s.name, len(p.launch), r.Throttle.Level, r.Throttle.Until, throttleEvents(r), s.launches, s.level, want, s.events)
		}
		// The state is stored with the service: a restarted control
		// plane plans the same.
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back serviceRecord
		if err := json.Unmarshal(data, &back); err != nil || back.Throttle != r.Throttle {
			t.Fatalf("%s: throttle state %+v stored as %+v (%v)", s.name, r.Throttle, back.Throttle, err)
		}
	}
	// The "exited" task reached RUNNING: the streak is over.
	if r.Throttle.Level != 0 {
		t.Fatalf("a task that reached RUNNING did not end the throttle: %+v", r.Throttle)
	}

	// A new deployment is not throttled.
	r.Throttle = launchThrottle{Level: 4, Since: t0.Add(2 * time.Minute), Until: t0.Add(time.Hour)}
	if p := planService(r, tasks, t0.Add(2*time.Minute), noReason, lim); len(p.launch) != 0 {
		t.Fatalf("throttled service launched %d", len(p.launch))
	}
	r.newDeployment("td:2", t0.Add(2*time.Minute), "")
	if p := planService(r, tasks, t0.Add(2*time.Minute), noReason, lim); len(p.launch) != 1 || p.record.Throttle.Level != 0 {
		t.Fatalf("a new deployment: %d launches, %+v", len(p.launch), p.record.Throttle)
	}
}

// TestPlanServiceThrottleBatch: a batch that fails at once is one round,
// and one task of a batch that starts ends the streak.
func TestPlanServiceThrottleBatch(t *testing.T) {
	lim := planLimits{launchBudget: -1, throttle: ServiceThrottle{After: 3, Delay: 10 * time.Second, MaxDelay: time.Hour}}
	r := testService(5, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	var tasks []*task.Task
	for i := 0; i < 5; i++ {
		tasks = append(tasks, failedToStart(fmt.Sprint("a", i), "ecs-svc/1", t0))
	}
	p := planService(r, tasks, t0.Add(time.Minute), noReason, lim)
	if p.record.Throttle.Level != 1 || len(p.launch) != 0 || throttleEvents(p.record) != 1 {
		t.Fatalf("5 failures at once: level %d, %d launches, %d events", p.record.Throttle.Level, len(p.launch), throttleEvents(p.record))
	}
	// The next round: 4 fail, 1 starts.
	now := t0.Add(time.Minute + 10*time.Second)
	p = planService(p.record, tasks, now, noReason, lim)
	if len(p.launch) != 5 {
		t.Fatalf("after the delay: %d launches, want 5", len(p.launch))
	}
	for i, l := range p.launch {
		tk := failedToStart(l.taskID, "ecs-svc/1", now)
		if i == 0 {
			tk = svcTask(l.taskID, "ecs-svc/1", task.StatusRunning, nil)
			tk.CreatedAt = now
		}
		tasks = append(tasks, tk)
	}
	p = planService(p.record, tasks, now.Add(time.Second), noReason, lim)
	if p.record.Throttle.Level != 0 || !p.record.Throttle.Until.IsZero() || len(p.launch) != 4 {
		t.Fatalf("a task of the round started: %+v, %d launches", p.record.Throttle, len(p.launch))
	}
	if !strings.Contains(p.record.Events[0].Message, "has started 4 tasks") {
		t.Errorf("events: %+v", p.record.Events)
	}
}

// TestPlanLaunchBudget: the service scheduler launches no more than the
// launch bucket holds, the rest on later passes.
func TestPlanLaunchBudget(t *testing.T) {
	r := testService(5, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutInProgress, "td:1"))
	lim := noPlanLimits()
	for budget, want := range map[int]int{-1: 5, 0: 0, 3: 3, 10: 5} {
		lim.launchBudget = budget
		if p := planService(r, nil, t0, noReason, lim); len(p.launch) != want {
			t.Errorf("budget %d: %d launches, want %d", budget, len(p.launch), want)
		}
	}
}
