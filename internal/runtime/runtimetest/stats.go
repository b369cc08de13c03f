package runtimetest

import (
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// testStats: a runtime that runs real processes reports what a sandbox
// uses (runtime.Statser): the CPU time of a busy container grows from one
// reading to the next, memory in use and its limit are there, and a
// missing sandbox is ErrNotFound.
func testStats(s *suite) {
	s.needReal()
	st, ok := s.rt.(runtime.Statser)
	if !ok {
		s.t.Fatalf("runtime %s runs real processes but does not report usage (runtime.Statser)", s.rt.Name())
	}
	id := s.sandbox(sh("app", "yes > /dev/null"))
	s.start(id, "app")
	ctx, cancel := s.ctx()
	defer cancel()
	first, _, err := st.Stats(ctx, id, "app")
	if err != nil {
		s.t.Fatalf("Stats(%s, app): %v", id, err)
	}
	var last runtime.Usage
	deadline := time.Now().Add(s.Timeout)
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
	if last.MemoryBytes <= 0 || last.MemoryLimitBytes <= 0 {
		s.t.Errorf("memory in use %d, limit %d: want both counted", last.MemoryBytes, last.MemoryLimitBytes)
	}
	whole, _, err := st.Stats(ctx, id, "")
	if err != nil || whole.CPUNanos < first.CPUNanos {
		s.t.Errorf("Stats(%s, \"\") = %d ns, %v; want the whole sandbox, at least its container's %d ns", id, whole.CPUNanos, err, first.CPUNanos)
	}
	if _, _, err := st.Stats(ctx, "no-such-sandbox", ""); !errdefs.IsNotFound(err) {
		s.t.Errorf("Stats of a missing sandbox: %v, want ErrNotFound", err)
	}
}
