package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/agent/taskmeta"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// Back-off of restarts in place, as the kubelet's.
const (
	DefaultRestartBackoff    = 10 * time.Second
	DefaultMaxRestartBackoff = 5 * time.Minute
	// RestartBackoffReset is how long a run must last for the next
	// restart's back-off to start over from the base.
	RestartBackoffReset = 10 * time.Minute
)

// runState is what the worker keeps of its containers' runs for restarts
// in place and probes; owned by the worker's goroutine.
type runState struct {
	restarts map[string]int                // restarts so far
	crashes  map[string]int                // restarts in a row, for the back-off
	started  map[string]time.Time          // when the current run started
	gen      map[string]int                // the current run, to drop stale verdicts
	probes   map[string]context.CancelFunc // stops the current run's probes
	pending  map[string]bool               // a restart is scheduled
	ready    map[string]bool               // last reported readiness

	probeEvents chan probeEvent
	restartDue  chan string
}

func newRunState(n int) runState {
	return runState{restarts: map[string]int{}, crashes: map[string]int{}, started: map[string]time.Time{},
		gen: map[string]int{}, probes: map[string]context.CancelFunc{}, pending: map[string]bool{},
		ready: map[string]bool{}, probeEvents: make(chan probeEvent, 4*n+4), restartDue: make(chan string, n)}
}

func hasProbes(c *task.Container) bool {
	return c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil
}

func boolp(b bool) *bool { return &b }

// beginRun records that a run of c started at `at` and starts its probes.
// adoptedStarted says the startup probe already passed (an adopted run).
// It fills the start report's Started, Ready and StartedAt.
func (w *worker) beginRun(ctx context.Context, c *task.Container, at time.Time, adoptedStarted bool, u *agentproto.ContainerUpdate) {
	rs := &w.runs
	rs.started[c.Name] = at
	rs.gen[c.Name]++
	u.StartedAt = at
	if !hasProbes(c) || w.simulated() {
		u.Started, u.Ready = boolp(true), boolp(true)
		rs.ready[c.Name] = true
		return
	}
	u.Started, u.Ready = boolp(adoptedStarted && c.StartupProbe != nil), boolp(false)
	rs.ready[c.Name] = false
	pctx, cancel := context.WithCancel(ctx)
	rs.probes[c.Name] = cancel
	ex, _ := w.rt.(runtime.Execer)
	ip := w.ip
	if ip == "" {
		ip = w.task.IP
	}
	nsPath := ""
	if nw := w.agent.cfg.Network; nw != nil {
		if att, ok := nw.Get(w.task.ID); ok {
			nsPath = att.NetNSPath
		}
	}
	p := &prober{c: c, taskID: w.task.ID, host: func() string { return ip }, netns: nsPath, execer: ex,
		ownStack: w.rt.Name() != runcName, runtime: w.rt.Name(),
		gen: rs.gen[c.Name], started: adoptedStarted, events: rs.probeEvents}
	go p.run(pctx)
}

// runcName is the runtime whose sandboxes use the host kernel's network
// stack in the task's namespace; the others (gVisor, micro-VMs) take the
// task's address into their own.
const runcName = "runc"

// endRun stops the probes of c's current run.
func (w *worker) endRun(name string) {
	if cancel := w.runs.probes[name]; cancel != nil {
		cancel()
		delete(w.runs.probes, name)
	}
	w.runs.ready[name] = false
}

// onProbe applies a probe verdict: Started and Ready are reported; a
// failed liveness or startup probe kills the container, whose exit then
// goes the way of any exit (restart per policy).
func (w *worker) onProbe(ctx context.Context, ev probeEvent) {
	if ev.gen != w.runs.gen[ev.name] {
		return // a verdict about an earlier run
	}
	if _, exited := w.exited[ev.name]; exited {
		return
	}
	c := w.task.Container(ev.name)
	if c == nil {
		return
	}
	u := agentproto.ContainerUpdate{Name: ev.name}
	switch ev.kind {
	case probeStarted:
		u.Started = boolp(true)
	case probeReady, probeNotReady:
		ready := ev.kind == probeReady
		if w.runs.ready[ev.name] == ready {
			return
		}
		w.runs.ready[ev.name] = ready
		u.Ready = boolp(ready)
		if !ready {
			w.log.Info("readiness probe failed", "container", ev.name, "err", ev.msg)
		}
	case probeLivenessFail, probeStartupFailed:
		probe := "liveness"
		if ev.kind == probeStartupFailed {
			probe = "startup"
		}
		w.log.Info(probe+" probe failed; killing the container", "container", ev.name, "err", ev.msg)
		w.runs.ready[ev.name] = false
		u.Ready = boolp(false)
		w.kill(ctx, c)
	default:
		return
	}
	w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{u}})
}

// kill ends one container as a stop does, without blocking: SIGTERM, then
// SIGKILL after its stop timeout. Its exit arrives through Wait.
func (w *worker) kill(ctx context.Context, c *task.Container) {
	id, name, timeout := w.task.ID, c.Name, c.StopTimeout
	if timeout <= 0 {
		timeout = task.DefaultStopTimeout
	}
	go func() {
		if err := w.rt.Signal(ctx, id, name, syscall.SIGTERM); err != nil {
			w.log.Warn("SIGTERM failed", "container", name, "err", err)
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := w.rt.Wait(tctx, id, name)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			if err := w.rt.Signal(ctx, id, name, syscall.SIGKILL); err != nil {
				w.log.Warn("SIGKILL failed", "container", name, "err", err)
			}
		}
	}()
}

// afterExit decides, under a RestartPolicy, what follows the exit of c:
// a restart after a back-off, nothing yet, or the task's end (done, with
// the stopped reason) once no essential container runs or will restart.
func (w *worker) afterExit(ctx context.Context, name string, st runtime.ExitStatus) (done bool, reason string) {
	c := w.task.Container(name)
	_, canRestart := w.rt.(runtime.Restarter)
	if c != nil && c.Essential && canRestart && task.Restarts(w.task.RestartPolicy, st.Code) {
		w.scheduleRestart(ctx, name, st)
		return false, ""
	}
	essential := false
	for _, tc := range w.task.Containers {
		_, exited := w.exited[tc.Name]
		if w.runs.pending[tc.Name] || tc.Essential && !exited {
			return false, ""
		}
		essential = essential || tc.Essential
	}
	if !essential && len(w.exited) < len(w.task.Containers) {
		return false, ""
	}
	reason = fmt.Sprintf("Essential container in task exited (%s exited with code %d)", name, st.Code)
	if r := containerReason(st); r != "" {
		reason = r
	}
	return true, reason
}

// scheduleRestart restarts the container after the back-off: the base
// doubled for each restart in a row, at most the maximum, from the base
// again after a run of RestartBackoffReset.
func (w *worker) scheduleRestart(ctx context.Context, name string, st runtime.ExitStatus) {
	cfg := &w.agent.cfg
	rs := &w.runs
	if began := rs.started[name]; !began.IsZero() && !st.ExitedAt.IsZero() && st.ExitedAt.Sub(began) >= RestartBackoffReset {
		rs.crashes[name] = 0
	}
	delay := cfg.RestartBackoff
	for i := 0; i < rs.crashes[name] && delay < cfg.MaxRestartBackoff; i++ {
		delay *= 2
	}
	delay = min(delay, cfg.MaxRestartBackoff)
	rs.crashes[name]++
	rs.pending[name] = true
	w.log.Info("container exited; restarting it after a back-off", "container", name, "code", st.Code,
		"backoff", delay, "policy", w.task.RestartPolicy)
	go func() {
		if sleep(ctx, delay) != nil {
			return
		}
		select {
		case rs.restartDue <- name:
		case <-ctx.Done():
		}
	}()
}

// restart runs an exited container again (its back-off has passed) and
// reports the new run with the last one's end. A restart that fails is
// tried again after the next back-off; a sandbox that is gone fails the
// task.
func (w *worker) restart(ctx, wctx context.Context, name string, exits chan<- exitEvent) error {
	rs := &w.runs
	if !rs.pending[name] {
		return nil
	}
	delete(rs.pending, name)
	st, exited := w.exited[name]
	c := w.task.Container(name)
	if !exited || c == nil {
		return nil
	}
	if err := w.rt.(runtime.Restarter).Restart(wctx, w.task.ID, name); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%s: restarting container %s: %v", task.ReasonCannotStartContainer, name, err)
		}
		w.log.Warn("restarting the container failed; trying again after a back-off", "container", name, "err", err)
		w.scheduleRestart(wctx, name, st)
		return nil
	}
	delete(w.exited, name)
	rs.restarts[name]++
	code := st.Code
	u := agentproto.ContainerUpdate{Name: name, LastStatus: task.StatusRunning, RuntimeID: taskmeta.ContainerID(w.sandboxID(), name),
		RestartCount: rs.restarts[name], LastExitCode: &code, LastReason: containerReason(st),
		LastStartedAt: rs.started[name], LastFinishedAt: st.ExitedAt}
	w.beginRun(wctx, c, w.agent.cfg.Now(), false, &u)
	w.waitFor(wctx, name, exits)
	w.log.Info("container restarted", "container", name, "restarts", rs.restarts[name])
	w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{u}})
	return nil
}
