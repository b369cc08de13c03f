package server

import (
	"container/heap"
	"strings"
	"time"

	"vessel.dev/vessel/internal/scheduler"
	"vessel.dev/vessel/internal/service"
	"vessel.dev/vessel/internal/task"
)

// passIndex is what the controller's pass reads of the tasks, kept by the
// task cache at each change (taskCache.index), so that a pass costs what
// changed and what waits, not every task known: with a thousand tasks
// RUNNING and nothing else happening, a pass reads the counts and the
// hosts' summed use and walks nothing.
type passIndex struct {
	// counts is how many tasks are in each status.
	counts map[task.Status]int
	// unplaced are the tasks not STOPPED that have no host yet.
	unplaced map[string]*task.Task
	// groups holds the tasks of each service ("cluster/service:name"),
	// STOPPED ones included.
	groups map[string]map[string]*task.Task
	// use sums the placed tasks not STOPPED by host, subnet, spread and
	// address, as the scheduler counts them.
	use map[useKey]*scheduler.Placed
	// stops orders the STOPPED tasks by the time they stopped, for
	// retention; an entry is stale when its task is gone or changed.
	stops stopHeap
}

// useKey is what the scheduler tells placed tasks apart by.
type useKey struct {
	host, subnet, spread string
	noAddress            bool
}

func newPassIndex() passIndex {
	return passIndex{counts: map[task.Status]int{}, unplaced: map[string]*task.Task{},
		groups: map[string]map[string]*task.Task{}, use: map[useKey]*scheduler.Placed{}}
}

// serviceGroup is the key of t's service in groups, "" when t belongs to
// none.
func serviceGroup(t *task.Task) string {
	if !strings.HasPrefix(t.Group, ServiceGroupPrefix) {
		return ""
	}
	return t.Cluster + "/" + t.Group
}

// change replaces old (nil: none) by t (nil: none), two versions of one
// task.
func (x *passIndex) change(old, t *task.Task) {
	if old != nil {
		x.count(old, -1)
	}
	if t != nil {
		x.count(t, 1)
		if t.Stopped() && (old == nil || !old.Stopped() || !old.StoppedAt.Equal(t.StoppedAt)) {
			heap.Push(&x.stops, stopEntry{at: t.StoppedAt, id: t.ID})
		}
	}
}

// count adds t to the index (n = 1) or takes it out (n = -1).
func (x *passIndex) count(t *task.Task, n int) {
	x.counts[t.LastStatus] += n
	if x.counts[t.LastStatus] == 0 {
		delete(x.counts, t.LastStatus)
	}
	if g := serviceGroup(t); g != "" {
		if n > 0 {
			if x.groups[g] == nil {
				x.groups[g] = map[string]*task.Task{}
			}
			x.groups[g][t.ID] = t
		} else if delete(x.groups[g], t.ID); len(x.groups[g]) == 0 {
			delete(x.groups, g)
		}
	}
	switch {
	case t.Stopped():
	case t.HostID == "":
		if n > 0 {
			x.unplaced[t.ID] = t
		} else {
			delete(x.unplaced, t.ID)
		}
	default:
		k := useKey{host: t.HostID, subnet: t.Subnet, spread: service.SpreadKey(t), noAddress: !holdsAddress(t)}
		u := x.use[k]
		if u == nil {
			u = &scheduler.Placed{HostID: k.host, Subnet: k.subnet, Spread: k.spread, NoAddress: k.noAddress}
			x.use[k] = u
		}
		u.Count += n
		u.Size.MilliCPU += int64(n) * t.MilliCPU()
		u.Size.MemoryMiB += int64(n) * t.MemoryMiB
		if u.Count == 0 {
			delete(x.use, k)
		}
	}
}

// stopEntry is a task that stopped at at.
type stopEntry struct {
	at time.Time
	id string
}

// stopHeap is a min-heap of stopEntry by time (container/heap).
type stopHeap []stopEntry

func (h stopHeap) Len() int           { return len(h) }
func (h stopHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h stopHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *stopHeap) Push(x any)        { *h = append(*h, x.(stopEntry)) }
func (h *stopHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// passView is what one controller pass reads of the tasks: copies of the
// index's parts it needs, taken under the cache's lock at once. The tasks
// are shared: a pass clones one before changing it.
type passView struct {
	counts   map[task.Status]int
	unplaced []*task.Task
	use      []scheduler.Placed
	// hosts lists every host that has tasks in the cache.
	hosts []string
}

// passView returns the view of one pass.
func (c *taskCache) passView() passView {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := &c.pass
	v := passView{counts: make(map[task.Status]int, len(x.counts))}
	for s, n := range x.counts {
		v.counts[s] = n
	}
	for _, t := range x.unplaced {
		v.unplaced = append(v.unplaced, t)
	}
	for _, u := range x.use {
		v.use = append(v.use, *u)
	}
	for h := range c.byHost {
		v.hosts = append(v.hosts, h)
	}
	return v
}

// takeExpired takes out of the retention order the STOPPED tasks that
// stopped before cutoff and returns them; a pass that does not delete one
// hands it back (retainAgain). The tasks are shared.
func (c *taskCache) takeExpired(cutoff time.Time) []*task.Task {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*task.Task
	for x := &c.pass; len(x.stops) > 0 && x.stops[0].at.Before(cutoff); {
		e := heap.Pop(&x.stops).(stopEntry)
		if t := c.tasks[e.id]; t != nil && t.Stopped() && t.StoppedAt.Equal(e.at) {
			out = append(out, t)
		}
	}
	return out
}

// retainAgain puts back into the retention order expired tasks that a
// pass did not delete.
func (c *taskCache) retainAgain(ts []*task.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range ts {
		heap.Push(&c.pass.stops, stopEntry{at: t.StoppedAt, id: t.ID})
	}
}

// serviceTasks returns the tasks of a service's group ("service:name") in
// cluster, STOPPED ones included. The tasks are shared.
func (c *taskCache) serviceTasks(cluster, group string) []*task.Task {
	c.mu.RLock()
	defer c.mu.RUnlock()
	g := c.pass.groups[cluster+"/"+group]
	out := make([]*task.Task, 0, len(g))
	for _, t := range g {
		out = append(out, t)
	}
	return out
}

// hostTasks returns the tasks placed on host that are not STOPPED. The
// tasks are shared.
func (c *taskCache) hostTasks(host string) []*task.Task {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*task.Task
	for _, t := range c.byHost[host] {
		if !t.Stopped() {
			out = append(out, t)
		}
	}
	return out
}
