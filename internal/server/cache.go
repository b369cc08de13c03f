package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// taskCache mirrors the stored tasks in memory, fed by the store's watch, so
// that the controller and agents' long polls do not decode every task on
// every change. It may lag the store by a few events: every decision made
// from it is applied with a revision-checked write against the store.
type taskCache struct {
	mu    sync.RWMutex
	tasks map[string]*task.Task
	revs  map[string]int64 // each task's revision in the store
	rev   int64
	// byHost indexes the tasks placed on each host; hostRev is the last
	// revision that changed a task of the host, and hostFull the last one
	// after which its changes alone no longer tell its set (a task of it
	// deleted). resetRev is the revision of the last
	// relist, after which the same holds for every host. hostLog lists, per
	// host, the revisions at which its tasks changed, in revision order, so
	// that a poll reads only what changed after its revision (a task may be
	// listed more than once; the log is compacted as it grows).
	byHost   map[string]map[string]*task.Task
	hostLog  map[string][]hostChange
	loading  bool // in reset: the logs are made at its end
	hostRev  map[string]int64
	hostFull map[string]int64
	resetRev int64
	// other mirrors the store's keys that are not tasks (hosts,
	// heartbeats, services, profiles, slices, ...), for the controller's
	// passes (cachedReads).
	other map[string]store.KV
	// pass indexes the tasks for the controller's passes.
	pass passIndex
	// wake holds, per host, a channel closed at the next change of the
	// host's tasks (or a relist): its agent's poll waits on it, so that a
	// change wakes only the poll of its host (hostPulse).
	wake   map[string]chan struct{}
	synced chan struct{}
	once   sync.Once
}

// uncachedPrefixes are the store's keys the cache follows for their
// revisions only, without keeping them: the log store's streams and
// batches (up to --logs-max-group-bytes a group) and the secrets store's
// sealed records, which no controller pass reads.
var uncachedPrefixes = []string{cwlogs.GroupPrefix, cwlogs.StreamPrefix, cwlogs.EventPrefix, secrets.Prefix, secrets.ParameterPrefix}

// cached says whether the cache keeps key.
func cached(key string) bool {
	for _, p := range uncachedPrefixes {
		if strings.HasPrefix(key, p) {
			return false
		}
	}
	return true
}

// hostChange is one change of a task of a host, at revision rev.
type hostChange struct {
	rev int64
	id  string
}

func newTaskCache() *taskCache {
	return &taskCache{tasks: map[string]*task.Task{}, revs: map[string]int64{},
		byHost: map[string]map[string]*task.Task{}, hostLog: map[string][]hostChange{},
		hostRev: map[string]int64{}, hostFull: map[string]int64{},
		other: map[string]store.KV{}, pass: newPassIndex(), wake: map[string]chan struct{}{}, synced: make(chan struct{})}
}

// index records t (nil: none) as task id's version at rev, in place of its
// previous one, in tasks and byHost; c.mu is held.
func (c *taskCache) index(id string, t *task.Task, rev int64) {
	c.pass.change(c.tasks[id], t)
	if old := c.tasks[id]; old != nil && old.HostID != "" {
		c.wakeHost(old.HostID)
		delete(c.byHost[old.HostID], id)
		c.hostRev[old.HostID] = max(c.hostRev[old.HostID], rev)
		if t == nil {
			// An agent that had not yet seen it stop would not learn it.
			c.hostFull[old.HostID] = max(c.hostFull[old.HostID], rev)
		}
	}
	if t == nil {
		delete(c.tasks, id)
		delete(c.revs, id)
		return
	}
	c.tasks[id], c.revs[id] = t, rev
	if t.HostID != "" {
		c.wakeHost(t.HostID)
		if c.byHost[t.HostID] == nil {
			c.byHost[t.HostID] = map[string]*task.Task{}
		}
		c.byHost[t.HostID][id] = t
		c.hostRev[t.HostID] = max(c.hostRev[t.HostID], rev)
		if !c.loading {
			c.logChange(t.HostID, id, rev)
		}
	}
}

// wakeHost wakes the poll waiting for host's changes, if any; c.mu is
// held.
func (c *taskCache) wakeHost(host string) {
	if ch, ok := c.wake[host]; ok {
		close(ch)
		delete(c.wake, host)
	}
}

// hostPulse returns a channel closed at the next change of host's tasks
// in the cache, or at its next relist.
func (c *taskCache) hostPulse(host string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.wake[host]
	if !ok {
		ch = make(chan struct{})
		c.wake[host] = ch
	}
	return ch
}

// logChange adds task id's change at rev to host's log, in revision order
// (a write of this replica enters ahead of the watch's older events), and
// compacts the log to one entry per task of the host once it holds more
// than twice as many; c.mu is held.
func (c *taskCache) logChange(host, id string, rev int64) {
	l := c.hostLog[host]
	i := len(l)
	for i > 0 && l[i-1].rev > rev {
		i--
	}
	l = slices.Insert(l, i, hostChange{rev: rev, id: id})
	if len(l) > 2*len(c.byHost[host])+64 {
		l = c.compactLog(host)
	}
	c.hostLog[host] = l
}

// compactLog is host's log with one entry per task of the host; c.mu is
// held.
func (c *taskCache) compactLog(host string) []hostChange {
	l := make([]hostChange, 0, len(c.byHost[host]))
	for id := range c.byHost[host] {
		l = append(l, hostChange{rev: c.revs[id], id: id})
	}
	slices.SortFunc(l, func(a, b hostChange) int { return cmp.Compare(a.rev, b.rev) })
	return l
}

// hostChanges is what changed among the tasks placed on hostID after
// revision after: the tasks not STOPPED that changed, and those that
// stopped, as of the returned revision. full says the answer is instead
// the host's whole set of tasks not STOPPED (asked so, with changes false;
// or after is 0, or too old for changes alone to tell the set); changed
// says whether any task of the host changed after after. The tasks are
// shared.
func (c *taskCache) hostChanges(hostID string, after int64, changes bool) (tasks []*task.Task, stopped []string, rev int64, full, changed bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	changed = after <= 0 || after < c.resetRev || after < c.hostFull[hostID] || after < c.hostRev[hostID]
	full = !changes || after <= 0 || after < c.resetRev || after < c.hostFull[hostID]
	if full {
		for _, t := range c.byHost[hostID] {
			if !t.Stopped() {
				tasks = append(tasks, t)
			}
		}
		return tasks, stopped, c.rev, full, changed
	}
	l := c.hostLog[hostID]
	seen := map[string]bool{}
	for _, ch := range l[sort.Search(len(l), func(i int) bool { return l[i].rev > after }):] {
		t, ok := c.byHost[hostID][ch.id]
		if seen[ch.id] || !ok || c.revs[ch.id] <= after {
			continue
		}
		seen[ch.id] = true
		if t.Stopped() {
			stopped = append(stopped, ch.id)
		} else {
			tasks = append(tasks, t)
		}
	}
	return tasks, stopped, c.rev, full, changed
}

// hostAhead is the revision of the last change of host's tasks if the
// cache holds it ahead of the watch (a write of this replica, in through
// wrote or created), else 0.
func (c *taskCache) hostAhead(host string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if r := c.hostRev[host]; r > c.rev {
		return r
	}
	return 0
}

// ready waits for the cache's first load. If ctx ends first, the error is
// of kind errdefs.ErrUnavailable and wraps ctx's error.
func (c *taskCache) ready(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: the control plane is still loading its tasks from the store (%w)", errdefs.ErrUnavailable, ctx.Err())
	}
}

// snapshot returns the cached tasks and the store revision they reflect,
// waiting for the first load. The tasks are shared: callers must not
// change them. If ctx ends before the first load, the error is of kind
// errdefs.ErrUnavailable (the caller may retry) and wraps ctx's error.
func (c *taskCache) snapshot(ctx context.Context) ([]*task.Task, int64, error) {
	if err := c.ready(ctx); err != nil {
		return nil, 0, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*task.Task, 0, len(c.tasks))
	for _, t := range c.tasks {
		out = append(out, t)
	}
	return out, c.rev, nil
}

// list returns the cached keys under prefix that are not tasks, in key
// order, and the revision the cache reflects.
func (c *taskCache) list(prefix string) ([]store.KV, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []store.KV
	for k, kv := range c.other {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	slices.SortFunc(out, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return out, c.rev
}

// revision returns the store revision the cache reflects.
func (c *taskCache) revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// reset loads the cache from a listing of the whole store at rev.
func (c *taskCache) reset(kvs []store.KV, rev int64) {
	c.mu.Lock()
	c.tasks, c.revs, c.byHost = map[string]*task.Task{}, map[string]int64{}, map[string]map[string]*task.Task{}
	c.hostLog, c.other, c.pass = map[string][]hostChange{}, map[string]store.KV{}, newPassIndex()
	c.loading = true
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, prefixTasks) {
			if cached(kv.Key) {
				c.other[kv.Key] = kv
			}
			continue
		}
		var t task.Task
		if json.Unmarshal(kv.Value, &t) == nil {
			c.index(t.ID, &t, kv.Revision)
		}
	}
	c.loading = false
	for host := range c.byHost {
		c.hostLog[host] = c.compactLog(host)
	}
	c.rev, c.resetRev = rev, rev
	for host := range c.wake {
		c.wakeHost(host)
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.synced) })
}

func (c *taskCache) apply(ev store.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev = ev.KV.Revision
	if ev.More {
		c.rev-- // the revision's other changes are still to come
	}
	id, ok := strings.CutPrefix(ev.KV.Key, prefixTasks)
	if !ok {
		switch {
		case !cached(ev.KV.Key):
		case ev.Type == store.EventDelete:
			delete(c.other, ev.KV.Key)
		case ev.KV.Revision >= c.other[ev.KV.Key].Revision:
			c.other[ev.KV.Key] = ev.KV
		}
		return
	}
	if ev.Type == store.EventDelete {
		c.index(id, nil, ev.KV.Revision)
		return
	}
	if ev.KV.Revision < c.revs[id] {
		return // older than a write of this replica's, already in (wrote)
	}
	var t task.Task
	if json.Unmarshal(ev.KV.Value, &t) == nil {
		c.index(id, &t, ev.KV.Revision)
	}
}

// wrote puts a task this replica just stored (created or changed) at rev
// into the cache ahead of the watch's event, so that its next change (or
// its placement) starts from it: over an older cached version, or, when
// the cache holds none, only if the watch has not passed rev yet (else its
// event, or a later one such as its deletion, is in already).
func (c *taskCache) wrote(t *task.Task, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tasks[t.ID]; rev > c.revs[t.ID] && (ok || rev > c.rev) {
		c.index(t.ID, t.Clone(), rev)
	}
}

// get returns a copy of cached task id and its revision in the store, if
// the cache holds it. The copy may be older than the store's.
func (c *taskCache) get(id string) (*task.Task, int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.tasks[id]
	if !ok || c.revs[id] <= 0 {
		return nil, 0, false
	}
	return t.Clone(), c.revs[id], true
}

// Reading one's writes across replicas. The task cache follows the store's
// watch, so on a replica other than the one that took a write it may lag by
// a few events. An API read that must show every acknowledged write, on any
// replica, uses freshTasks: the cache when it has reached the store's
// current revision (with one replica on bbolt, nearly always, at the cost of
// reading one key), else the store itself.

// storeTasks reads every task from the store, with the revision the
// listing reflects.
func (s *Server) storeTasks(ctx context.Context) ([]*task.Task, int64, error) {
	ts, rev, err := s.listTasks(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make([]*task.Task, len(ts))
	for i := range ts {
		out[i] = &ts[i]
	}
	return out, rev, nil
}

// freshTasks returns the tasks as of the store's current revision or later,
// and the revision they reflect: from the cache when it has caught up, else
// read through the store. The tasks are shared: callers must not change
// them.
func (s *Server) freshTasks(ctx context.Context) ([]*task.Task, int64, error) {
	_, rev, err := s.store.List(ctx, keyMetaVersion)
	if err != nil {
		return nil, 0, err
	}
	tasks, cached, err := s.tasks.snapshot(ctx)
	if err != nil {
		return nil, 0, err
	}
	if cached >= rev {
		return tasks, cached, nil
	}
	return s.storeTasks(ctx)
}

// waitCache waits until the task cache reflects revision rev (true), or
// ctx is done (false). A revision this store never reaches (one seen on
// another store, or raised by writes outside this installation's prefix)
// keeps it waiting until ctx is done.
func (s *Server) waitCache(ctx context.Context, rev int64) bool {
	for {
		pulse := s.pulseChan()
		if s.tasks.revision() >= rev {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-pulse:
		}
	}
}
