package service

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/task"
)

// TestHostDrain: a service's tasks on a draining host are started
// elsewhere first, within maximumPercent, then stopped within
// minimumHealthyPercent; those not yet RUNNING stop at once.
func TestHostDrain(t *testing.T) {
	on := func(tk *task.Task, host string) *task.Task { tk.HostID = host; return tk }
	primary := dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1")
	// six RUNNING tasks, two on each of h1, h2, h3; h1 drains.
	six := func() []*task.Task {
		var ts []*task.Task
		for i := range 6 {
			ts = append(ts, on(svcTask(fmt.Sprint("run", i), "ecs-svc/1", task.StatusRunning, nil), fmt.Sprint("h", i%3+1)))
		}
		return ts
	}
	drainH1 := map[string]bool{"h1": true}
	for _, tc := range []struct {
		name       string
		minH, maxP int32
		tasks      func() []*task.Task
		draining   map[string]bool
		wantLaunch int
		wantStop   string // task IDs, in order
	}{
		{name: "nothing drains", minH: 100, maxP: 200, tasks: six, draining: nil},
		{name: "another host drains", minH: 100, maxP: 200, tasks: six, draining: map[string]bool{"h9": true}},
		// run0 and run3 are on h1: two replacements start, nothing stops.
		{name: "min100 max200: start first", minH: 100, maxP: 200, tasks: six, draining: drainH1, wantLaunch: 2},
		// no room above 6: nothing may start or stop (as ECS: stuck).
		{name: "min100 max100: stuck", minH: 100, maxP: 100, tasks: six, draining: drainH1},
		// room for one more: one replacement at a time.
		{name: "min100 max120: one at a time", minH: 100, maxP: 120, tasks: six, draining: drainH1, wantLaunch: 1},
		// 50%: three may go at once; both on h1 stop, both are replaced.
		{name: "min50 max100: stop then start", minH: 50, maxP: 100, tasks: six, draining: drainH1, wantLaunch: 2, wantStop: "run0,run3"},
		// the replacements run (on h2, h3): the leaving ones stop.
		{name: "replacements running", minH: 100, maxP: 200, draining: drainH1, wantStop: "run0,run3",
			tasks: func() []*task.Task {
				return append(six(), on(svcTask("new0", "ecs-svc/1", task.StatusRunning, nil), "h2"),
					on(svcTask("new1", "ecs-svc/1", task.StatusRunning, nil), "h3"))
			}},
		// the replacements are still pending: nothing stops, nothing more starts.
		{name: "replacements pending", minH: 100, maxP: 200, draining: drainH1,
			tasks: func() []*task.Task {
				return append(six(), svcTask("new0", "ecs-svc/1", task.StatusPending, nil),
					svcTask("new1", "ecs-svc/1", task.StatusPending, nil))
			}},
		// one replacement runs: one leaving task may go.
		{name: "one replacement running", minH: 100, maxP: 200, draining: drainH1, wantStop: "run0",
			tasks: func() []*task.Task {
				return append(six(), on(svcTask("new0", "ecs-svc/1", task.StatusRunning, nil), "h2"),
					svcTask("new1", "ecs-svc/1", task.StatusPending, nil))
			}},
		// a task on the draining host not yet RUNNING stops at once and is
		// replaced.
		{name: "pending on the draining host", minH: 100, maxP: 200, draining: drainH1, wantLaunch: 1, wantStop: "pend",
			tasks: func() []*task.Task {
				ts := six()[1:3] // run1 on h2, run2 on h3
				return append(ts, on(svcTask("pend", "ecs-svc/1", task.StatusPending, nil), "h1"))
			}},
		// scaling in prefers the tasks on the draining host.
		{name: "scale in", minH: 100, maxP: 200, draining: drainH1, wantStop: "run0,run3",
			tasks: func() []*task.Task {
				return append(six(), on(svcTask("run6", "ecs-svc/1", task.StatusRunning, nil), "h2"),
					on(svcTask("run7", "ecs-svc/1", task.StatusRunning, nil), "h3"))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testService(6, tc.minH, tc.maxP, primary)
			r.Steady = true
			if tc.name == "pending on the draining host" {
				r.DesiredCount = 3
			}
			tasks := tc.tasks()
			before := fmt.Sprint(tc.draining)
			p := Compute(Input{Service: r, Tasks: tasks, Now: t0.Add(60e9), NewTaskID: taskIDs(),
				DrainingHosts: tc.draining, Limits: noLimits()})
			stops := strings.Split(stoppedIDs(p), ",")
			slices.Sort(stops)
			if got := strings.Join(stops, ","); len(p.Launch) != tc.wantLaunch || got != tc.wantStop {
				t.Errorf("launch %d, stop %q; want %d and %q", len(p.Launch), got, tc.wantLaunch, tc.wantStop)
			}
			for _, s := range p.Stop {
				if tc.draining != nil && !strings.Contains(s.Reason, "Host h1 is draining") {
					t.Errorf("stop %s: reason %q does not name the draining host", s.TaskID, s.Reason)
				}
			}
			if fmt.Sprint(tc.draining) != before {
				t.Error("Compute changed DrainingHosts")
			}
			if (tc.wantLaunch > 0 || tc.wantStop != "") && p.Record.Steady {
				t.Error("the service stays steady while its tasks leave a draining host")
			}
		})
	}
}

// TestHostDrainEnds walks a drain of h1 under 6 tasks at 100/200 pass by
// pass, applying each plan: the healthy count never drops below 6, and the
// service ends with no task on h1, steady again.
func TestHostDrainEnds(t *testing.T) {
	r := testService(6, 100, 200, dep("ecs-svc/1", DeploymentPrimary, RolloutCompleted, "td:1"))
	var tasks []*task.Task
	for i := range 6 {
		tk := svcTask(fmt.Sprint("run", i), "ecs-svc/1", task.StatusRunning, nil)
		tk.HostID = fmt.Sprint("h", i%3+1)
		tasks = append(tasks, tk)
	}
	ids := taskIDs()
	now := t0.Add(60e9)
	for pass := range 10 {
		running := 0
		for _, tk := range tasks {
			if tk.LastStatus == task.StatusRunning {
				running++
			}
		}
		if running < 6 {
			t.Fatalf("pass %d: %d tasks RUNNING, fewer than the desired 6", pass, running)
		}
		p := Compute(Input{Service: r, Tasks: tasks, Now: now, NewTaskID: ids,
			DrainingHosts: map[string]bool{"h1": true}, Limits: noLimits()})
		r = p.Record
		stopping := map[string]bool{}
		for _, s := range p.Stop {
			stopping[s.TaskID] = true
		}
		var next []*task.Task
		for _, tk := range tasks {
			tk = tk.Clone()
			switch {
			case stopping[tk.ID]:
				tk.DesiredStatus, tk.LastStatus = task.StatusStopped, task.StatusStopped
			case tk.LastStatus == task.StatusPending:
				// placed on h2 in the meantime, and running by the next pass
				tk.HostID, tk.LastStatus, tk.StartedAt = "h2", task.StatusRunning, now
			}
			next = append(next, tk)
		}
		for _, l := range p.Launch {
			next = append(next, &task.Task{ID: l.TaskID, Cluster: "default", Group: "service:web", StartedBy: l.Deployment,
				LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: now,
				Containers: []task.Container{{Name: "app", Essential: true}}})
		}
		tasks = next
		now = now.Add(10e9)
		if len(p.Launch) == 0 && len(p.Stop) == 0 && r.Steady {
			for _, tk := range tasks {
				if !tk.Stopped() && tk.HostID == "h1" {
					t.Fatalf("steady with task %s still on the draining host", tk.ID)
				}
			}
			return
		}
	}
	t.Fatal("the drain did not end in 10 passes")
}
