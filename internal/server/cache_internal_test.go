package server

import (
	"encoding/json"
	"testing"

	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// TestCacheReachesARevisionAtItsLastChange: changes committed together
// share a revision; the cache says it reflects that revision only once
// the last of them is in, so that a reader waiting for it (waitCache,
// catchUp) never sees part of it.
func TestCacheReachesARevisionAtItsLastChange(t *testing.T) {
	c := newTaskCache()
	c.reset(nil, 10)
	put := func(id string, more bool) store.Event {
		v, err := json.Marshal(&task.Task{ID: id, HostID: "h1", LastStatus: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		return store.Event{Type: store.EventPut, KV: store.KV{Key: prefixTasks + id, Value: v, Revision: 12}, More: more}
	}
	c.apply(put("a", true))
	if got := c.revision(); got != 11 {
		t.Errorf("after the first of two changes at revision 12 the cache reflects %d, want 11", got)
	}
	if tasks, _, rev, _, _ := c.hostChanges("h1", 10, true); len(tasks) != 1 || rev != 11 {
		t.Errorf("an agent's poll mid-revision got %d tasks as of %d, want 1 as of 11 (so that its next poll gets the rest)", len(tasks), rev)
	}
	c.apply(put("b", false))
	if got := c.revision(); got != 12 {
		t.Errorf("after the last change at revision 12 the cache reflects %d, want 12", got)
	}
	if tasks, _, rev, _, _ := c.hostChanges("h1", 11, true); len(tasks) != 2 || rev != 12 {
		t.Errorf("the next poll got %d tasks as of %d, want both as of 12", len(tasks), rev)
	}
}

// TestHostPulseWakesOnlyItsHost: an agent's poll waits on its host's
// pulse, which a change of another host's tasks leaves alone (with a
// hundred hosts, every write used to wake every poll), and which a change
// of its own host's tasks, a task moving away from it, or a relist closes.
func TestHostPulseWakesOnlyItsHost(t *testing.T) {
	c := newTaskCache()
	c.reset(nil, 1)
	rev := int64(1)
	put := func(id, host string) {
		v, err := json.Marshal(&task.Task{ID: id, HostID: host, LastStatus: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		rev++
		c.apply(store.Event{Type: store.EventPut, KV: store.KV{Key: prefixTasks + id, Value: v, Revision: rev}})
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	h1 := c.hostPulse("h1")
	put("a", "h2")
	if closed(h1) {
		t.Errorf("a change of host h2's task woke host h1's poll")
	}
	put("b", "h1")
	if !closed(h1) {
		t.Errorf("a change of host h1's task did not wake its poll")
	}
	h1, h2 := c.hostPulse("h1"), c.hostPulse("h2")
	put("a", "h1") // moves from h2 to h1
	if !closed(h1) || !closed(h2) {
		t.Errorf("a task moving from h2 to h1: h1 woken %v, h2 woken %v; want both", closed(h1), closed(h2))
	}
	h3 := c.hostPulse("h3")
	c.reset(nil, rev+1)
	if !closed(h3) {
		t.Errorf("a relist did not wake host h3's poll")
	}
}
