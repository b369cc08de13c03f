package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
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

// TestAssignmentsAnswerChanges: after a first whole set, a host's poll is
// answered with what changed among its own tasks only (new or changed
// tasks, and the IDs of those that stopped), and a change to a task of no
// concern to the host does not answer it.
func TestAssignmentsAnswerChanges(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	if err := e.srv.RegisterHost(c, agentproto.Host{ID: "h1", MilliCPU: 4000, MemoryMiB: 8192, Runtimes: []string{"sim"}}); err != nil {
		t.Fatal(err)
	}
	def := e.register("changes", "256", "512", "sleep", "3600")
	placed := func(arn string) string {
		t.Helper()
		id := arn[strings.LastIndex(arn, "/")+1:]
		testutil.Eventually(t, 10*time.Second, func() error {
			as, err := e.srv.Assignments(c, "h1", 0)
			if err != nil {
				return err
			}
			for _, tk := range as.Tasks {
				if tk.ID == id {
					return nil
				}
			}
			return fmt.Errorf("task %s is not placed on h1 yet", id)
		})
		return id
	}
	first := []string{placed(e.run(def)), placed(e.run(def))}
	all, err := e.srv.Assignments(c, "h1", 0)
	if err != nil || all.Changes || len(all.Tasks) != 2 {
		t.Fatalf("first poll: %d tasks, changes %v, %v; want the whole set of 2", len(all.Tasks), all.Changes, err)
	}
	poll := func(after int64) agentproto.Assignments {
		t.Helper()
		pc, cancel := context.WithTimeout(c, 500*time.Millisecond)
		defer cancel()
		as, err := e.srv.Assignments(pc, "h1", after)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	ids := func(ts []task.Task) (out []string) {
		for _, tk := range ts {
			out = append(out, tk.ID)
		}
		return out
	}

	// A task no host can take changes the store, not h1's set.
	e.run(e.register("huge", "4096", "30720", "sleep", "3600"))
	quiet := poll(all.Revision)
	if !quiet.Changes || len(quiet.Tasks) != 0 || len(quiet.Stopped) != 0 {
		t.Fatalf("nothing of h1 changed, yet the poll answered %v (changes %v, stopped %v)", ids(quiet.Tasks), quiet.Changes, quiet.Stopped)
	}

	third := placed(e.run(def))
	next := poll(quiet.Revision)
	if !next.Changes || !slices.Equal(ids(next.Tasks), []string{third}) {
		t.Fatalf("after a third task: %v (changes %v); want only %s", ids(next.Tasks), next.Changes, third)
	}

	// The first task stops: the next answer names it among the stopped.
	at := time.Now()
	if err := e.srv.ReportStatus(c, "h1", agentproto.StatusUpdate{TaskID: first[0], LastStatus: task.StatusStopped, StopCode: "EssentialContainerExited", StoppedReason: "done", At: at}); err != nil {
		t.Fatal(err)
	}
	after := poll(next.Revision)
	if !after.Changes || len(after.Tasks) != 0 || !slices.Equal(after.Stopped, []string{first[0]}) {
		t.Fatalf("after %s stopped: tasks %v, stopped %v, changes %v; want it alone among the stopped", first[0], ids(after.Tasks), after.Stopped, after.Changes)
	}
}

// listCounter counts a store's List calls by the prefix listed.
type listCounter struct {
	store.Store
	mu    sync.Mutex
	lists map[string]int
}

func (l *listCounter) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	l.mu.Lock()
	l.lists[prefix]++
	l.mu.Unlock()
	return l.Store.List(ctx, prefix)
}

// take returns the counts so far and starts again from zero.
func (l *listCounter) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lists
	l.lists = map[string]int{}
	return out
}

// TestControllerPassesListFromTheCache: once caught up with the store, a
// controller pass reads hosts, heartbeats, drains, profiles, services and
// slices from the watch's cache: while tasks go from RunTask to RUNNING,
// the store is listed only for the passes' catch-up (the meta key) and
// task definitions.
func TestControllerPassesListFromTheCache(t *testing.T) {
	var lc *listCounter
	e := newEnvWith(t, envOptions{hostMilliCPU: 8000, hostMemoryMiB: 16384}, func(c *server.Config) {
		lc = &listCounter{Store: c.Store, lists: map[string]int{}}
		c.Store = lc
	})
	def := e.register("cached", "256", "512", "sleep", "3600")
	e.waitStatus(e.run(def), "RUNNING")
	lc.take()
	var arns []string
	for range 10 {
		arns = append(arns, e.run(def))
	}
	for _, arn := range arns {
		e.waitStatus(arn, "RUNNING")
	}
	lists := lc.take()
	for prefix, n := range lists {
		if prefix != "meta/version" && !strings.HasPrefix(prefix, "taskdefs/") {
			t.Errorf("the store was listed %d times under %q while tasks were placed; want the cache to answer", n, prefix)
		}
	}
}
