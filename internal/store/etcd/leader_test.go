package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
)

// replica is one candidate of an election test: its own store (its own
// client, session and lease) and what its terms saw.
type replica struct {
	st     *etcd.Store
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	leading bool
	terms   int
	termCtx context.Context // the latest term's context
}

func (r *replica) state() (bool, int, context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading, r.terms, r.termCtx
}

func startReplicas(t *testing.T, endpoints []string, prefix string, n int, lease time.Duration) []*replica {
	t.Helper()
	var rs []*replica
	for i := range n {
		r := &replica{st: open(t, endpoints, prefix), done: make(chan struct{})}
		el, err := r.st.NewElector(etcd.ElectorConfig{Lease: lease, Name: fmt.Sprintf("replica-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			defer close(r.done)
			el.Lead(ctx, func(ctx context.Context) {
				r.mu.Lock()
				r.leading, r.terms, r.termCtx = true, r.terms+1, ctx
				r.mu.Unlock()
				<-ctx.Done()
				r.mu.Lock()
				r.leading = false
				r.mu.Unlock()
			})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		rs = append(rs, r)
	}
	return rs
}

// oneLeader waits until exactly one running replica leads and returns it.
func oneLeader(t *testing.T, rs []*replica, timeout time.Duration) int {
	t.Helper()
	leader := -1
	testutil.Eventually(t, timeout, func() error {
		leader = -1
		var leaders []int
		for i, r := range rs {
			if l, _, _ := r.state(); l {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("replicas leading: %v, want exactly one", leaders)
		}
		leader = leaders[0]
		return nil
	})
	return leader
}

func TestElectionOneLeaderAndFailover(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const lease = 2 * time.Second
	rs := startReplicas(t, c.Endpoints(), freshPrefix(t), 3, lease)
	first := oneLeader(t, rs, 30*time.Second)
	for i, r := range rs {
		if _, terms, _ := r.state(); i != first && terms != 0 {
			t.Errorf("replica %d led %d terms while replica %d leads", i, terms, first)
		}
	}

	// The leader stops (its process ends): another leads within the lease
	// and 5 s.
	rs[first].cancel()
	<-rs[first].done
	rest := append(append([]*replica{}, rs[:first]...), rs[first+1:]...)
	oneLeader(t, rest, lease+5*time.Second)
}

func TestFencedWriteRefusedAfterSuccessorLeads(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const lease = 2 * time.Second
	prefix := freshPrefix(t)
	rs := startReplicas(t, c.Endpoints(), prefix, 2, lease)
	old := oneLeader(t, rs, 30*time.Second)
	_, _, oldTerm := rs[old].state()
	fence, ok := store.FenceFrom(oldTerm)
	if !ok {
		t.Fatal("the term's context carries no fence")
	}
	// A paused leader: its writes are still fenced by its term, but its
	// lease is gone as when it stops renewing it. context.WithoutCancel
	// keeps the fence of a process that has not noticed yet.
	paused := context.WithoutCancel(oldTerm)
	if _, err := rs[old].st.Put(paused, "tasks/before", []byte("1"), store.AnyRevision); err != nil {
		t.Fatalf("fenced write while leading: %v", err)
	}
	raw := client(t, c.Endpoints()...)
	got, err := raw.Get(t.Context(), fence.Key)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("election key %s: %v %v", fence.Key, got, err)
	}
	if _, err := raw.Revoke(t.Context(), clientLeaseID(got.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoking the old leader's lease: %v", err)
	}
	successor := 1 - old
	testutil.Eventually(t, lease+5*time.Second, func() error {
		if l, _, _ := rs[successor].state(); !l {
			return errors.New("the successor does not lead yet")
		}
		return nil
	})

	for _, w := range []struct {
		name  string
		write func() error
	}{
		{"put", func() error {
			_, err := rs[old].st.Put(paused, "tasks/after", []byte("2"), store.AnyRevision)
			return err
		}},
		{"put with revision", func() error {
			kv, err := rs[old].st.Get(t.Context(), "tasks/before")
			if err != nil {
				return err
			}
			_, err = rs[old].st.Put(paused, "tasks/before", []byte("3"), kv.Revision)
			return err
		}},
		{"create", func() error {
			_, err := rs[old].st.Put(paused, "tasks/new", []byte("4"), store.MustNotExist)
			return err
		}},
		{"delete", func() error { return rs[old].st.Delete(paused, "tasks/before", store.AnyRevision) }},
	} {
		err := w.write()
		if !store.IsFenced(err) {
			t.Errorf("%s by the old leader after its successor leads: %v, want an error of kind store.ErrFenced", w.name, err)
		} else {
			t.Logf("%s: %v", w.name, err)
		}
	}
	kv, err := rs[old].st.Get(t.Context(), "tasks/before")
	if err != nil || string(kv.Value) != "1" {
		t.Errorf("tasks/before after the fenced writes: %q, %v; want \"1\"", kv.Value, err)
	}
	for _, k := range []string{"tasks/after", "tasks/new"} {
		if _, err := rs[old].st.Get(t.Context(), k); !errdefs.IsNotFound(err) {
			t.Errorf("%s after the refused writes: %v, want not found", k, err)
		}
	}

	// The successor's fenced writes go through; unfenced ones (the API's)
	// by any replica too.
	_, _, newTerm := rs[successor].state()
	if _, err := rs[successor].st.Put(newTerm, "tasks/after", []byte("5"), store.AnyRevision); err != nil {
		t.Errorf("fenced write of the new leader: %v", err)
	}
	if err := rs[successor].st.Delete(newTerm, "tasks/missing", store.AnyRevision); !errdefs.IsNotFound(err) {
		t.Errorf("fenced delete of a missing key: %v, want not found", err)
	}
	if _, err := rs[old].st.Put(t.Context(), "tasks/api", []byte("6"), store.AnyRevision); err != nil {
		t.Errorf("unfenced write of the old leader: %v", err)
	}
	// The old leader notices, ends its term and becomes a follower.
	testutil.Eventually(t, lease+5*time.Second, func() error {
		if l, _, _ := rs[old].state(); l {
			return errors.New("the old leader still runs its term")
		}
		return nil
	})
	oneLeader(t, rs, 5*time.Second)
}

func clientLeaseID(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }
