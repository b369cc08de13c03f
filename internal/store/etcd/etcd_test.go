package etcd_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/store/storetest"
	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/internal/tlsutil"
)

var prefixes atomic.Int64

// freshPrefix returns a prefix no other store of this test binary uses.
func freshPrefix(t *testing.T) string {
	return fmt.Sprintf("/vessel-test/%s/%d/", strings.ReplaceAll(t.Name(), "/", "."), prefixes.Add(1))
}

func open(t *testing.T, endpoints []string, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(t.Context(), etcd.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatalf("Open(%v, %q): %v", endpoints, prefix, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client returns a raw etcd client, for what the store never does
// (compaction, asking who leads).
func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	raw := client(t, c.Endpoints()...)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, c.Endpoints(), freshPrefix(t))
	}, storetest.Options{
		OpenWithHistory: func(t *testing.T, history int) store.Store {
			return &compacting{Store: open(t, c.Endpoints(), freshPrefix(t)), cli: raw, history: int64(history)}
		},
	})
}

// compacting compacts the etcd cluster after every write so that it keeps
// only the last history revisions, as an operator's --auto-compaction would
// in time: the store itself never compacts. Only for a test that is alone in
// writing to the cluster.
type compacting struct {
	store.Store
	cli     *clientv3.Client
	history int64
}

func (s *compacting) Put(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	rev, err := s.Store.Put(ctx, key, value, expected)
	if err == nil {
		err = s.compact(ctx)
	}
	return rev, err
}

func (s *compacting) Delete(ctx context.Context, key string, expected int64) error {
	err := s.Store.Delete(ctx, key, expected)
	if err == nil {
		err = s.compact(ctx)
	}
	return err
}

func (s *compacting) compact(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, "compact-probe", clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	if keep := resp.Header.Revision - s.history + 1; keep > 1 {
		_, err = s.cli.Compact(ctx, keep, clientv3.WithCompactPhysical())
	}
	return err
}

// TestPersistence checks that records and the revision survive closing the
// store and stopping and starting every member of the cluster.
func TestPersistence(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefixOf := map[string]string{}
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		prefix, seen := prefixOf[dir]
		if !seen {
			prefix = freshPrefix(t)
			prefixOf[dir] = prefix
		} else {
			for i := range 3 {
				c.Stop(i)
			}
			c.StartAll(0, 1, 2)
		}
		return open(t, c.Endpoints(), prefix)
	})
}

func TestOpenRejectsBadConfig(t *testing.T) {
	for _, cfg := range []etcd.Config{
		{},
		{Endpoints: []string{""}},
		{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/vessel"},
		{Endpoints: []string{"http://127.0.0.1:1"}, RequestTimeout: -time.Second},
	} {
		s, err := etcd.Open(t.Context(), cfg)
		if !errdefs.IsInvalidArgument(err) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%+v) = %v, want an error of kind invalid argument", cfg, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	s, err := etcd.Open(t.Context(), etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: time.Second})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "etcd store at http://127.0.0.1:1") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of an address where no etcd listens = %v, want an error of kind unavailable naming the store", err)
	}
}

// TestPrefixesAreSeparate checks that two installations sharing one etcd see
// only their own records and changes.
func TestPrefixesAreSeparate(t *testing.T) {
	ctx := t.Context()
	c := etcdtest.Start(t, 1)
	a := open(t, c.Endpoints(), "/a/")
	b := open(t, c.Endpoints(), "/a2/")
	ch := watchFromNow(t, ctx, b)
	if _, err := a.Put(ctx, "tasks/x", []byte("a"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "tasks/x"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get(tasks/x) under /a2/ after a Put under /a/ = %v, want not found", err)
	}
	revB, err := b.Put(ctx, "tasks/x", []byte("b"), store.MustNotExist)
	if err != nil {
		t.Fatalf("Put(tasks/x) under /a2/ with the key under /a/: %v", err)
	}
	ev := storetest.Next(t, ch)
	if ev.KV.Key != "tasks/x" || string(ev.KV.Value) != "b" || ev.KV.Revision != revB {
		t.Fatalf("watch under /a2/ got %v, want only its own put of tasks/x=b at %d", ev, revB)
	}
	kvs, _, err := a.List(ctx, "")
	if err != nil || len(kvs) != 1 || string(kvs[0].Value) != "a" {
		t.Fatalf("List under /a/ = %v, %v; want just tasks/x=a", kvs, err)
	}
}

// TestWatchResumesAfterReconnect kills the member a watch reads from and
// checks that, once the client has reconnected, the watch sends the changes
// made meanwhile, in order, and goes on: the client resumes it from the
// revision after the last change it sent.
func TestWatchResumesAfterReconnect(t *testing.T) {
	c := etcdtest.Start(t, 3)
	t.Run("SameMember", func(t *testing.T) {
		ctx := t.Context()
		prefix := freshPrefix(t)
		w := open(t, []string{c.Endpoint(0)}, prefix) // reads from member 0 only
		other := open(t, []string{c.Endpoint(1), c.Endpoint(2)}, prefix)
		ch := watchFromNow(t, ctx, w)
		want := []store.Event{put(t, other, "a", "1")}
		storetest.WantEvents(t, ch, want)

		c.Kill(0)
		c.WaitLeader()
		want = []store.Event{put(t, other, "b", "2"), put(t, other, "a", "3"), del(t, other, "b")}
		c.Start(0)
		want = append(want, put(t, other, "c", "4"))
		storetest.WantEvents(t, ch, want)
	})
	t.Run("EveryMember", func(t *testing.T) {
		// The store knows every member; each in turn is killed while the
		// watch runs and the store writes: whichever the watch read from,
		// it moves to another.
		ctx := t.Context()
		s := open(t, c.Endpoints(), freshPrefix(t))
		ch := watchFromNow(t, ctx, s)
		var want []store.Event
		for i := range 3 {
			c.Kill(i)
			c.WaitLeader()
			want = append(want, put(t, s, fmt.Sprintf("k%d", i), "down"))
			c.Start(i)
			c.WaitLeader()
			want = append(want, put(t, s, fmt.Sprintf("k%d", i), "up"))
		}
		storetest.WantEvents(t, ch, want)
	})
}

// TestWatchCompactedRelists kills the member a watch reads from, writes and
// compacts the cluster past the watch's revision while it is away, and
// checks that the watch is not resumed with a gap: its channel closes after
// exactly the changes before the kill, and a watcher that lists again
// (as the server and the keyring do) rebuilds the true state.
func TestWatchCompactedRelists(t *testing.T) {
	ctx := t.Context()
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix(t)
	w := open(t, []string{c.Endpoint(0)}, prefix)
	other := open(t, []string{c.Endpoint(1), c.Endpoint(2)}, prefix)
	raw := client(t, c.Endpoint(1))

	put(t, other, "gone", "x")
	_, rev, err := w.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := w.Watch(ctx, "", rev)
	if err != nil {
		t.Fatal(err)
	}
	storetest.WantEvents(t, ch, []store.Event{put(t, other, "a", "1")})

	c.Kill(0)
	c.WaitLeader()
	put(t, other, "a", "2")
	put(t, other, "b", "3")
	del(t, other, "gone")
	cur, err := raw.Get(ctx, "probe", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, cur.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact(%d): %v", cur.Header.Revision, err)
	}
	c.Start(0) // serves only once it has applied the compaction

	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("watch whose next revision was compacted sent %v, want its channel closed (the changes up to %d are gone)", ev, cur.Header.Revision)
		}
	case <-time.After(storetest.Timeout):
		t.Fatalf("watch whose next revision was compacted still open after %v", storetest.Timeout)
	}
	if _, err := w.Watch(ctx, "", rev); !errdefs.IsConflict(err) {
		t.Fatalf("Watch from compacted revision %d = %v, want an error of kind conflict", rev, err)
	}

	// Relist, then watch again.
	kvs, rev, err := w.List(ctx, "")
	if err != nil {
		t.Fatalf("List after the watch closed: %v", err)
	}
	state := map[string]string{}
	for _, kv := range kvs {
		state[kv.Key] = string(kv.Value)
	}
	if fmt.Sprint(state) != fmt.Sprint(map[string]string{"a": "2", "b": "3"}) {
		t.Fatalf("List after the compaction = %v, want a=2 b=3", state)
	}
	ch, err = w.Watch(ctx, "", rev)
	if err != nil {
		t.Fatalf("Watch(%d) after relisting: %v", rev, err)
	}
	storetest.WantEvents(t, ch, []store.Event{put(t, other, "c", "4")})
}

// TestMemberKilledDuringWrites kills the leader while several writers
// write, and checks that every write acknowledged, before or after, is in
// the store with the revision it was acknowledged at, and that writes went
// on once another member led.
func TestMemberKilledDuringWrites(t *testing.T) {
	ctx := t.Context()
	c := etcdtest.Start(t, 3)
	s := open(t, c.Endpoints(), freshPrefix(t))

	var mu sync.Mutex
	acked := map[string]int64{}
	var killed atomic.Bool
	var afterKill atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d/%06d", w, i)
				rev, err := s.Put(ctx, key, []byte(key), store.MustNotExist)
				if err != nil {
					// Refused or unknown while a new leader is elected:
					// allowed, as long as what was acknowledged stays.
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[key] = rev
				mu.Unlock()
				if killed.Load() {
					afterKill.Add(1)
				}
			}
		})
	}
	waitFor(t, "100 acknowledged writes", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 100 })
	leader := c.LeaderIndex()
	c.Kill(leader)
	killed.Store(true)
	waitFor(t, "100 writes acknowledged after the leader was killed", func() bool { return afterKill.Load() >= 100 })
	close(stop)
	wg.Wait()
	c.Start(leader)

	mu.Lock()
	defer mu.Unlock()
	kvs, _, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, kv := range kvs {
		got[kv.Key] = kv.Revision
	}
	for key, rev := range acked {
		if got[key] != rev {
			t.Errorf("acknowledged write %s at revision %d: in the store at %d (0: missing)", key, rev, got[key])
		}
	}
	t.Logf("%d writes acknowledged, %d after killing leader m%d; %d keys in the store", len(acked), afterKill.Load(), leader, len(got))
}

// TestQuorumLoss stops two of three members and checks that writes and
// reads are refused with an error of kind unavailable that names the store,
// within the request timeout rather than hanging, and that the same store
// works again once the members are back.
func TestQuorumLoss(t *testing.T) {
	ctx := t.Context()
	c := etcdtest.Start(t, 3)
	s := open(t, c.Endpoints(), freshPrefix(t))
	rev := put(t, s, "before", "1").KV.Revision

	c.Kill(1)
	c.Kill(2)
	for _, op := range []struct {
		name string
		f    func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "during", []byte("x"), store.MustNotExist); return err }},
		{"Get", func() error { _, err := s.Get(ctx, "before"); return err }},
		{"List", func() error { _, _, err := s.List(ctx, ""); return err }},
		{"Delete", func() error { return s.Delete(ctx, "before", rev) }},
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- op.f() }()
		select {
		case err := <-done:
			if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "etcd store at ") {
				t.Errorf("%s without quorum = %v, want an error of kind unavailable naming the store", op.name, err)
			}
			t.Logf("%s without quorum answered after %v: %v", op.name, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(storetest.Timeout):
			t.Fatalf("%s without quorum did not return within %v", op.name, storetest.Timeout)
		}
	}

	// Many calls at once, as an API under load makes them: each is
	// answered within the request timeout (and a little), not queued
	// behind the others' timeouts.
	bound := etcd.DefaultRequestTimeout + 3*time.Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	var late []string
	for i := range 30 {
		wg.Go(func() {
			start := time.Now()
			var err error
			switch i % 3 {
			case 0:
				_, err = s.Put(ctx, fmt.Sprintf("many/%d", i), []byte("x"), store.AnyRevision)
			case 1:
				_, err = s.Get(ctx, "before")
			default:
				_, _, err = s.List(ctx, "")
			}
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if !errdefs.IsUnavailable(err) || took > bound {
				late = append(late, fmt.Sprintf("call %d: %v after %v", i, err, took.Round(time.Millisecond)))
			}
		})
	}
	wg.Wait()
	if len(late) > 0 {
		t.Errorf("without quorum, of 30 calls at once these were not refused as unavailable within %v:\n%s", bound, strings.Join(late, "\n"))
	}

	c.StartAll(1, 2)
	// The same store, not reopened, works again once the client has
	// reconnected.
	var err error
	waitFor(t, "a Put to succeed after the members returned", func() bool {
		_, err = s.Put(ctx, "after", []byte("2"), store.AnyRevision)
		return err == nil
	})
	kv, err := s.Get(ctx, "before")
	if err != nil || kv.Revision != rev || string(kv.Value) != "1" {
		t.Fatalf("Get(before) after quorum returned = %v, %v; want 1 at %d", kv, err, rev)
	}
}

// Helpers.

func put(t *testing.T, s store.Store, key, value string) store.Event {
	t.Helper()
	rev, err := s.Put(t.Context(), key, []byte(value), store.AnyRevision)
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: []byte(value), Revision: rev}}
}

func del(t *testing.T, s store.Store, key string) store.Event {
	t.Helper()
	if err := s.Delete(t.Context(), key, store.AnyRevision); err != nil {
		t.Fatalf("Delete(%s): %v", key, err)
	}
	_, rev, err := s.List(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, Revision: rev}}
}

// waitFor waits, with the shared testutil.Eventually, for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, storetest.Timeout, func() error {
		if !cond() {
			return fmt.Errorf("%s: not yet", what)
		}
		return nil
	})
}

// TestTLS runs the store against a member that speaks TLS and requires a
// client certificate, configured from PEM files as the server's
// --etcd-cacert, --etcd-cert and --etcd-key are.
func TestTLS(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ca, err := tlsutil.LoadOrCreateCA(filepath.Join(dir, "ca"), "etcd test CA")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	srvCert, srvKey, err := ca.Issue("etcd", []string{"127.0.0.1", "localhost"}, both, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca.Issue("vessel", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", ca.PEM)
	certFile, keyFile := write("client.pem", cliCert), write("client-key.pem", cliKey)
	tlsCfg, err := etcd.TLSConfig(caFile, certFile, keyFile)
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	c := etcdtest.StartTLS(t, 1, &etcdtest.TLS{CertFile: write("etcd.pem", srvCert), KeyFile: write("etcd-key.pem", srvKey), CAFile: caFile, Client: tlsCfg})
	if !strings.HasPrefix(c.Endpoint(0), "https://") {
		t.Fatalf("member's client URL %s, want https", c.Endpoint(0))
	}

	s, err := etcd.Open(ctx, etcd.Config{Endpoints: c.Endpoints(), TLS: tlsCfg})
	if err != nil {
		t.Fatalf("Open with the client certificate: %v", err)
	}
	defer s.Close()
	rev := put(t, s, "tasks/a", "1").KV.Revision
	if kv, err := s.Get(ctx, "tasks/a"); err != nil || kv.Revision != rev {
		t.Fatalf("Get over TLS = %v, %v; want tasks/a at %d", kv, err, rev)
	}

	// Without a client certificate the member refuses the connection.
	noCert, err := etcd.TLSConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := etcd.Open(ctx, etcd.Config{Endpoints: c.Endpoints(), TLS: noCert, DialTimeout: 2 * time.Second}); !errdefs.IsUnavailable(err) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open without a client certificate = %v, want an error of kind unavailable", err)
	}
	if _, err := etcd.TLSConfig(caFile, certFile, ""); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("TLSConfig with a certificate and no key = %v, want an error of kind invalid argument", err)
	}
	if _, err := etcd.TLSConfig(filepath.Join(dir, "missing.pem"), "", ""); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("TLSConfig with a missing CA file = %v, want an error of kind invalid argument", err)
	}
}

// watchFromNow watches every key of st from its current revision.
func watchFromNow(t *testing.T, ctx context.Context, st store.Store) <-chan store.Event {
	t.Helper()
	_, rev, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.Watch(ctx, "", rev)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
