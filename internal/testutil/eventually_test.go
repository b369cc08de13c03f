package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestWaitReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := Wait(time.Minute, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Wait = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestWaitReturnsTheLastError(t *testing.T) {
	calls := 0
	err := Wait(0, func() error { calls++; return fmt.Errorf("still %d", calls) })
	if err == nil || err.Error() != "still 1" {
		t.Fatalf("Wait = %v, want the condition's only error", err)
	}
	err = Wait(50*time.Millisecond, func() error { calls++; return errors.New("never") })
	if err == nil || err.Error() != "never" {
		t.Fatalf("Wait = %v, want the condition's last error", err)
	}
}

// recorder is a testing.TB that records a Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	Eventually(r, 20*time.Millisecond, func() error { return errors.New("task is PENDING, want RUNNING") })
	if !strings.Contains(r.failed, "task is PENDING, want RUNNING") {
		t.Fatalf("failure %q does not carry the condition's error", r.failed)
	}
	r = &recorder{TB: t}
	Eventually(r, time.Minute, func() error { return nil })
	if r.failed != "" {
		t.Fatalf("a condition that holds failed the test: %s", r.failed)
	}
}
