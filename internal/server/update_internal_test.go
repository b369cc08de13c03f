package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/task"
)

// countingStore counts the reads of single keys.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (store.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// updateFixture is a server on bbolt whose task cache is fed by hand (no
// Run, so no watch), holding task "t1" in the cache as stored at first.
func updateFixture(t *testing.T) (*Server, *countingStore) {
	dir := t.TempDir()
	bs, err := bolt.Open(bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	st := &countingStore{Store: bs}
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: st, Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(task.Task{ID: "t1", LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning})
	rev, err := st.Put(context.Background(), taskKey("t1"), data, store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	s.tasks.reset([]store.KV{{Key: taskKey("t1"), Value: data, Revision: rev}}, rev)
	return s, st
}

// otherReplicaWrites changes t1 in the store behind the cache's back, as
// another replica would before this one's watch brings the change.
func otherReplicaWrites(t *testing.T, st store.Store) {
	var cur task.Task
	rev, err := getJSON(context.Background(), st, taskKey("t1"), &cur)
	if err != nil {
		t.Fatal(err)
	}
	cur.StartedBy = "other-replica"
	if _, err := putJSON(context.Background(), st, taskKey("t1"), &cur, rev); err != nil {
		t.Fatal(err)
	}
}

func storedTask(t *testing.T, st store.Store) task.Task {
	var got task.Task
	if _, err := getJSON(context.Background(), st, taskKey("t1"), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestUpdateTaskFromCache(t *testing.T) {
	ctx := context.Background()
	errStale := errors.New("decided from a stale copy")
	for _, tc := range []struct {
		name  string
		stale bool // another replica wrote after the cache's copy
		fn    func(t *task.Task) (bool, error)
		// reads is how many times the store is read; the update is the
		// group "mine" set on the stored task, keeping the other's write.
		reads int64
	}{
		{name: "current cache: no read", fn: func(t *task.Task) (bool, error) { t.Group = "mine"; return true, nil }},
		{name: "stale cache: the revision check refuses it, then the store's copy is changed", stale: true, reads: 1,
			fn: func(t *task.Task) (bool, error) { t.Group = "mine"; return true, nil }},
		{name: "no change decided from a stale copy is asked of the store", stale: true, reads: 1,
			fn: func(t *task.Task) (bool, error) {
				if t.StartedBy != "other-replica" {
					return false, nil
				}
				t.Group = "mine"
				return true, nil
			}},
		{name: "an error from a stale copy is asked of the store", stale: true, reads: 1,
			fn: func(t *task.Task) (bool, error) {
				if t.StartedBy != "other-replica" {
					return false, errStale
				}
				t.Group = "mine"
				return true, nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, st := updateFixture(t)
			if tc.stale {
				otherReplicaWrites(t, st)
			}
			st.gets.Store(0)
			got, err := s.updateTask(ctx, "t1", tc.fn)
			if err != nil {
				t.Fatalf("updateTask: %v", err)
			}
			if n := st.gets.Load(); n != tc.reads {
				t.Errorf("the store was read %d times, want %d", n, tc.reads)
			}
			stored := storedTask(t, st)
			if stored.Group != "mine" || got.Group != "mine" {
				t.Errorf("group stored %q, returned %q; want the update's %q", stored.Group, got.Group, "mine")
			}
			if tc.stale && stored.StartedBy != "other-replica" {
				t.Errorf("startedBy %q: the other replica's write was lost", stored.StartedBy)
			}
			if stored.Version != got.Version {
				t.Errorf("version stored %d, returned %d", stored.Version, got.Version)
			}
			// The replica's own write is in its cache at once: the next
			// update starts from it without a read and without a conflict.
			st.gets.Store(0)
			if _, err := s.updateTask(ctx, "t1", func(t *task.Task) (bool, error) {
				t.Group = "again"
				return true, nil
			}); err != nil {
				t.Fatal(err)
			}
			if n := st.gets.Load(); n != 0 || storedTask(t, st).Group != "again" {
				t.Errorf("a second update read the store %d times (want 0) and stored group %q", n, storedTask(t, st).Group)
			}
		})
	}
}

func TestUpdateTaskErrorFromTheStoresCopy(t *testing.T) {
	s, st := updateFixture(t)
	st.gets.Store(0)
	refused := errors.New("refused")
	_, err := s.updateTask(context.Background(), "t1", func(t *task.Task) (bool, error) { return false, refused })
	if !errors.Is(err, refused) {
		t.Fatalf("updateTask: %v, want the function's error", err)
	}
	if n := st.gets.Load(); n != 1 {
		t.Errorf("the error was given after %d reads of the store, want 1 (decided from the store's copy)", n)
	}
}
