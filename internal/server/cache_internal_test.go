package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/scheduler"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/service"
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

// TestPassIndexFollowsTheTasks: over random changes of tasks (created,
// placed, moved, stopped, deleted, relisted), the index the controller's
// pass reads (passIndex) says what a walk over every cached task says:
// the counts by status, the unplaced tasks, each service's tasks, the
// hosts' use summed as the scheduler counts it, and which STOPPED tasks
// are past retention.
func TestPassIndexFollowsTheTasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newTaskCache()
	c.reset(nil, 1)
	rev := int64(1)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	statuses := []task.Status{task.StatusProvisioning, task.StatusPending, task.StatusRunning, task.StatusStopped}
	random := func(id string) *task.Task {
		t := &task.Task{ID: id, Cluster: []string{"default", "prod"}[rng.IntN(2)],
			LastStatus: statuses[rng.IntN(len(statuses))], DesiredStatus: task.StatusRunning,
			CPUUnits: []int64{256, 512, 1024}[rng.IntN(3)], MemoryMiB: []int64{512, 1024}[rng.IntN(2)],
			Subnet: []string{"", "subnet-a", "subnet-b"}[rng.IntN(3)], Runtime: []string{"sim", "runc"}[rng.IntN(2)]}
		if rng.IntN(3) > 0 {
			t.HostID = fmt.Sprintf("h%d", rng.IntN(4))
		}
		if rng.IntN(2) == 0 {
			t.Group = ServiceGroupPrefix + []string{"web", "api"}[rng.IntN(2)]
		}
		if t.Stopped() {
			t.StoppedAt = base.Add(time.Duration(rng.IntN(100)) * time.Minute)
			t.StopCode = task.StopCodeUserInitiated
		}
		return t
	}
	stopped := map[string]bool{} // expired and not yet deleted: a pass deletes them
	for step := range 3000 {
		id := fmt.Sprintf("t%d", rng.IntN(60))
		rev++
		switch r := rng.IntN(20); {
		case r < 14:
			v, err := json.Marshal(random(id))
			if err != nil {
				t.Fatal(err)
			}
			c.apply(store.Event{Type: store.EventPut, KV: store.KV{Key: prefixTasks + id, Value: v, Revision: rev}})
		case r < 17:
			c.wrote(random(id), rev)
		case r < 19:
			c.apply(store.Event{Type: store.EventDelete, KV: store.KV{Key: prefixTasks + id, Revision: rev}})
		default:
			var kvs []store.KV
			for _, tk := range c.tasks {
				v, err := json.Marshal(tk)
				if err != nil {
					t.Fatal(err)
				}
				kvs = append(kvs, store.KV{Key: prefixTasks + tk.ID, Value: v, Revision: c.revs[tk.ID]})
			}
			c.reset(kvs, rev)
			clear(stopped) // a relist orders them anew
		}

		// What a walk over every task says.
		counts := map[task.Status]int{}
		var unplaced []string
		groups := map[string][]string{}
		use := map[string]scheduler.Placed{}
		for _, tk := range c.tasks {
			counts[tk.LastStatus]++
			if g := serviceGroup(tk); g != "" {
				groups[g] = append(groups[g], tk.ID)
			}
			switch {
			case tk.Stopped():
			case tk.HostID == "":
				unplaced = append(unplaced, tk.ID)
			default:
				k := fmt.Sprint(tk.HostID, tk.Subnet, service.SpreadKey(tk), !holdsAddress(tk))
				u := use[k]
				u.HostID, u.Subnet, u.Spread, u.NoAddress = tk.HostID, tk.Subnet, service.SpreadKey(tk), !holdsAddress(tk)
				u.Count++
				u.Size.MilliCPU += tk.MilliCPU()
				u.Size.MemoryMiB += tk.MemoryMiB
				use[k] = u
			}
		}
		v := c.passView()
		if !maps.Equal(v.counts, counts) {
			t.Fatalf("step %d: counts %v, a walk says %v", step, v.counts, counts)
		}
		var gotUnplaced []string
		for _, tk := range v.unplaced {
			gotUnplaced = append(gotUnplaced, tk.ID)
		}
		slices.Sort(gotUnplaced)
		slices.Sort(unplaced)
		if !slices.Equal(gotUnplaced, unplaced) {
			t.Fatalf("step %d: unplaced %v, a walk says %v", step, gotUnplaced, unplaced)
		}
		for g, ids := range groups {
			var got []string
			cluster, group, _ := strings.Cut(g, "/")
			for _, tk := range c.serviceTasks(cluster, group) {
				got = append(got, tk.ID)
			}
			slices.Sort(got)
			slices.Sort(ids)
			if !slices.Equal(got, ids) {
				t.Fatalf("step %d: service %s has %v, a walk says %v", step, g, got, ids)
			}
		}
		if len(c.pass.groups) != len(groups) {
			t.Fatalf("step %d: %d service groups indexed, a walk finds %d", step, len(c.pass.groups), len(groups))
		}
		gotUse := map[string]scheduler.Placed{}
		for _, u := range v.use {
			gotUse[fmt.Sprint(u.HostID, u.Subnet, u.Spread, u.NoAddress)] = u
		}
		if !maps.Equal(gotUse, use) {
			t.Fatalf("step %d: use %v, a walk says %v", step, gotUse, use)
		}

		// Retention: now and then a pass with a cutoff takes the expired.
		if rng.IntN(10) == 0 {
			cutoff := base.Add(time.Duration(rng.IntN(100)) * time.Minute)
			for _, tk := range c.takeExpired(cutoff) {
				stopped[tk.ID] = true
			}
			for _, tk := range c.tasks {
				if tk.Stopped() && tk.StoppedAt.Before(cutoff) && !stopped[tk.ID] {
					t.Fatalf("step %d: task %s stopped at %v, before the cutoff %v, and was not taken", step, tk.ID, tk.StoppedAt, cutoff)
				}
			}
			// The pass deletes them.
			for id := range stopped {
				rev++
				c.apply(store.Event{Type: store.EventDelete, KV: store.KV{Key: prefixTasks + id, Revision: rev}})
			}
			clear(stopped)
		}
	}
}

// TestCacheKeepsNoLogsOrSecrets: the cache follows every key's revision
// but keeps neither the log store's batches (a group may hold hundreds of
// MiB) nor the secrets store's records, which no pass reads.
func TestCacheKeepsNoLogsOrSecrets(t *testing.T) {
	c := newTaskCache()
	c.reset([]store.KV{{Key: cwlogs.EventPrefix + "g:s:0000000000000000", Value: []byte("batch"), Revision: 2},
		{Key: prefixHosts + "h1", Value: []byte("{}"), Revision: 3}}, 3)
	c.apply(store.Event{Type: store.EventPut, KV: store.KV{Key: secrets.Prefix + "db", Value: []byte("sealed"), Revision: 4}})
	c.apply(store.Event{Type: store.EventPut, KV: store.KV{Key: cwlogs.StreamPrefix + "g:s", Value: []byte("{}"), Revision: 5}})
	if got := c.revision(); got != 5 {
		t.Errorf("the cache reflects revision %d, want 5 (every key's revision is followed)", got)
	}
	for k := range c.other {
		if !cached(k) {
			t.Errorf("the cache keeps %s", k)
		}
	}
	if _, ok := c.other[prefixHosts+"h1"]; !ok || len(c.other) != 1 {
		t.Errorf("the cache keeps %d records, want only the host's", len(c.other))
	}
}
