package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// TestReportRestartInPlace: a report with a higher RestartCount starts the
// container's run over and keeps the last run's end.
func TestReportRestartInPlace(t *testing.T) {
	e := newEnv(t, envOptions{})
	arn := e.run(e.register("restarts", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	id := arn[strings.LastIndex(arn, "/")+1:]
	// get returns the container once the cache has caught up with the
	// store, which holds every report made so far. (Waiting only for a
	// newer version than the last seen returned, under load, a version
	// the sim host's own report had made before the test's report was
	// in: "after the exit: {... LastStatus:RUNNING ...}".)
	get := func() task.Container {
		t.Helper()
		kv, err := e.st.Get(ctx(t), "tasks/"+id)
		if err != nil {
			t.Fatal(err)
		}
		var stored task.Task
		if err := json.Unmarshal(kv.Value, &stored); err != nil {
			t.Fatal(err)
		}
		var c task.Container
		testutil.Eventually(t, 5*time.Second, func() error {
			tasks, err := e.srv.TaskSnapshot(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range tasks {
				if tk.ID == id && tk.Version >= stored.Version {
					c = tk.Containers[0]
					return nil
				}
			}
			return fmt.Errorf("task %s: the cache did not reach the stored version %d", id, stored.Version)
		})
		return c
	}
	get()
	report := func(cu agentproto.ContainerUpdate) {
		t.Helper()
		if err := e.srv.ReportStatus(ctx(t), "h1", agentproto.StatusUpdate{TaskID: id, Containers: []agentproto.ContainerUpdate{cu}}); err != nil {
			t.Fatal(err)
		}
	}
	no, yes := false, true
	began, ended := time.Now().Add(-time.Minute).UTC(), time.Now().UTC()
	one := 1
	report(agentproto.ContainerUpdate{Name: "app", LastStatus: task.StatusStopped, ExitCode: &one, FinishedAt: ended, Ready: &no})
	if c := get(); c.LastStatus != task.StatusStopped || c.ExitCode == nil || *c.ExitCode != 1 || !c.FinishedAt.Equal(ended) || c.Ready {
		t.Fatalf("after the exit: %+v", c)
	}
	restarted := time.Now().UTC()
	report(agentproto.ContainerUpdate{Name: "app", RestartCount: 1, LastStatus: task.StatusRunning, StartedAt: restarted,
		LastExitCode: &one, LastReason: "x", LastStartedAt: began, LastFinishedAt: ended, Ready: &yes, Started: &yes})
	c := get()
	if c.LastStatus != task.StatusRunning || c.ExitCode != nil || !c.FinishedAt.IsZero() || c.RestartCount != 1 ||
		!c.StartedAt.Equal(restarted) || !c.Ready || !c.Started {
		t.Errorf("after the restart: %+v", c)
	}
	if c.LastExitCode == nil || *c.LastExitCode != 1 || c.LastReason != "x" || !c.LastStartedAt.Equal(began) || !c.LastFinishedAt.Equal(ended) {
		t.Errorf("last state after the restart: code %v reason %q %v..%v", c.LastExitCode, c.LastReason, c.LastStartedAt, c.LastFinishedAt)
	}
	// A repeated report of the same restart starts nothing over.
	report(agentproto.ContainerUpdate{Name: "app", LastStatus: task.StatusStopped, ExitCode: &one})
	get()
	report(agentproto.ContainerUpdate{Name: "app", RestartCount: 1, LastStatus: task.StatusRunning, Ready: &no})
	if c := get(); c.LastStatus != task.StatusStopped || c.RestartCount != 1 {
		t.Errorf("a stale restart report changed the run: %+v", c)
	}
	if got := e.describe(arn); *got.LastStatus != "RUNNING" {
		t.Errorf("task %s, want it RUNNING", *got.LastStatus)
	}
}
