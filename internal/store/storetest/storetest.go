package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Timeout bounds every wait for a watch event or a channel close. It is
// generous because test machines are shared; a correct store never comes
// near it.
var Timeout = 30 * time.Second

// Options tunes Run for what a back end can do.
type Options struct {
	// OpenWithHistory, if set, opens a fresh, empty store that keeps no more
	// than history past changes for Watch. Run uses it to check that
	// watching from a revision no longer kept fails with ErrConflict; when
	// nil that check is skipped.
	OpenWithHistory func(t *testing.T, history int) store.Store
}

// Run runs the conformance suite. open must return a fresh, empty store for
// each call and arrange for it to be closed when t ends (closing it twice is
// allowed by the interface). At most one Options may be given.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Options) {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("storetest.Run: got %d Options, want at most 1", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"InvalidArguments", testInvalidArguments},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"MustNotExist", testMustNotExist},
		{"ExpectedRevision", testExpectedRevision},
		{"AnyRevision", testAnyRevision},
		{"Delete", testDelete},
		{"List", testList},
		{"ListWatchContinuity", testListWatchContinuity},
		{"ListWatchContinuityUnderWrites", testListWatchUnderWrites},
		{"WatchReplay", testWatchReplay},
		{"WatchPrefix", testWatchPrefix},
		{"WatchFutureRevision", testWatchFuture},
		{"WatchClosesOnCancel", testWatchCancel},
		{"WatchClosesOnClose", testWatchClose},
		{"ConcurrentPuts", testConcurrentPuts},
		{"PutCopiesValue", testPutCopiesValue},
		{"AfterClose", testAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
	t.Run("WatchTooOld", func(t *testing.T) {
		if o.OpenWithHistory == nil {
			t.Skip("back end gave no Options.OpenWithHistory")
		}
		testWatchTooOld(t, o.OpenWithHistory)
	})
}

// RunPersistence checks that data and the revision counter survive closing
// and reopening a store. openAt must open the store kept in dir (empty on
// the first call) and arrange for it to be closed when t ends.
func RunPersistence(t *testing.T, openAt func(t *testing.T, dir string) store.Store) {
	t.Helper()
	t.Run("SurvivesReopen", func(t *testing.T) {
		ctx := t.Context()
		dir := t.TempDir()

		s := openAt(t, dir)
		revA := mustPut(t, s, "a", "1", store.MustNotExist)
		mustPut(t, s, "b", "2", store.MustNotExist)
		if err := s.Delete(ctx, "b", store.AnyRevision); err != nil {
			t.Fatalf("Delete(b): %v", err)
		}
		_, before, err := s.List(ctx, "")
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = openAt(t, dir)
		wantKV(t, s, "a", "1", revA)
		wantErr(t, "Get(b) after reopen", getErr(s, "b"), errdefs.ErrNotFound)
		kvs, rev, err := s.List(ctx, "")
		if err != nil {
			t.Fatalf("List after reopen: %v", err)
		}
		if rev != before {
			t.Errorf("List revision after reopen = %d, want %d (the revision before closing)", rev, before)
		}
		if len(kvs) != 1 || kvs[0].Key != "a" {
			t.Errorf("List after reopen = %v, want just key a", kvs)
		}
		ch, err := s.Watch(ctx, "", rev)
		if err != nil {
			t.Fatalf("Watch(%d) after reopen: %v", rev, err)
		}
		revC := mustPut(t, s, "c", "3", store.MustNotExist)
		if revC <= before {
			t.Errorf("Put after reopen returned revision %d, want more than %d", revC, before)
		}
		ev := Next(t, ch)
		if ev.Type != store.EventPut || ev.KV.Key != "c" || ev.KV.Revision != revC {
			t.Errorf("watch after reopen got %v, want put of c at %d", fmtEvent(ev), revC)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = openAt(t, dir)
		wantKV(t, s, "a", "1", revA)
		wantKV(t, s, "c", "3", revC)
		if rev := mustPut(t, s, "a", "4", revA); rev <= revC {
			t.Errorf("Put after second reopen returned revision %d, want more than %d", rev, revC)
		}
	})
}

func testGetMissing(t *testing.T, s store.Store) {
	wantErr(t, "Get(missing)", getErr(s, "missing"), errdefs.ErrNotFound)
	mustPut(t, s, "missing/child", "x", store.MustNotExist)
	wantErr(t, "Get(missing) with a longer key present", getErr(s, "missing"), errdefs.ErrNotFound)
}

func testPutGet(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "tasks/abc", `{"id":"abc"}`, store.MustNotExist)
	if rev <= 0 {
		t.Fatalf("Put returned revision %d, want > 0", rev)
	}
	wantKV(t, s, "tasks/abc", `{"id":"abc"}`, rev)

	// Empty values and binary data round-trip too.
	rev = mustPut(t, s, "empty", "", store.MustNotExist)
	wantKV(t, s, "empty", "", rev)
	bin := string([]byte{0, 1, 0xff, 0})
	rev = mustPut(t, s, "bin", bin, store.MustNotExist)
	wantKV(t, s, "bin", bin, rev)
}

func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantErr(t, `Get("")`, getErr(s, ""), errdefs.ErrInvalidArgument)
	_, err := s.Put(ctx, "", []byte("x"), store.AnyRevision)
	wantErr(t, `Put("")`, err, errdefs.ErrInvalidArgument)
	wantErr(t, `Delete("")`, s.Delete(ctx, "", store.AnyRevision), errdefs.ErrInvalidArgument)
	_, err = s.Put(ctx, "k", []byte("x"), -2)
	wantErr(t, "Put with expected revision -2", err, errdefs.ErrInvalidArgument)
	wantErr(t, "Delete with expected revision -2", s.Delete(ctx, "k", -2), errdefs.ErrInvalidArgument)
	_, err = s.Watch(ctx, "", -1)
	wantErr(t, "Watch after revision -1", err, errdefs.ErrInvalidArgument)
	wantErr(t, "Get(k) after rejected Put", getErr(s, "k"), errdefs.ErrNotFound)
}

func testRevisionsIncrease(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, last, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i, key := range []string{"b", "a", "c", "a", "b"} {
		rev := mustPut(t, s, key, fmt.Sprint(i), store.AnyRevision)
		if rev <= last {
			t.Fatalf("Put #%d (%s) returned revision %d, want more than the previous %d", i, key, rev, last)
		}
		last = rev
		wantKV(t, s, key, fmt.Sprint(i), rev)
	}
	if err := s.Delete(ctx, "c", store.AnyRevision); err != nil {
		t.Fatalf("Delete(c): %v", err)
	}
	_, listRev, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if listRev <= last {
		t.Fatalf("List revision after a Delete = %d, want more than the last Put's %d", listRev, last)
	}
	if rev := mustPut(t, s, "d", "x", store.AnyRevision); rev <= listRev {
		t.Fatalf("Put after Delete returned revision %d, want more than %d", rev, listRev)
	}
}

func testMustNotExist(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "k", "v1", store.MustNotExist)
	_, err := s.Put(t.Context(), "k", []byte("v2"), store.MustNotExist)
	wantErr(t, "Put(MustNotExist) on existing key", err, errdefs.ErrAlreadyExists)
	wantKV(t, s, "k", "v1", rev)
}

func testExpectedRevision(t *testing.T, s store.Store) {
	ctx := t.Context()
	rev1 := mustPut(t, s, "k", "v1", store.MustNotExist)
	rev2 := mustPut(t, s, "k", "v2", rev1)
	if rev2 <= rev1 {
		t.Fatalf("update returned revision %d, want more than %d", rev2, rev1)
	}
	wantKV(t, s, "k", "v2", rev2)

	_, err := s.Put(ctx, "k", []byte("v3"), rev1) // stale
	wantErr(t, "Put with a stale revision", err, errdefs.ErrConflict)
	_, err = s.Put(ctx, "k", []byte("v3"), rev2+100) // never existed
	wantErr(t, "Put with a future revision", err, errdefs.ErrConflict)
	wantKV(t, s, "k", "v2", rev2)

	_, err = s.Put(ctx, "missing", []byte("v"), rev2)
	wantErr(t, "Put with expected revision on a missing key", err, errdefs.ErrNotFound)
	wantErr(t, "Get(missing)", getErr(s, "missing"), errdefs.ErrNotFound)
}

func testAnyRevision(t *testing.T, s store.Store) {
	rev1 := mustPut(t, s, "k", "v1", store.AnyRevision)
	wantKV(t, s, "k", "v1", rev1)
	rev2 := mustPut(t, s, "k", "v2", store.AnyRevision)
	if rev2 <= rev1 {
		t.Fatalf("overwrite returned revision %d, want more than %d", rev2, rev1)
	}
	wantKV(t, s, "k", "v2", rev2)
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()

	mustPut(t, s, "any", "v", store.MustNotExist)
	if err := s.Delete(ctx, "any", store.AnyRevision); err != nil {
		t.Fatalf("Delete(AnyRevision): %v", err)
	}
	wantErr(t, "Get after Delete", getErr(s, "any"), errdefs.ErrNotFound)

	mustPut(t, s, "zero", "v", store.MustNotExist)
	if err := s.Delete(ctx, "zero", store.MustNotExist); err != nil {
		t.Fatalf("Delete(MustNotExist), treated as AnyRevision: %v", err)
	}
	wantErr(t, "Get after Delete", getErr(s, "zero"), errdefs.ErrNotFound)

	rev1 := mustPut(t, s, "cond", "v1", store.MustNotExist)
	rev2 := mustPut(t, s, "cond", "v2", rev1)
	wantErr(t, "Delete with a stale revision", s.Delete(ctx, "cond", rev1), errdefs.ErrConflict)
	wantKV(t, s, "cond", "v2", rev2)
	if err := s.Delete(ctx, "cond", rev2); err != nil {
		t.Fatalf("Delete with the current revision: %v", err)
	}
	wantErr(t, "Get after Delete", getErr(s, "cond"), errdefs.ErrNotFound)

	wantErr(t, "Delete(missing)", s.Delete(ctx, "missing", store.AnyRevision), errdefs.ErrNotFound)
	wantErr(t, "Delete(missing, rev)", s.Delete(ctx, "missing", rev2), errdefs.ErrNotFound)
	wantErr(t, "second Delete", s.Delete(ctx, "any", store.AnyRevision), errdefs.ErrNotFound)

	// A deleted key can be created again.
	rev := mustPut(t, s, "any", "again", store.MustNotExist)
	wantKV(t, s, "any", "again", rev)
}

func testList(t *testing.T, s store.Store) {
	ctx := t.Context()
	revs := map[string]int64{}
	for _, k := range []string{"tasks/c", "a", "tasks/a", "tasksx", "tasks/b/1", "hosts/h1", "tasks/"} {
		revs[k] = mustPut(t, s, k, "v:"+k, store.MustNotExist)
	}
	check := func(prefix string, want []string) {
		t.Helper()
		kvs, rev, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if kvs == nil || len(kvs) != len(want) {
			t.Fatalf("List(%q) = %v, want keys %q (and a non-nil slice)", prefix, kvKeys(kvs), want)
		}
		for i, kv := range kvs {
			if kv.Key != want[i] || string(kv.Value) != "v:"+want[i] || kv.Revision != revs[want[i]] {
				t.Errorf("List(%q)[%d] = %s, want %s=%q at %d", prefix, i, fmtKV(kv), want[i], "v:"+want[i], revs[want[i]])
			}
		}
		var current int64
		for _, r := range revs {
			current = max(current, r)
		}
		if rev != current {
			t.Errorf("List(%q) revision = %d, want the store's current revision %d", prefix, rev, current)
		}
	}
	check("tasks/", []string{"tasks/", "tasks/a", "tasks/b/1", "tasks/c"})
	check("tasks", []string{"tasks/", "tasks/a", "tasks/b/1", "tasks/c", "tasksx"})
	check("", []string{"a", "hosts/h1", "tasks/", "tasks/a", "tasks/b/1", "tasks/c", "tasksx"})
	check("tasks/b", []string{"tasks/b/1"})
	check("a", []string{"a"})
	check("zzz", []string{})
	check("tasks/d", []string{})
}

func testListWatchContinuity(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, "w/a", "1", store.MustNotExist)
	mustPut(t, s, "w/b", "2", store.MustNotExist)
	_, rev, err := s.List(ctx, "w/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	revC := mustPut(t, s, "w/c", "3", store.MustNotExist)
	if err := s.Delete(ctx, "w/a", store.AnyRevision); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, revDel, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "w/", rev)
	if err != nil {
		t.Fatalf("Watch(%d): %v", rev, err)
	}
	revB := mustPut(t, s, "w/b", "4", store.AnyRevision) // live, after the watch started
	want := []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "w/c", Value: []byte("3"), Revision: revC}},
		{Type: store.EventDelete, KV: store.KV{Key: "w/a", Revision: revDel}},
		{Type: store.EventPut, KV: store.KV{Key: "w/b", Value: []byte("4"), Revision: revB}},
	}
	WantEvents(t, ch, want)
	wantNothingBefore(t, s, ch, "w/")
}

// testListWatchUnderWrites lists and watches while several goroutines
// write, and checks that the watch sends, in revision order, exactly the
// puts made after the List's revision, and that the listing plus the
// events rebuild the final state. Writes made at the same time may share a
// revision: then their events come one after another, all but the last
// with More, and never with a revision Put did not return for them.
func testListWatchUnderWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, writes = 3, 100
	type put struct {
		key, value string
		rev        int64
	}
	puts := make([][]put, writers)
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range writes {
				key := fmt.Sprintf("u/%d/%02d", w, i%17)
				if i%5 == 4 {
					err := s.Delete(ctx, key, store.AnyRevision)
					if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
						done <- fmt.Errorf("writer %d: Delete #%d: %w", w, i, err)
						return
					}
					continue
				}
				value := fmt.Sprint(i)
				rev, err := s.Put(ctx, key, []byte(value), store.AnyRevision)
				if err != nil {
					done <- fmt.Errorf("writer %d: Put #%d: %w", w, i, err)
					return
				}
				puts[w] = append(puts[w], put{key, value, rev})
			}
			done <- nil
		}()
	}
	kvs, rev, err := s.List(ctx, "u/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "u/", rev)
	if err != nil {
		t.Fatalf("Watch(%d): %v", rev, err)
	}
	state := map[string]string{}
	for _, kv := range kvs {
		state[kv.Key] = string(kv.Value)
	}
	for range writers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(Timeout):
			t.Fatalf("writers did not finish within %v", Timeout)
		}
	}
	type at struct {
		rev int64
		key string
	}
	wantPuts := map[at]put{}
	for _, ps := range puts {
		for _, p := range ps {
			if p.rev > rev {
				wantPuts[at{p.rev, p.key}] = p
			}
		}
	}
	sentinel := mustPut(t, s, "u/~sentinel", "end", store.AnyRevision)
	last, more := rev, false
	for {
		ev := Next(t, ch)
		if ev.KV.Revision < last || ev.KV.Revision == last && !more {
			t.Fatalf("event %s at revision %d after one at %d (List's, or the previous event's, with More %v): want a later revision, or the same after More", fmtEvent(ev), ev.KV.Revision, last, more)
		}
		last, more = ev.KV.Revision, ev.More
		if ev.KV.Key == "u/~sentinel" {
			break
		}
		switch ev.Type {
		case store.EventPut:
			p, ok := wantPuts[at{ev.KV.Revision, ev.KV.Key}]
			if !ok || p.value != string(ev.KV.Value) {
				t.Fatalf("watch sent %s, which no writer made (List was at %d)", fmtEvent(ev), rev)
			}
			delete(wantPuts, at{ev.KV.Revision, ev.KV.Key})
			state[ev.KV.Key] = string(ev.KV.Value)
		case store.EventDelete:
			delete(state, ev.KV.Key)
		default:
			t.Fatalf("event with type %v", ev.Type)
		}
	}
	if last != sentinel {
		t.Fatalf("sentinel event at revision %d, Put returned %d", last, sentinel)
	}
	if len(wantPuts) > 0 {
		t.Fatalf("watch from List's revision %d missed %d puts made after it, e.g. %v", rev, len(wantPuts), wantPuts)
	}
	final, _, err := s.List(ctx, "u/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := map[string]string{}
	for _, kv := range final {
		if kv.Key != "u/~sentinel" {
			want[kv.Key] = string(kv.Value)
		}
	}
	if fmt.Sprint(state) != fmt.Sprint(want) {
		t.Fatalf("List at %d plus watched events gives\n%v\nbut the final List is\n%v", rev, state, want)
	}
}

func testWatchReplay(t *testing.T, s store.Store) {
	ctx := t.Context()
	rev1 := mustPut(t, s, "r/a", "1", store.MustNotExist)
	rev2 := mustPut(t, s, "r/b", "2", store.MustNotExist)
	rev3 := mustPut(t, s, "r/a", "3", rev1)
	if err := s.Delete(ctx, "r/b", rev2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, rev4, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "r/", rev1)
	if err != nil {
		t.Fatalf("Watch(%d): %v", rev1, err)
	}
	WantEvents(t, ch, []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "r/b", Value: []byte("2"), Revision: rev2}},
		{Type: store.EventPut, KV: store.KV{Key: "r/a", Value: []byte("3"), Revision: rev3}},
		{Type: store.EventDelete, KV: store.KV{Key: "r/b", Revision: rev4}},
	})
	wantNothingBefore(t, s, ch, "r/")

	// Watching from the current revision replays nothing.
	_, now, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err = s.Watch(ctx, "r/", now)
	if err != nil {
		t.Fatalf("Watch(%d): %v", now, err)
	}
	wantNothingBefore(t, s, ch, "r/")
}

func testWatchPrefix(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "a/", rev)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	all, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var want, wantAll []store.Event
	for _, k := range []string{"a/1", "b/1", "a", "ab", "a/2", "b/a/1"} {
		r := mustPut(t, s, k, k, store.MustNotExist)
		ev := store.Event{Type: store.EventPut, KV: store.KV{Key: k, Value: []byte(k), Revision: r}}
		wantAll = append(wantAll, ev)
		if strings.HasPrefix(k, "a/") {
			want = append(want, ev)
		}
	}
	WantEvents(t, ch, want)
	WantEvents(t, all, wantAll)
	wantNothingBefore(t, s, ch, "a/")
}

func testWatchFuture(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "", rev+2)
	if err != nil {
		t.Fatalf("Watch(current+2): %v", err)
	}
	mustPut(t, s, "f", "1", store.AnyRevision)
	mustPut(t, s, "f", "2", store.AnyRevision)
	r := mustPut(t, s, "f", "3", store.AnyRevision)
	if r != rev+3 {
		t.Skipf("store's revisions do not grow by one per write (%d after %d and 3 writes); cannot check", r, rev)
	}
	WantEvents(t, ch, []store.Event{{Type: store.EventPut, KV: store.KV{Key: "f", Value: []byte("3"), Revision: r}}})
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	mustPut(t, s, "k", "v", store.AnyRevision) // may or may not be seen
	cancel()
	wantClosed(t, ch, "ctx is cancelled")
	// The store still works.
	rev = mustPut(t, s, "k", "v2", store.AnyRevision)
	wantKV(t, s, "k", "v2", rev)
}

func testWatchClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	idle, err := s.Watch(ctx, "nothing/", rev)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	mustPut(t, s, "k", "v", store.AnyRevision)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantClosed(t, ch, "the store is closed")
	wantClosed(t, idle, "the store is closed")
}

func testWatchTooOld(t *testing.T, open func(t *testing.T, history int) store.Store) {
	ctx := t.Context()
	const history = 4
	s := open(t, history)
	_, rev0, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var last int64
	for i := range history + 1 {
		last = mustPut(t, s, fmt.Sprintf("k%d", i), "v", store.AnyRevision)
	}
	_, err = s.Watch(ctx, "", rev0)
	wantErr(t, fmt.Sprintf("Watch from revision %d, %d writes ago with a history of %d", rev0, history+1, history), err, errdefs.ErrConflict)

	// The most recent changes are still there.
	ch, err := s.Watch(ctx, "", last-1)
	if err != nil {
		t.Fatalf("Watch(%d), one write ago: %v", last-1, err)
	}
	WantEvents(t, ch, []store.Event{{Type: store.EventPut, KV: store.KV{Key: fmt.Sprintf("k%d", history), Value: []byte("v"), Revision: last}}})
	if _, err := s.Watch(ctx, "", last); err != nil {
		t.Fatalf("Watch(current revision %d): %v", last, err)
	}
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 8
	race := func(what string, expected int64, loser error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Put(ctx, "race", []byte(fmt.Sprint(i)), expected)
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, loser):
				t.Errorf("%s: Put #%d: got %v, want nil or an error of kind %v", what, i, err, loser)
			}
		}
		if winners != 1 {
			t.Fatalf("%s: %d of %d concurrent Puts succeeded, want exactly 1", what, winners, n)
		}
	}
	race("create with MustNotExist", store.MustNotExist, errdefs.ErrAlreadyExists)
	kv, err := s.Get(ctx, "race")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	race(fmt.Sprintf("update with expected revision %d", kv.Revision), kv.Revision, errdefs.ErrConflict)
}

func testPutCopiesValue(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, rev0, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ch, err := s.Watch(ctx, "", rev0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	buf := []byte("original")
	rev, err := s.Put(ctx, "k", buf, store.MustNotExist)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	copy(buf, "MUTATED!")
	wantKV(t, s, "k", "original", rev)
	ev := Next(t, ch)
	if string(ev.KV.Value) != "original" {
		t.Errorf("watch event value = %q after the caller changed its slice, want %q", ev.KV.Value, "original")
	}
	kvs, _, err := s.List(ctx, "k")
	if err != nil || len(kvs) != 1 || string(kvs[0].Value) != "original" {
		t.Errorf("List(k) = %v, %v; want k=original", kvs, err)
	}
}

func testAfterClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	rev := mustPut(t, s, "k", "v", store.MustNotExist)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := s.Get(ctx, "k")
	wantErr(t, "Get after Close", err, errdefs.ErrUnavailable)
	_, _, err = s.List(ctx, "")
	wantErr(t, "List after Close", err, errdefs.ErrUnavailable)
	_, err = s.Put(ctx, "k", []byte("v2"), rev)
	wantErr(t, "Put after Close", err, errdefs.ErrUnavailable)
	wantErr(t, "Delete after Close", s.Delete(ctx, "k", rev), errdefs.ErrUnavailable)
	_, err = s.Watch(ctx, "", rev)
	wantErr(t, "Watch after Close", err, errdefs.ErrUnavailable)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
}

// Helpers.

func mustPut(t *testing.T, s store.Store, key, value string, expected int64) int64 {
	t.Helper()
	rev, err := s.Put(t.Context(), key, []byte(value), expected)
	if err != nil {
		t.Fatalf("Put(%q, %q, %d): %v", key, value, expected, err)
	}
	return rev
}

func getErr(s store.Store, key string) error {
	_, err := s.Get(context.Background(), key)
	return err
}

func wantKV(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	kv, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if kv.Key != key || !bytes.Equal(kv.Value, []byte(value)) || kv.Revision != rev {
		t.Fatalf("Get(%q) = %s, want %s=%q at %d", key, fmtKV(kv), key, value, rev)
	}
}

func wantErr(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got error %v, want one of kind %q", what, err, kind)
	}
	if err.Error() == "" {
		t.Fatalf("%s: error of kind %q has an empty message", what, kind)
	}
}

// Next returns the next event on ch, failing t if ch closes or nothing
// comes within Timeout.
func Next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed, want an event")
		}
		return ev
	case <-time.After(Timeout):
		t.Fatalf("no watch event within %v", Timeout)
	}
	panic("unreachable")
}

// WantEvents fails t unless the next events on ch are want (type, key,
// value and revision), in order.
func WantEvents(t *testing.T, ch <-chan store.Event, want []store.Event) {
	t.Helper()
	for i, w := range want {
		got := Next(t, ch)
		if got.Type != w.Type || got.KV.Key != w.KV.Key || !bytes.Equal(got.KV.Value, w.KV.Value) || got.KV.Revision != w.KV.Revision {
			t.Fatalf("watch event #%d = %s, want %s", i, fmtEvent(got), fmtEvent(w))
		}
		if w.Type == store.EventDelete && got.KV.Value != nil {
			t.Fatalf("delete event #%d has value %q, want nil", i, got.KV.Value)
		}
	}
}

// wantNothingBefore writes a sentinel under prefix and checks that it is the
// next event on ch: nothing unexpected was queued before it.
func wantNothingBefore(t *testing.T, s store.Store, ch <-chan store.Event, prefix string) {
	t.Helper()
	key := prefix + "~sentinel"
	rev := mustPut(t, s, key, "end", store.AnyRevision)
	ev := Next(t, ch)
	if ev.KV.Key != key || ev.KV.Revision != rev {
		t.Fatalf("got unexpected watch event %s, want the sentinel put of %s at %d", fmtEvent(ev), key, rev)
	}
}

// wantClosed drains ch and fails unless it closes within Timeout.
func wantClosed(t *testing.T, ch <-chan store.Event, why string) {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel still open %v after %s", Timeout, why)
		}
	}
}

func kvKeys(kvs []store.KV) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	return keys
}

func fmtKV(kv store.KV) string { return fmt.Sprintf("%s=%q at %d", kv.Key, kv.Value, kv.Revision) }

func fmtEvent(ev store.Event) string { return ev.Type.String() + " " + fmtKV(ev.KV) }
