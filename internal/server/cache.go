package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// taskCache mirrors the stored tasks in memory, fed by the store's watch, so
// that the controller and agents' long polls do not decode every task on
// every change. It may lag the store by a few events: every decision made
// from it is applied with a revision-checked write against the store.
type taskCache struct {
	mu     sync.RWMutex
	tasks  map[string]*task.Task
	rev    int64
	synced chan struct{}
	once   sync.Once
}

func newTaskCache() *taskCache {
	return &taskCache{tasks: map[string]*task.Task{}, synced: make(chan struct{})}
}

// snapshot returns the cached tasks and the store revision they reflect,
// waiting for the first load. The tasks are shared: callers must not
// change them. If ctx ends before the first load, the error is of kind
// errdefs.ErrUnavailable (the caller may retry) and wraps ctx's error.
func (c *taskCache) snapshot(ctx context.Context) ([]*task.Task, int64, error) {
	select {
	case <-c.synced:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: the control plane is still loading its tasks from the store (%w)", errdefs.ErrUnavailable, ctx.Err())
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*task.Task, 0, len(c.tasks))
	for _, t := range c.tasks {
		out = append(out, t)
	}
	return out, c.rev, nil
}

// revision returns the store revision the cache reflects.
func (c *taskCache) revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

func (c *taskCache) reset(kvs []store.KV, rev int64) {
	tasks := make(map[string]*task.Task, len(kvs))
	for _, kv := range kvs {
		var t task.Task
		if json.Unmarshal(kv.Value, &t) == nil {
			tasks[t.ID] = &t
		}
	}
	c.mu.Lock()
	c.tasks, c.rev = tasks, rev
	c.mu.Unlock()
	c.once.Do(func() { close(c.synced) })
}

func (c *taskCache) apply(ev store.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev = ev.KV.Revision
	id, ok := strings.CutPrefix(ev.KV.Key, prefixTasks)
	if !ok {
		return
	}
	if ev.Type == store.EventDelete {
		delete(c.tasks, id)
		return
	}
	var t task.Task
	if json.Unmarshal(ev.KV.Value, &t) == nil {
		c.tasks[id] = &t
	}
}
