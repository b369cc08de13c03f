package testutil

import (
	"testing"
	"time"
)

// Interval bounds the pause between two checks of Eventually's condition:
// the pause starts at a few milliseconds and doubles up to Interval.
const Interval = 100 * time.Millisecond

// Eventually checks cond until it returns nil, and fails t with cond's
// last error if timeout passes first. cond runs on the test's goroutine,
// so it may itself call t.Fatal for an error that waiting cannot cure.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Wait(timeout, cond); err != nil {
		t.Fatalf("not within %s: %v", timeout, err)
	}
}

// Wait checks cond until it returns nil, and returns cond's last error if
// timeout passes first: for the callers that cannot fail a test at once
// (benchmarks' helpers, cleanups that only log).
func Wait(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, Interval)
	}
}
