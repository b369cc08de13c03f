package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

// TestBatchKeepsEachRequestsOutcome commits, as one transaction, writes
// that succeed and writes that fail each in its own way, and reads: every
// request gets the outcome it would have had alone, the writes that
// succeed share one revision, and the watch sends their changes together,
// all but the last with More.
func TestBatchKeepsEachRequestsOutcome(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := t.Context()
	s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: "/batch-test/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := c.Client()
	mustPut := func(key, value string) int64 {
		t.Helper()
		rev, err := s.Put(ctx, key, []byte(value), store.AnyRevision)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	mustPut("exists", "1")
	revB := mustPut("b", "1")
	mustPut("c", "1")
	mustPut("gone", "1")
	// A fence that holds and one whose key was deleted (a lost leadership).
	held, err := cli.Put(ctx, "/fences/held", "")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := cli.Put(ctx, "/fences/lost", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/fences/lost"); err != nil {
		t.Fatal(err)
	}
	holds := store.WithFence(ctx, store.Fence{Key: "/fences/held", Revision: held.Header.Revision})
	lapsed := store.WithFence(ctx, store.Fence{Key: "/fences/lost", Revision: lost.Header.Revision})

	_, rev0, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Watch(ctx, "", rev0)
	if err != nil {
		t.Fatal(err)
	}

	put := func(ctx context.Context, key, value string, expected int64) *request {
		r := s.writeRequest(ctx, key, expected, true)
		r.then = clientv3.OpPut(r.key, value)
		return r
	}
	del := func(key string, expected int64) *request {
		r := s.writeRequest(ctx, key, expected, false)
		r.then = clientv3.OpDelete(r.key)
		return r
	}
	type write struct {
		r       *request
		del     bool
		wantErr error // nil: succeeds
	}
	writes := []write{
		{r: put(ctx, "new", "n", store.MustNotExist)},
		{r: put(ctx, "exists", "2", store.MustNotExist), wantErr: errdefs.ErrAlreadyExists},
		{r: put(ctx, "b", "2", revB+1000), wantErr: errdefs.ErrConflict},
		{r: put(ctx, "missing", "x", 5), wantErr: errdefs.ErrNotFound},
		{r: put(ctx, "c", "2", store.AnyRevision)},
		{r: put(holds, "fenced-held", "f", store.AnyRevision)},
		{r: put(lapsed, "fenced-lost", "f", store.AnyRevision), wantErr: store.ErrFenced},
		{r: del("gone", store.AnyRevision), del: true},
		{r: del("nothing", store.AnyRevision), del: true, wantErr: errdefs.ErrNotFound},
	}
	var batch []*request
	for _, w := range writes {
		w.r.done = make(chan outcome, 1)
		batch = append(batch, w.r)
	}
	s.writes.commit(batch)
	var rev int64
	for _, w := range writes {
		o := <-w.r.done
		var err error
		if w.del {
			err = s.deleteOutcome(w.r, o)
		} else {
			_, err = s.putOutcome(w.r, o)
		}
		switch {
		case w.wantErr == nil && err != nil:
			t.Errorf("%s: %v, want success", w.r.name, err)
		case w.wantErr != nil && !errors.Is(err, w.wantErr):
			t.Errorf("%s: %v, want an error of kind %v", w.r.name, err, w.wantErr)
		case w.wantErr == nil:
			if rev != 0 && o.rev != rev {
				t.Errorf("%s committed at revision %d, the others at %d: one transaction has one revision", w.r.name, o.rev, rev)
			}
			rev = o.rev
		}
	}

	// The store holds exactly the changes that succeeded.
	want := map[string]string{"exists": "1", "b": "1", "c": "2", "new": "n", "fenced-held": "f"}
	kvs, _, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[kv.Key] = string(kv.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the batch the store holds %v, want %v", got, want)
	}

	// Their events: four at rev, More on all but the last.
	var seen []string
	for i := range 4 {
		select {
		case ev := <-events:
			seen = append(seen, fmt.Sprintf("%s %s@%d more=%v", ev.Type, ev.KV.Key, ev.KV.Revision, ev.More))
			if ev.KV.Revision != rev || ev.More != (i < 3) {
				t.Errorf("event %d: %s %s at %d with More %v; want revision %d, More %v", i, ev.Type, ev.KV.Key, ev.KV.Revision, ev.More, rev, i < 3)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch sent %v, want 4 events", seen)
		}
	}

	// Reads batched together: each gets its own key, or not found.
	var reads []*request
	for _, k := range []string{"new", "nothing", "c"} {
		r := s.getRequest(ctx, k)
		r.done = make(chan outcome, 1)
		reads = append(reads, r)
	}
	s.reads.commit(reads)
	for i, want := range []string{"n", "", "2"} {
		kv, err := s.getOutcome(reads[i], <-reads[i].done)
		switch {
		case want == "" && !errors.Is(err, errdefs.ErrNotFound):
			t.Errorf("get %s: %v %v, want not found", reads[i].name, kv, err)
		case want != "" && (err != nil || string(kv.Value) != want):
			t.Errorf("get %s: %q %v, want %q", reads[i].name, kv.Value, err, want)
		}
	}
}

// TestBatchTakesOneWriteOfAKey: two writes of one key are never in one
// transaction (etcd would refuse it); the second waits for the next.
// Requests whose caller has gone are dropped, answered with its error.
func TestBatchTakesOneWriteOfAKey(t *testing.T) {
	b := &batcher{flows: 1}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	req := func(ctx context.Context, key string, write bool) *request {
		return &request{ctx: ctx, key: key, write: write, size: 10, done: make(chan outcome, 1)}
	}
	x1, y, x2, xr, dropped := req(t.Context(), "x", true), req(t.Context(), "y", true), req(t.Context(), "x", true), req(t.Context(), "x", false), req(gone, "z", true)
	b.queue = []*request{x1, dropped, y, x2, xr}
	first := b.take()
	if len(first) != 3 || first[0] != x1 || first[1] != y || first[2] != xr {
		t.Errorf("first batch %v, want x, y and the read of x", keysOf(first))
	}
	if o := <-dropped.done; !errors.Is(o.err, context.Canceled) {
		t.Errorf("the request whose caller has gone got %v, want context.Canceled", o.err)
	}
	second := b.take()
	if len(second) != 1 || second[0] != x2 {
		t.Errorf("second batch %v, want the second write of x", keysOf(second))
	}
	if last := b.take(); len(last) != 0 || b.flows != 0 {
		t.Errorf("after the queue is empty: batch %v and %d flows, want none", keysOf(last), b.flows)
	}
}

func keysOf(rs []*request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.key)
	}
	return out
}
