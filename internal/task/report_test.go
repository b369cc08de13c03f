package task

import (
	"errors"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// TestApplyReport: the one merge of a host's report into a task, case by
// case: what the host owns is taken, what the control plane owns is not,
// and the lifecycle moves by Advance only.
func TestApplyReport(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now, at := t0.Add(time.Hour), t0.Add(time.Minute)
	one, two, nine := 1, 2, 9
	yes := true
	// base is a task placed on h1, ACTIVATING, with two containers.
	base := func() *Task {
		return &Task{ID: "t1", HostID: "h1", CPUUnits: 256, MemoryMiB: 512, Version: 3,
			LastStatus: StatusActivating, DesiredStatus: StatusRunning, CreatedAt: t0, ConnectivityAt: t0,
			Containers: []Container{{Name: "app", Essential: true, LastStatus: StatusPending}, {Name: "side", LastStatus: StatusPending}}}
	}
	with := func(f func(*Task)) *Task { tk := base(); f(tk); return tk }
	for _, c := range []struct {
		name    string
		task    *Task
		report  Report
		changed bool
		want    *Task  // nil: the task unchanged
		err     string // an invalid argument saying this
	}{
		{name: "empty report", task: base(), report: Report{TaskID: "t1"}},
		{name: "stopped task takes nothing", task: with(func(tk *Task) { tk.LastStatus, tk.DesiredStatus = StatusStopped, StatusStopped }),
			report: Report{IP: "10.0.0.2", LastStatus: StatusRunning, StopCode: StopCodeTaskFailedToStart}},
		{name: "unknown status", task: base(), report: Report{LastStatus: "DONE"}, err: `unknown status "DONE"`},
		{name: "unknown container", task: base(), report: Report{IP: "10.0.0.2", Containers: []ContainerReport{{Name: "nope"}}},
			err: `task t1 has no container "nope"`},
		{name: "host's task fields", task: base(),
			report:  Report{Runtime: "runc", IP: "10.0.0.2", PullStartedAt: at, PullStoppedAt: at, PullProgress: "1/2 layers"},
			changed: true,
			want: with(func(tk *Task) {
				tk.Runtime, tk.IP, tk.PullStartedAt, tk.PullStoppedAt, tk.PullProgress = "runc", "10.0.0.2", at, at, "1/2 layers"
			})},
		{name: "first pull times stay", task: with(func(tk *Task) { tk.PullStartedAt, tk.PullStoppedAt = t0, t0 }),
			report: Report{PullStartedAt: at, PullStoppedAt: at}},
		{name: "pull progress only while activating", task: with(func(tk *Task) { tk.LastStatus = StatusRunning }),
			report: Report{PullProgress: "2/2 layers"}},
		{name: "status moves forward, stamped At", task: base(), report: Report{LastStatus: StatusRunning, At: at}, changed: true,
			want: with(func(tk *Task) { tk.LastStatus, tk.StartedAt = StatusRunning, at })},
		{name: "a report without At is stamped now", task: base(), report: Report{LastStatus: StatusRunning}, changed: true,
			want: with(func(tk *Task) { tk.LastStatus, tk.StartedAt = StatusRunning, now })},
		{name: "status never moves back", task: with(func(tk *Task) { tk.LastStatus = StatusRunning }),
			report: Report{LastStatus: StatusPending}},
		{name: "the host stops the task", task: base(),
			report:  Report{StopCode: StopCodeEssentialContainerExited, StoppedReason: "Essential container in task exited", At: at},
			changed: true,
			want: with(func(tk *Task) {
				tk.DesiredStatus, tk.StopCode, tk.StoppedReason = StatusStopped, StopCodeEssentialContainerExited, "Essential container in task exited"
			})},
		{name: "a stopping task keeps its code, gains a missing reason",
			task:    with(func(tk *Task) { tk.DesiredStatus, tk.StopCode = StatusStopped, StopCodeUserInitiated }),
			report:  Report{StopCode: StopCodeEssentialContainerExited, StoppedReason: "exited"},
			changed: true,
			want: with(func(tk *Task) {
				tk.DesiredStatus, tk.StopCode, tk.StoppedReason = StatusStopped, StopCodeUserInitiated, "exited"
			})},
		{name: "a stopping task keeps its reason",
			task: with(func(tk *Task) {
				tk.DesiredStatus, tk.StopCode, tk.StoppedReason = StatusStopped, StopCodeUserInitiated, "by user"
			}),
			report: Report{StopCode: StopCodeEssentialContainerExited, StoppedReason: "exited"}},
		{name: "stopped: desired status follows", task: base(), report: Report{LastStatus: StatusStopped, At: at}, changed: true,
			want: with(func(tk *Task) {
				tk.LastStatus, tk.DesiredStatus = StatusStopped, StatusStopped
				tk.StoppingAt, tk.ExecutionStoppedAt, tk.StoppedAt = at, at, at
				tk.Containers[0].LastStatus, tk.Containers[1].LastStatus = StatusStopped, StatusStopped
			})},
		{name: "host's container fields", task: base(),
			report: Report{Containers: []ContainerReport{{Name: "side", LastStatus: StatusRunning, RuntimeID: "r1", ImageDigest: "sha256:1",
				HealthStatus: HealthHealthy, Ready: &yes, Started: &yes, StartedAt: at}}},
			changed: true,
			want: with(func(tk *Task) {
				c := &tk.Containers[1]
				c.LastStatus, c.RuntimeID, c.ImageDigest, c.HealthStatus, c.Ready, c.Started, c.StartedAt =
					StatusRunning, "r1", "sha256:1", HealthHealthy, true, true, at
			})},
		{name: "a container's status moves forward only", task: with(func(tk *Task) { tk.Containers[0].LastStatus = StatusRunning }),
			report: Report{Containers: []ContainerReport{{Name: "app", LastStatus: StatusPending}}}},
		{name: "first exit code and reason stay",
			task:   with(func(tk *Task) { tk.Containers[0].ExitCode, tk.Containers[0].Reason = &one, "first" }),
			report: Report{Containers: []ContainerReport{{Name: "app", ExitCode: &two, Reason: "second"}}}},
		{name: "a container's reason names the stopping task's", task: with(func(tk *Task) {
			tk.DesiredStatus, tk.StopCode, tk.StoppedReason = StatusStopped, StopCodeEssentialContainerExited, "Essential container in task exited"
		}),
			report:  Report{Containers: []ContainerReport{{Name: "app", LastStatus: StatusStopped, ExitCode: &nine, Reason: "OutOfMemoryError: container killed"}}},
			changed: true,
			want: with(func(tk *Task) {
				tk.DesiredStatus, tk.StopCode, tk.StoppedReason = StatusStopped, StopCodeEssentialContainerExited, "OutOfMemoryError: container killed"
				c := &tk.Containers[0]
				c.LastStatus, c.ExitCode, c.Reason = StatusStopped, &nine, "OutOfMemoryError: container killed"
			})},
		{name: "not under a restart policy", task: with(func(tk *Task) { tk.RestartPolicy = RestartAlways }),
			report:  Report{Containers: []ContainerReport{{Name: "app", Reason: "OutOfMemoryError"}}},
			changed: true,
			want: with(func(tk *Task) {
				tk.RestartPolicy = RestartAlways
				tk.Containers[0].Reason = "OutOfMemoryError"
			})},
		{name: "a restart in place starts the run over",
			task: with(func(tk *Task) {
				tk.RestartPolicy = RestartAlways
				c := &tk.Containers[0]
				c.LastStatus, c.ExitCode, c.Reason, c.StartedAt, c.FinishedAt = StatusStopped, &one, "Error", t0, at
			}),
			report: Report{Containers: []ContainerReport{{Name: "app", RestartCount: 1, LastStatus: StatusRunning, StartedAt: now,
				LastExitCode: &one, LastReason: "Error", LastStartedAt: t0, LastFinishedAt: at}}},
			changed: true,
			want: with(func(tk *Task) {
				tk.RestartPolicy = RestartAlways
				c := &tk.Containers[0]
				c.RestartCount, c.LastStatus, c.StartedAt = 1, StatusRunning, now
				c.LastExitCode, c.LastReason, c.LastStartedAt, c.LastFinishedAt = &one, "Error", t0, at
			})},
		{name: "an old restart count changes nothing", task: with(func(tk *Task) { tk.Containers[0].RestartCount = 2 }),
			report: Report{Containers: []ContainerReport{{Name: "app", RestartCount: 1, LastExitCode: &one}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := jsonOf(t, c.task)
			tk := c.task.Clone()
			changed, err := tk.ApplyReport(c.report, now)
			if c.err != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ApplyReport: %v; want an invalid argument saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := before
			if c.want != nil {
				want = jsonOf(t, c.want)
			}
			if got := jsonOf(t, tk); got != want {
				t.Errorf("task after the report:\n got %s\nwant %s", got, want)
			}
			if changed != c.changed {
				t.Errorf("changed = %v, want %v", changed, c.changed)
			}
			// An agent retries a report until one is acknowledged, perhaps
			// through another replica after the first applied it: the
			// same report applied again changes nothing.
			after := jsonOf(t, tk)
			again, err := tk.ApplyReport(c.report, now.Add(time.Minute))
			if err != nil {
				t.Fatalf("the same report again: %v", err)
			}
			if got := jsonOf(t, tk); again || got != after {
				t.Errorf("the same report applied twice: changed = %v, task\n got %s\nwant %s", again, got, after)
			}
		})
	}
}

// TestApplyReportOwnsNoMemory: the task keeps no pointer of the report's.
func TestApplyReportOwnsNoMemory(t *testing.T) {
	code := 1
	tk := &Task{ID: "t1", LastStatus: StatusRunning, Containers: []Container{{Name: "app"}}}
	if _, err := tk.ApplyReport(Report{Containers: []ContainerReport{{Name: "app", ExitCode: &code, RestartCount: 1, LastExitCode: &code}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	code = 7
	if c := tk.Containers[0]; *c.ExitCode != 1 || *c.LastExitCode != 1 {
		t.Fatalf("the task's exit codes follow the report's memory: %d, %d", *c.ExitCode, *c.LastExitCode)
	}
}
