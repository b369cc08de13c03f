package server_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// TestTaskTakesThreeWritesToRunning counts the writes of a task's record,
// as the store's own watch sees them, from RunTask to RUNNING: the record
// created (PROVISIONING), placed on a host (PENDING with its host, one
// write), and the agent's reports (ACTIVATING, pull times, containers
// started, RUNNING) in one call.
func TestTaskTakesThreeWritesToRunning(t *testing.T) {
	e := newEnv(t, envOptions{})
	def := e.register("writes", "256", "512", "sleep", "3600")
	_, rev, err := e.st.List(ctx(t), "tasks/")
	if err != nil {
		t.Fatal(err)
	}
	events, err := e.st.Watch(ctx(t), "tasks/", rev)
	if err != nil {
		t.Fatal(err)
	}
	arn := e.run(def)
	id := arn[strings.LastIndex(arn, "/")+1:]
	var statuses []task.Status
	for ev := range events {
		if ev.KV.Key != "tasks/"+id {
			continue
		}
		if ev.Type != store.EventPut {
			t.Fatalf("task %s deleted before RUNNING (statuses %v)", id, statuses)
		}
		var tk task.Task
		if err := json.Unmarshal(ev.KV.Value, &tk); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, tk.LastStatus)
		if tk.LastStatus == task.StatusRunning {
			if tk.PullStartedAt.IsZero() || tk.PullStoppedAt.IsZero() || tk.HostID == "" || tk.Containers[0].LastStatus != task.StatusRunning {
				t.Errorf("the RUNNING record lacks what the reports carried: %+v", tk)
			}
			break
		}
	}
	if want := []task.Status{task.StatusProvisioning, task.StatusPending, task.StatusRunning}; !slices.Equal(statuses, want) {
		t.Fatalf("the task's record was written with statuses %v; want %v (one write each)", statuses, want)
	}
}

// TestReportStatusBatchRules: the reports of one call are about one task,
// at most agentproto.MaxReportsPerCall of them, and at least one.
func TestReportStatusBatchRules(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	for name, reports := range map[string][]agentproto.StatusUpdate{
		"none":      nil,
		"two tasks": {{TaskID: "a", LastStatus: task.StatusActivating}, {TaskID: "b", LastStatus: task.StatusRunning}},
		"too many":  slices.Repeat([]agentproto.StatusUpdate{{TaskID: "a", PullProgress: "x"}}, agentproto.MaxReportsPerCall+1),
	} {
		err := e.srv.ReportStatus(ctx(t), "h1", reports...)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: ReportStatus answered %v, want an invalid-argument error", name, err)
		}
	}
}
