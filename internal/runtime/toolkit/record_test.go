package toolkit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// backEndRecord is a back end's record: the common one and a field of
// its own.
type backEndRecord struct {
	toolkit.Record
	Disk string `json:"disk"`
}

func TestStore(t *testing.T) {
	s := &toolkit.Store{Dir: t.TempDir(), Reserved: []string{"cache"}}
	rec := &backEndRecord{Record: toolkit.Record{Spec: runtime.Spec{ID: "t1",
		Containers: []runtime.ContainerSpec{{Name: "app"}}}}, Disk: "rw.img"}
	if err := s.Make(rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Make(rec); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Make of an existing sandbox = %v, want already exists", err)
	}
	if err := s.Make(&backEndRecord{Record: toolkit.Record{Spec: runtime.Spec{ID: "cache"}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Make of a reserved ID = %v, want invalid argument", err)
	}
	got := &backEndRecord{}
	if err := s.LoadContainer("t1", "app", got); err != nil || got.Disk != "rw.img" || got.Started == nil {
		t.Errorf("LoadContainer = %+v, %v; want the record with its own field and a Started map", got, err)
	}
	if err := s.LoadContainer("t1", "nope", got); !errdefs.IsNotFound(err) {
		t.Errorf("LoadContainer of a missing container = %v, want not found", err)
	}
	for _, id := range []string{"missing", "", "..", "../t1", "t1/..", "cache"} {
		if err := s.Load(id, &backEndRecord{}); !errdefs.IsNotFound(err) {
			t.Errorf("Load(%q) = %v, want not found", id, err)
		}
	}
	for _, d := range []string{"cache", ".probe-1", "t2"} {
		if err := os.Mkdir(filepath.Join(s.Dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := s.IDs(); err != nil || !slices.Equal(ids, []string{"t1", "t2"}) {
		t.Errorf("IDs = %v, %v; want [t1 t2] (reserved and hidden entries left out)", ids, err)
	}
}

// TestLocks: a key's second holder gets the lock only once the first has
// freed it; another key does not wait.
func TestLocks(t *testing.T) {
	var l toolkit.Locks
	unlock := l.Lock("a")
	l.Lock("b")()
	var released atomic.Bool
	got := make(chan bool)
	go func() {
		defer l.Lock("a")()
		got <- released.Load()
	}()
	released.Store(true)
	unlock()
	if !<-got {
		t.Fatal("a second Lock of the same key returned before the first was freed")
	}
}

func TestWaitExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone := errdefs.Unavailable("the monitor is gone")
	polls := 0
	// The exit comes between lost's verdict and the last look.
	st, err := toolkit.WaitExit(ctx, func() (runtime.ExitStatus, bool, error) {
		polls++
		return runtime.ExitStatus{Code: 3}, polls > 20, nil
	}, func() error { return gone })
	if err != nil || st.Code != 3 {
		t.Errorf("WaitExit = %+v, %v; want the exit that came before giving up", st, err)
	}
	st, err = toolkit.WaitExit(ctx, func() (runtime.ExitStatus, bool, error) {
		return runtime.ExitStatus{}, false, nil
	}, func() error { return gone })
	if !errors.Is(err, gone) {
		t.Errorf("WaitExit with the exit never coming = %+v, %v; want lost's error", st, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := toolkit.WaitExit(short, func() (runtime.ExitStatus, bool, error) {
		return runtime.ExitStatus{}, false, nil
	}, func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitExit past ctx's deadline = %v, want the deadline", err)
	}
}
