package task

import (
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

func TestAdvanceTransitions(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	tests := []struct {
		name    string
		from    Status
		to      Status
		wantErr error
	}{
		{"provisioning to pending", StatusProvisioning, StatusPending, nil},
		{"pending to activating", StatusPending, StatusActivating, nil},
		{"activating to running", StatusActivating, StatusRunning, nil},
		{"running to deactivating", StatusRunning, StatusDeactivating, nil},
		{"deactivating to stopping", StatusDeactivating, StatusStopping, nil},
		{"stopping to deprovisioning", StatusStopping, StatusDeprovisioning, nil},
		{"deprovisioning to stopped", StatusDeprovisioning, StatusStopped, nil},
		{"skip: pending to deprovisioning", StatusPending, StatusDeprovisioning, nil},
		{"skip: provisioning to stopped", StatusProvisioning, StatusStopped, nil},
		{"backward: running to pending", StatusRunning, StatusPending, errdefs.ErrConflict},
		{"same: running to running", StatusRunning, StatusRunning, errdefs.ErrConflict},
		{"after stopped", StatusStopped, StatusRunning, errdefs.ErrConflict},
		{"stopped to stopped", StatusStopped, StatusStopped, errdefs.ErrConflict},
		{"unknown status", StatusRunning, Status("EXPLODED"), errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := &Task{ID: "t1", LastStatus: tc.from, DesiredStatus: StatusRunning}
			err := tk.Advance(tc.to, t0)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Advance(%s→%s) = %v, want nil", tc.from, tc.to, err)
				}
				if tk.LastStatus != tc.to {
					t.Fatalf("LastStatus = %s, want %s", tk.LastStatus, tc.to)
				}
				return
			}
			if !errorsIs(err, tc.wantErr) {
				t.Fatalf("Advance(%s→%s) = %v, want kind %v", tc.from, tc.to, err, tc.wantErr)
			}
			if tk.LastStatus != tc.from {
				t.Fatalf("a refused transition changed LastStatus to %s", tk.LastStatus)
			}
		})
	}
}

func errorsIs(err, kind error) bool {
	switch kind {
	case errdefs.ErrConflict:
		return errdefs.IsConflict(err)
	case errdefs.ErrInvalidArgument:
		return errdefs.IsInvalidArgument(err)
	}
	return false
}

func TestAdvanceStampsTimestamps(t *testing.T) {
	tk := &Task{ID: "t1", LastStatus: StatusProvisioning, DesiredStatus: StatusRunning,
		Containers: []Container{{Name: "app"}}}
	at := func(s int) time.Time { return time.Unix(int64(1700000000+s), 0) }
	steps := []Status{StatusPending, StatusActivating, StatusRunning, StatusDeactivating,
		StatusStopping, StatusDeprovisioning, StatusStopped}
	for i, s := range steps {
		if err := tk.Advance(s, at(i)); err != nil {
			t.Fatal(err)
		}
	}
	checks := map[string]struct{ got, want time.Time }{
		"connectivityAt":     {tk.ConnectivityAt, at(0)},
		"startedAt":          {tk.StartedAt, at(2)},
		"stoppingAt":         {tk.StoppingAt, at(4)},
		"executionStoppedAt": {tk.ExecutionStoppedAt, at(5)},
		"stoppedAt":          {tk.StoppedAt, at(6)},
	}
	for name, c := range checks {
		if !c.got.Equal(c.want) {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	if tk.DesiredStatus != StatusStopped || tk.Containers[0].LastStatus != StatusStopped {
		t.Errorf("STOPPED must set desiredStatus and containers' status: %+v", tk)
	}
}

func TestAdvanceSkippingStampsPassedMilestones(t *testing.T) {
	tk := &Task{ID: "t1", LastStatus: StatusPending, DesiredStatus: StatusStopped}
	now := time.Unix(1700000100, 0)
	if err := tk.Advance(StatusStopped, now); err != nil {
		t.Fatal(err)
	}
	if !tk.StartedAt.IsZero() {
		t.Errorf("a task that never ran must have no startedAt, got %v", tk.StartedAt)
	}
	if !tk.StoppingAt.Equal(now) || !tk.ExecutionStoppedAt.Equal(now) || !tk.StoppedAt.Equal(now) {
		t.Errorf("skipped milestones not stamped: %+v", tk)
	}
}

func TestRequestStopKeepsFirstReason(t *testing.T) {
	tk := &Task{ID: "t1", LastStatus: StatusRunning, DesiredStatus: StatusRunning}
	if !tk.RequestStop(StopCodeEssentialContainerExited, "Essential container in task exited", time.Now()) {
		t.Fatal("first stop request must change the task")
	}
	if tk.RequestStop(StopCodeUserInitiated, "later", time.Now()) {
		t.Fatal("second stop request must not change the task")
	}
	if tk.StopCode != StopCodeEssentialContainerExited || tk.StoppedReason != "Essential container in task exited" {
		t.Fatalf("stop code/reason overwritten: %q %q", tk.StopCode, tk.StoppedReason)
	}
}

func TestStopReasonAndTimeoutLimits(t *testing.T) {
	if err := ValidateStopReason(string(make([]rune, 255))); err != nil {
		t.Errorf("255 characters must be accepted: %v", err)
	}
	long := make([]rune, 256)
	for i := range long {
		long[i] = 'é'
	}
	if err := ValidateStopReason(string(long)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("256 characters must be refused, got %v", err)
	}
	for _, c := range []struct {
		in   int32
		want time.Duration
		ok   bool
	}{{0, 30 * time.Second, true}, {1, time.Second, true}, {120, 120 * time.Second, true}, {121, 0, false}, {-1, 0, false}} {
		got, err := ClampStopTimeout(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ClampStopTimeout(%d) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	code := 3
	tk := &Task{ID: "t1", Tags: []Tag{{"a", "b"}}, Containers: []Container{{Name: "c",
		Command: []string{"x"}, Environment: map[string]string{"K": "V"}, ExitCode: &code}}}
	c := tk.Clone()
	c.Tags[0].Value = "z"
	c.Containers[0].Command[0] = "y"
	c.Containers[0].Environment["K"] = "W"
	*c.Containers[0].ExitCode = 9
	if tk.Tags[0].Value != "b" || tk.Containers[0].Command[0] != "x" ||
		tk.Containers[0].Environment["K"] != "V" || *tk.Containers[0].ExitCode != 3 {
		t.Fatalf("Clone shares memory with the original: %+v", tk)
	}
}
