package bolt_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/store/storetest"
)

func open(t testing.TB, cfg bolt.Config) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	}, storetest.Options{
		OpenWithHistory: func(t *testing.T, history int) store.Store {
			return open(t, bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db"), WatchHistory: history})
		},
	})
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		return open(t, bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	})
}

func TestOpenRejectsBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vessel.db")
	for _, cfg := range []bolt.Config{
		{},
		{Path: path, WatchHistory: -1},
		{Path: path, WatchBuffer: -1},
		{Path: path, Timeout: -time.Second},
	} {
		s, err := bolt.Open(cfg)
		if !errdefs.IsInvalidArgument(err) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%+v) = %v, want an error of kind invalid argument", cfg, err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("rejected Open created %s (stat: %v)", path, err)
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vessel.db")
	open(t, bolt.Config{Path: path})
	s, err := bolt.Open(bolt.Config{Path: path, Timeout: 50 * time.Millisecond})
	if !errdefs.IsUnavailable(err) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("second Open of a locked file = %v, want an error of kind unavailable", err)
	}
}

// TestSlowWatcherIsClosed checks that a watcher that does not read has its
// channel closed once its buffer is full, that writers are not held up, and
// that what it did receive is gapless.
func TestSlowWatcherIsClosed(t *testing.T) {
	ctx := t.Context()
	const buffer, writes = 4, 50
	// Not closed on failure: Close would wait for blocked writers.
	s, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db"), WatchBuffer: buffer})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			if _, err := s.Put(ctx, "k", []byte(strconv.Itoa(i)), store.AnyRevision); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
	case <-time.After(storetest.Timeout):
		t.Fatalf("%d Puts did not finish within %v with a watcher not reading: writers are blocked", writes, storetest.Timeout)
	}
	var got []int64
	timeout := time.After(storetest.Timeout)
	for closed := false; !closed; {
		select {
		case ev, ok := <-ch:
			if !ok {
				closed = true
				break
			}
			got = append(got, ev.KV.Revision)
		case <-timeout:
			t.Fatalf("slow watcher's channel still open after %v; got revisions %v", storetest.Timeout, got)
		}
	}
	if len(got) == 0 || len(got) >= writes {
		t.Fatalf("slow watcher got %d events before its channel closed, want between 1 and %d", len(got), writes-1)
	}
	for i, rev := range got {
		if rev != int64(i+1) {
			t.Fatalf("slow watcher got revisions %v, want 1, 2, 3, ... with no gap", got)
		}
	}
	// Other watchers are not affected.
	ch, err = s.Watch(ctx, "", writes)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	rev, err := s.Put(ctx, "k", []byte("last"), store.AnyRevision)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	select {
	case ev := <-ch:
		if ev.KV.Revision != rev {
			t.Fatalf("new watcher got revision %d, want %d", ev.KV.Revision, rev)
		}
	case <-time.After(storetest.Timeout):
		t.Fatalf("new watcher got nothing within %v", storetest.Timeout)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestWatchHistoryNotPersisted checks that after a reopen Watch accepts the
// current revision but not an earlier one, whose changes are gone.
func TestWatchHistoryNotPersisted(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "vessel.db")
	s, err := bolt.Open(bolt.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Put(ctx, fmt.Sprint(i), nil, store.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, bolt.Config{Path: path})
	if _, err := s.Watch(ctx, "", 2); !errdefs.IsConflict(err) {
		t.Fatalf("Watch(2) after reopen at revision 3 = %v, want an error of kind conflict", err)
	} else if !strings.Contains(err.Error(), "List") {
		t.Errorf("conflict message %q does not say to List again", err)
	}
	if _, err := s.Watch(ctx, "", 3); err != nil {
		t.Fatalf("Watch(3) after reopen at revision 3: %v", err)
	}
}

// TestKillLosesNothing runs a child process that writes and reports each
// revision Put returned, kills it with SIGKILL mid-stream, and checks that
// every reported write is in the file.
func TestKillLosesNothing(t *testing.T) {
	if path := os.Getenv("VESSEL_BOLT_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "vessel.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillLosesNothing$")
	cmd.Env = append(os.Environ(), "VESSEL_BOLT_KILL_CHILD="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // in case the test fails before killing it
	acked := map[string]int64{}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var key string
		var rev int64
		if _, err := fmt.Sscan(lines.Text(), &key, &rev); err != nil {
			continue // test framework output
		}
		acked[key] = rev
		if len(acked) == 30 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd.Wait()
	if len(acked) < 30 {
		t.Fatalf("child acknowledged %d writes before ending, want at least 30", len(acked))
	}
	s := open(t, bolt.Config{Path: path})
	for key, rev := range acked {
		kv, err := s.Get(t.Context(), key)
		if err != nil || kv.Revision != rev || string(kv.Value) != key {
			t.Errorf("after kill -9: Get(%q) = %s at %d, %v; want value %q at %d", key, kv.Value, kv.Revision, err, key, rev)
		}
	}
}

func killChild(path string) {
	s, err := bolt.Open(bolt.Config{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		key := fmt.Sprintf("k%06d", i)
		rev, err := s.Put(context.Background(), key, []byte(key), store.MustNotExist)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("%s %d\n", key, rev)
	}
}

// BenchmarkPut reports the cost of Put against a bare bbolt transaction
// writing the same data to a file in the same directory, measured in the
// same run. ns/op covers both loops; read ns/put and x-bare.
func BenchmarkPut(b *testing.B) {
	ctx := b.Context()
	dir := b.TempDir()
	s := open(b, bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	bare, err := bbolt.Open(filepath.Join(dir, "bare.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	value := make([]byte, 512)

	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		key := []byte("tasks/" + strconv.Itoa(i%1000))
		err := bare.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("kv"))
			if err != nil {
				return err
			}
			return bk.Put(key, value)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	bareTime := time.Since(start)
	start = time.Now()
	for i := range b.N {
		if _, err := s.Put(ctx, "tasks/"+strconv.Itoa(i%1000), value, store.AnyRevision); err != nil {
			b.Fatal(err)
		}
	}
	storeTime := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(storeTime.Nanoseconds())/float64(b.N), "ns/put")
	b.ReportMetric(float64(bareTime.Nanoseconds())/float64(b.N), "ns/bare-put")
	b.ReportMetric(float64(storeTime)/float64(bareTime), "x-bare")
}
