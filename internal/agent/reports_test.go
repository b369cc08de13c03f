package agent_test

import (
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/task"
)

// TestReportsUpToRunningInOneCall: with a report delay longer than the
// start, a task's progress reports (ACTIVATING with its pull start, its
// address, its image digest, its container started) reach the control
// plane with RUNNING, in one call, and in order: the task record holds
// all of them.
func TestReportsUpToRunningInOneCall(t *testing.T) {
	e := newEnvWith(t, time.Second, func(c *agent.Config) { c.ReportDelay = time.Minute })
	id := e.run("", "sleep 3600", nil)
	tk := e.waitFor(id, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning })
	e.cp.mu.Lock()
	calls := e.cp.calls
	e.cp.mu.Unlock()
	if calls != 1 {
		t.Errorf("the task's reports up to RUNNING took %d calls, want 1", calls)
	}
	c := tk.Containers[0]
	if tk.IP == "" || tk.PullStartedAt.IsZero() || tk.PullStoppedAt.IsZero() || tk.StartedAt.IsZero() ||
		c.LastStatus != task.StatusRunning || c.StartedAt.IsZero() || c.RuntimeID == "" {
		t.Errorf("the RUNNING task lacks what the reports carried: %+v, container %+v", tk, c)
	}
	if tk.PullStartedAt.After(tk.PullStoppedAt) || tk.PullStoppedAt.After(tk.StartedAt) {
		t.Errorf("times out of order: pull %v to %v, started %v", tk.PullStartedAt, tk.PullStoppedAt, tk.StartedAt)
	}
}
