package vnode

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/task"
)

// TestPodStatusRestartsAndProbes checks what restarts in place and probes
// (Task.RestartPolicy, the agent's Ready/Started/RestartCount/Last*) show.
func TestPodStatusRestartsAndProbes(t *testing.T) {
	runStart, lastStart, lastEnd := t0.Add(time.Minute), t0.Add(20*time.Second), t0.Add(50*time.Second)
	tests := []struct {
		name     string
		desired  task.Status
		status   task.Status
		policy   string
		mod      func(c *task.Container)
		phase    corev1.PodPhase
		app      string // stateOf
		last     string // stateOf the lastState, "none" when empty
		ready    bool
		started  bool
		restarts int32
		podReady corev1.ConditionStatus
	}{
		{name: "restarted, running, no probes", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.RestartCount, c.StartedAt = task.StatusRunning, 2, runStart
				c.LastExitCode, c.LastStartedAt, c.LastFinishedAt = code(1), lastStart, lastEnd
			},
			phase: corev1.PodRunning, app: "running", last: "terminated:1:Error", ready: true, started: true, restarts: 2, podReady: "True"},
		{name: "waiting for its restart", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.ExitCode, c.RestartCount, c.StartedAt, c.FinishedAt = task.StatusStopped, code(0), 1, runStart, runStart.Add(time.Second)
			},
			phase: corev1.PodRunning, app: "waiting:CrashLoopBackOff", last: "terminated:0:Completed", restarts: 1, podReady: "False"},
		{name: "OnFailure, failed, waiting for its restart", policy: task.RestartOnFailure,
			mod: func(c *task.Container) {
				c.LastStatus, c.ExitCode, c.Reason = task.StatusStopped, code(137), task.ReasonOutOfMemory+": killed"
			},
			phase: corev1.PodRunning, app: "waiting:CrashLoopBackOff", last: "terminated:137:OOMKilled", podReady: "False"},
		{name: "OnFailure, succeeded: not restarted", policy: task.RestartOnFailure,
			mod: func(c *task.Container) {
				c.LastStatus, c.ExitCode, c.RestartCount = task.StatusStopped, code(0), 3
				c.LastExitCode, c.LastStartedAt, c.LastFinishedAt = code(2), lastStart, lastEnd
			},
			phase: corev1.PodSucceeded, app: "terminated:0:Completed", last: "terminated:2:Error", restarts: 3, podReady: "False"},
		{name: "Never, failed", policy: task.RestartNever,
			mod:   func(c *task.Container) { c.LastStatus, c.ExitCode = task.StatusStopped, code(1) },
			phase: corev1.PodFailed, app: "terminated:1:Error", last: "none", podReady: "False"},
		{name: "stopping: an exit is final", policy: task.RestartAlways, desired: task.StatusStopped,
			mod:   func(c *task.Container) { c.LastStatus, c.ExitCode = task.StatusStopped, code(143) },
			phase: corev1.PodFailed, app: "terminated:143:Error", last: "none", podReady: "False"},
		{name: "readiness probe not passing", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.Started, c.Ready = task.StatusRunning, true, false
				c.ReadinessProbe = &task.Probe{TCPSocket: &task.TCPSocketProbe{Port: 80}}
			},
			phase: corev1.PodRunning, app: "running", last: "none", started: true, podReady: "False"},
		{name: "readiness probe passing", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.Started, c.Ready = task.StatusRunning, true, true
				c.ReadinessProbe = &task.Probe{TCPSocket: &task.TCPSocketProbe{Port: 80}}
			},
			phase: corev1.PodRunning, app: "running", last: "none", ready: true, started: true, podReady: "True"},
		{name: "startup probe not passed yet", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.Started, c.Ready = task.StatusRunning, false, false
				c.StartupProbe = &task.Probe{Exec: []string{"true"}}
			},
			phase: corev1.PodRunning, app: "running", last: "none", podReady: "False"},
		{name: "startup probe passed, no readiness probe", policy: task.RestartAlways,
			mod: func(c *task.Container) {
				c.LastStatus, c.Started, c.Ready = task.StatusRunning, true, true
				c.StartupProbe = &task.Probe{Exec: []string{"true"}}
			},
			phase: corev1.PodRunning, app: "running", last: "none", ready: true, started: true, podReady: "True"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := testTask(task.StatusRunning)
			if tt.status != "" {
				tk.LastStatus = tt.status
			}
			tk.DesiredStatus = task.StatusRunning
			if tt.desired != "" {
				tk.DesiredStatus = tt.desired
			}
			tk.RestartPolicy, tk.IP, tk.StartedAt = tt.policy, "10.0.1.23", t0.Add(10*time.Second)
			tk.Containers[0].Essential = true
			tt.mod(&tk.Containers[0])
			st := PodStatusFor(tk, testPod())
			if st.Phase != tt.phase {
				t.Errorf("phase = %s, want %s", st.Phase, tt.phase)
			}
			app := st.ContainerStatuses[0]
			if got := stateOf(app); got != tt.app {
				t.Errorf("state = %s, want %s", got, tt.app)
			}
			if got := stateOf(corev1.ContainerStatus{State: app.LastTerminationState}); got != tt.last {
				t.Errorf("lastState = %s, want %s", got, tt.last)
			}
			if app.Ready != tt.ready || app.Started == nil || *app.Started != tt.started || app.RestartCount != tt.restarts {
				t.Errorf("ready %v started %v restarts %d; want %v %v %d", app.Ready, app.Started, app.RestartCount,
					tt.ready, tt.started, tt.restarts)
			}
			if got := cond(st, corev1.PodReady); got != tt.podReady {
				t.Errorf("Ready = %s, want %s", got, tt.podReady)
			}
			if got := cond(st, corev1.ContainersReady); got != tt.podReady {
				t.Errorf("ContainersReady = %s, want %s", got, tt.podReady)
			}
			if r := app.State.Running; r != nil && !tk.Containers[0].StartedAt.IsZero() && !r.StartedAt.Time.Equal(runStart) {
				t.Errorf("running since %v, want the run's start %v", r.StartedAt, runStart)
			}
			if lt := app.LastTerminationState.Terminated; lt != nil && tk.Containers[0].LastExitCode != nil &&
				(!lt.StartedAt.Time.Equal(lastStart) || !lt.FinishedAt.Time.Equal(lastEnd)) {
				t.Errorf("lastState times %v..%v, want %v..%v", lt.StartedAt, lt.FinishedAt, lastStart, lastEnd)
			}
		})
	}
}
