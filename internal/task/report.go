package task

import (
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// Report is what a host observed of one task, as its agent sends it. Zero
// fields say nothing; LastStatus may only move the task forward.
type Report struct {
	TaskID     string            `json:"taskId"`
	LastStatus Status            `json:"lastStatus,omitempty"`
	Runtime    string            `json:"runtime,omitempty"`
	IP         string            `json:"ip,omitempty"`
	Containers []ContainerReport `json:"containers,omitempty"`
	// StopCode and StoppedReason are set when the agent decides the task
	// stops (an essential container exited, the start failed).
	StopCode      string    `json:"stopCode,omitempty"`
	StoppedReason string    `json:"stoppedReason,omitempty"`
	PullStartedAt time.Time `json:"pullStartedAt,omitzero"`
	PullStoppedAt time.Time `json:"pullStoppedAt,omitzero"`
	// PullProgress replaces the task's pull progress text when set.
	PullProgress string `json:"pullProgress,omitempty"`
	// At is when the agent observed the change.
	At time.Time `json:"at"`
}

// ContainerReport is what a host observed of one container.
type ContainerReport struct {
	Name         string `json:"name"`
	LastStatus   Status `json:"lastStatus,omitempty"`
	ExitCode     *int   `json:"exitCode,omitempty"`
	Reason       string `json:"reason,omitempty"`
	RuntimeID    string `json:"runtimeId,omitempty"`
	ImageDigest  string `json:"imageDigest,omitempty"`
	HealthStatus string `json:"healthStatus,omitempty"`
	// RestartCount greater than the task's says the container was
	// restarted in place: its run starts over (status, exit code, reason
	// and FinishedAt are cleared before this report applies) and the Last*
	// fields describe the run that ended.
	RestartCount int `json:"restartCount,omitempty"`
	// Ready and Started are the probes' verdicts (nil: unchanged).
	Ready   *bool `json:"ready,omitempty"`
	Started *bool `json:"started,omitempty"`
	// StartedAt and FinishedAt are the current run's start and end.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// The previous run's end, with a RestartCount.
	LastExitCode   *int      `json:"lastExitCode,omitempty"`
	LastReason     string    `json:"lastReason,omitempty"`
	LastStartedAt  time.Time `json:"lastStartedAt,omitzero"`
	LastFinishedAt time.Time `json:"lastFinishedAt,omitzero"`
}

// Validate checks what a report can be checked for without its task: a
// LastStatus that is not a lifecycle status is an error of kind
// errdefs.ErrInvalidArgument.
func (r *Report) Validate() error {
	if r.LastStatus != "" && !r.LastStatus.Valid() {
		return errdefs.InvalidArgument("unknown status %q: accepted statuses are %v", r.LastStatus, Lifecycle)
	}
	return nil
}

// ApplyReport merges a host's report into the task, the one rule for
// every holder of task records. The host owns what it observes: the runtime
// used, the IP, the pull's times and progress, and each container's status,
// exit code, reasons, runtime ID, image digest, health, probes' verdicts,
// run times and restarts. The control plane owns the rest (desired status,
// placement, size, version): a report reaches DesiredStatus only through
// RequestStop, when the host decides the task stops. LastStatus moves
// forward only, by Advance, stamped r.At (now when the report has no time).
// Observations once set stay (first exit code, first reason, first pull
// times), except that a restart in place starts a container's run over.
//
// A stopped task takes nothing. It reports whether the task changed; an
// invalid status or a container the task does not have is an error of kind
// errdefs.ErrInvalidArgument, and the task is then to be dropped, not
// stored. ApplyReport does not bump Version.
func (t *Task) ApplyReport(r Report, now time.Time) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	if t.Stopped() {
		return false, nil
	}
	at := r.At
	if at.IsZero() {
		at = now
	}
	changed := false
	if r.Runtime != "" && t.Runtime != r.Runtime {
		t.Runtime, changed = r.Runtime, true
	}
	if r.IP != "" && t.IP != r.IP {
		t.IP, changed = r.IP, true
	}
	if !r.PullStartedAt.IsZero() && t.PullStartedAt.IsZero() {
		t.PullStartedAt, changed = r.PullStartedAt, true
	}
	if !r.PullStoppedAt.IsZero() && t.PullStoppedAt.IsZero() {
		t.PullStoppedAt, changed = r.PullStoppedAt, true
	}
	if r.PullProgress != "" && t.PullProgress != r.PullProgress && t.LastStatus == StatusActivating {
		t.PullProgress, changed = r.PullProgress, true
	}
	if r.StopCode != "" || r.StoppedReason != "" {
		if t.DesiredStatus != StatusStopped {
			t.RequestStop(r.StopCode, r.StoppedReason, at)
			changed = true
		} else if t.StoppedReason == "" && r.StoppedReason != "" {
			t.StoppedReason, changed = r.StoppedReason, true
		}
	}
	for _, cr := range r.Containers {
		c := t.Container(cr.Name)
		if c == nil {
			return false, errdefs.InvalidArgument("task %s has no container %q", t.ID, cr.Name)
		}
		if t.applyContainerReport(c, cr) {
			changed = true
		}
	}
	if r.LastStatus != "" && t.LastStatus.Before(r.LastStatus) {
		if err := t.Advance(r.LastStatus, at); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

// applyContainerReport merges one container's report into c, a container
// of t, and reports whether anything changed.
func (t *Task) applyContainerReport(c *Container, cr ContainerReport) bool {
	changed := false
	if cr.RestartCount > c.RestartCount {
		// Restarted in place: a new run starts over.
		c.RestartCount, changed = cr.RestartCount, true
		c.LastStatus, c.ExitCode, c.Reason, c.FinishedAt = "", nil, "", time.Time{}
		c.LastExitCode, c.LastReason = copyInt(cr.LastExitCode), cr.LastReason
		c.LastStartedAt, c.LastFinishedAt = cr.LastStartedAt, cr.LastFinishedAt
	}
	if cr.Ready != nil && c.Ready != *cr.Ready {
		c.Ready, changed = *cr.Ready, true
	}
	if cr.Started != nil && c.Started != *cr.Started {
		c.Started, changed = *cr.Started, true
	}
	if !cr.StartedAt.IsZero() && !c.StartedAt.Equal(cr.StartedAt) {
		c.StartedAt, changed = cr.StartedAt, true
	}
	if !cr.FinishedAt.IsZero() && !c.FinishedAt.Equal(cr.FinishedAt) {
		c.FinishedAt, changed = cr.FinishedAt, true
	}
	if cr.LastStatus != "" && c.LastStatus.Before(cr.LastStatus) {
		c.LastStatus, changed = cr.LastStatus, true
	}
	if cr.ExitCode != nil && c.ExitCode == nil {
		c.ExitCode, changed = copyInt(cr.ExitCode), true
	}
	if cr.Reason != "" && c.Reason == "" {
		c.Reason, changed = cr.Reason, true
		if t.RestartPolicy == "" && (t.StoppedReason == "" || t.StopCode == StopCodeEssentialContainerExited) {
			// An OOM kill names the task's reason too.
			t.StoppedReason = cr.Reason
		}
	}
	if cr.RuntimeID != "" && c.RuntimeID != cr.RuntimeID {
		c.RuntimeID, changed = cr.RuntimeID, true
	}
	if cr.ImageDigest != "" && c.ImageDigest != cr.ImageDigest {
		c.ImageDigest, changed = cr.ImageDigest, true
	}
	if cr.HealthStatus != "" && c.HealthStatus != cr.HealthStatus {
		c.HealthStatus, changed = cr.HealthStatus, true
	}
	return changed
}

func copyInt(p *int) *int {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
