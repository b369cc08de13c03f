package runtimetest

import (
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// testStats: a runtime that runs real processes reports what a sandbox
// uses (runtime.Statser): the CPU time of a busy container grows from one
// reading to the next, memory in use and its limit are there, an idle
// container beside it has used less (unless the runtime counts only the
// whole sandbox), and a missing sandbox is ErrNotFound.
func testStats(s *suite) {
	s.needReal()
	st, ok := s.rt.(runtime.Statser)
	if !ok {
		s.t.Fatalf("runtime %s runs real processes but does not report usage (runtime.Statser)", s.rt.Name())
	}
	id := s.sandbox(sh("app", "yes > /dev/null"), sh("idle", "sleep 1000"))
	s.start(id, "idle")
	s.start(id, "app")
	ctx, cancel := s.ctx()
	defer cancel()
	first, _, err := st.Stats(ctx, id, "app")
	if err != nil {
		s.t.Fatalf("Stats(%s, app): %v", id, err)
	}
	var last runtime.Usage
	deadline := time.Now().Add(2 * s.Timeout)
	for {
		if last, _, err = st.Stats(ctx, id, "app"); err != nil {
			s.t.Fatalf("Stats(%s, app): %v", id, err)
		}
		if last.CPUNanos > first.CPUNanos {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("a busy container's CPU time did not grow within %s: %d ns, then %d ns", s.Timeout, first.CPUNanos, last.CPUNanos)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The busy container, read first, ends up ahead of the idle one, read
	// after it, only when each is counted apart.
	for {
		busy, _, err := st.Stats(ctx, id, "app")
		if err != nil {
			s.t.Fatalf("Stats(%s, app): %v", id, err)
		}
		idle, whole, err := st.Stats(ctx, id, "idle")
		if err != nil {
			s.t.Fatalf("Stats(%s, idle): %v", id, err)
		}
		if whole || busy.CPUNanos > idle.CPUNanos {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("an idle container has used %d ns of CPU, a busy one beside it %d ns: want the containers counted apart", idle.CPUNanos, busy.CPUNanos)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last.MemoryBytes <= 0 || last.MemoryLimitBytes <= 0 {
		s.t.Errorf("memory in use %d, limit %d: want both counted", last.MemoryBytes, last.MemoryLimitBytes)
	}
	all, _, err := st.Stats(ctx, id, "")
	if err != nil || all.CPUNanos < first.CPUNanos {
		s.t.Errorf("Stats(%s, \"\") = %d ns, %v; want the whole sandbox, at least its container's %d ns", id, all.CPUNanos, err, first.CPUNanos)
	}
	if _, _, err := st.Stats(ctx, "no-such-sandbox", ""); !errdefs.IsNotFound(err) {
		s.t.Errorf("Stats of a missing sandbox: %v, want ErrNotFound", err)
	}
}
