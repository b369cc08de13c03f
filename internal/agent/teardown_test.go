package agent_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// deleteFails is a runtime whose first Delete of each sandbox fails, as a
// runc delete that meets a busy mount does; the sandbox stays.
type deleteFails struct {
	runtime.Runtime
	mu    sync.Mutex
	calls map[string]int
	// heldAtRetry says, per sandbox, whether its address was still held
	// when Delete was called again.
	heldAtRetry map[string]bool
	held        func(id string) bool
}

var _ runtime.Runtime = (*deleteFails)(nil)

func (d *deleteFails) Delete(ctx context.Context, id string) error {
	d.mu.Lock()
	d.calls[id]++
	n := d.calls[id]
	if n > 1 {
		d.heldAtRetry[id] = d.held(id)
	}
	d.mu.Unlock()
	if n == 1 {
		return errors.New("runc delete: device or resource busy (injected)")
	}
	return d.Runtime.Delete(ctx, id)
}

func (d *deleteFails) deletes(id string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[id], d.heldAtRetry[id]
}

// giveUp stops a task in the record without its host, as the control
// plane does for a host it lost: the task leaves the host's assignments.
func (cp *controlPlane) giveUp(id string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	t := cp.tasks[id]
	t.RequestStop(task.StopCodeTerminationNotice, "its host was lost", time.Now())
	t.Advance(task.StatusStopped, time.Now())
	cp.bump()
}

// TestGivenUpTaskKeepsItsAddressUntilItsSandboxIsGone: a task the control
// plane gave up (absent from the host's assignments) has its sandbox torn
// down; when the first delete fails the sandbox still runs, so its address
// must stay leased (else a new task could be given it while the old
// sandbox answers on it) and the delete is tried again; the address is
// released once the sandbox is gone.
func TestGivenUpTaskKeepsItsAddressUntilItsSandboxIsGone(t *testing.T) {
	var df *deleteFails
	e := newEnvWith(t, time.Second, func(c *agent.Config) {
		df = &deleteFails{Runtime: c.Runtimes["runc"], calls: map[string]int{}, heldAtRetry: map[string]bool{}}
		c.Runtimes["runc"] = df
	})
	df.held = func(id string) bool { _, ok := e.nm.Get(id); return ok }
	id := e.run("", "trap 'exit 0' TERM; while true; do sleep 0.1; done", nil)
	e.waitFor(id, 60*time.Second, "RUNNING", func(t *task.Task) bool { return t.LastStatus == task.StatusRunning })
	if _, ok := e.nm.Get(id); !ok {
		t.Fatal("the running task has no address")
	}

	e.cp.giveUp(id)
	sandboxExists := func() bool {
		infos, err := e.rt.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(infos, func(in runtime.SandboxInfo) bool { return in.ID == id })
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		calls, _ := df.deletes(id)
		_, held := e.nm.Get(id)
		exists := sandboxExists()
		switch {
		case calls == 0:
			return errors.New("the agent has not deleted the given-up task's sandbox yet")
		case !held && exists:
			t.Fatalf("the address of task %s was released while its sandbox still exists (the delete failed)", id)
		case exists || held:
			return fmt.Errorf("sandbox exists %v, address held %v after %d deletes", exists, held, calls)
		}
		return nil
	})
	if calls, heldAtRetry := df.deletes(id); calls < 2 || !heldAtRetry {
		t.Errorf("%d deletes; the address held at the retry: %v", calls, heldAtRetry)
	}
}
