package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// worker reconciles one task with its sandbox, from creation to deletion.
type worker struct {
	agent   *Agent
	rt      runtime.Runtime
	rtName  string
	task    *task.Task
	adopted *sandboxRef
	log     *slog.Logger

	updates  chan *task.Task
	gone     chan struct{}
	goneOnce sync.Once
}

// update hands the worker the latest version of its task, dropping an
// older one it has not read yet.
func (w *worker) update(t *task.Task) {
	for {
		select {
		case w.updates <- t:
			return
		default:
		}
		select {
		case <-w.updates:
		default:
		}
	}
}

func (w *worker) markGone() { w.goneOnce.Do(func() { close(w.gone) }) }

type exitEvent struct {
	name string
	st   runtime.ExitStatus
	err  error
}

func (w *worker) report(ctx context.Context, u agentproto.StatusUpdate) error {
	u.TaskID = w.task.ID
	if u.Runtime == "" {
		u.Runtime = w.rt.Name()
	}
	err := w.agent.report(ctx, u)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("status report refused", "status", u.LastStatus, "err", err)
	}
	return err
}

func (w *worker) run(ctx context.Context) {
	t := w.task
	exists := w.adopted != nil
	started := map[string]bool{}
	exited := map[string]runtime.ExitStatus{}
	if exists {
		for _, c := range w.adopted.info.Containers {
			started[c.Name] = c.Started
			if c.Exit != nil {
				exited[c.Name] = *c.Exit
			}
		}
		w.log.Info("adopted sandbox", "runtime", w.rt.Name(), "status", t.LastStatus)
	}

	switch {
	case t.DesiredStatus == task.StatusStopped && !exists:
		w.finish(ctx, nil)
		return
	case !exists && !t.LastStatus.Before(task.StatusRunning):
		// The task ran here but its sandbox is gone (the host rebooted).
		w.report(ctx, agentproto.StatusUpdate{StopCode: task.StopCodeEssentialContainerExited,
			StoppedReason: task.ReasonCannotInspectContainer + ": the task's sandbox is no longer on host " + w.agent.cfg.Host.ID})
		w.finish(ctx, nil)
		return
	case t.DesiredStatus == task.StatusStopped:
		w.stop(ctx, started, exited)
		return
	}

	if !exists {
		if err := w.create(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.report(ctx, agentproto.StatusUpdate{StopCode: task.StopCodeTaskFailedToStart, StoppedReason: err.Error()})
			w.finish(ctx, nil)
			return
		}
	}
	// Start what is not started yet (a new sandbox, or one adopted half-way).
	if t.LastStatus.Before(task.StatusRunning) {
		for _, c := range t.Containers {
			if started[c.Name] {
				continue
			}
			if err := w.rt.Start(ctx, t.ID, c.Name); err != nil {
				if ctx.Err() != nil {
					return
				}
				w.report(ctx, agentproto.StatusUpdate{StopCode: task.StopCodeTaskFailedToStart,
					StoppedReason: fmt.Sprintf("%s: container %s: %v", task.ReasonCannotStartContainer, c.Name, err)})
				w.stop(ctx, started, exited)
				return
			}
			started[c.Name] = true
		}
		u := agentproto.StatusUpdate{LastStatus: task.StatusRunning}
		for _, c := range t.Containers {
			u.Containers = append(u.Containers, agentproto.ContainerUpdate{Name: c.Name,
				LastStatus: task.StatusRunning, RuntimeID: t.ID + "/" + c.Name})
		}
		if w.report(ctx, u) != nil && ctx.Err() != nil {
			return
		}
	}
	w.watch(ctx, started, exited)
}

// create is the ACTIVATING phase: image pull and sandbox creation.
func (w *worker) create(ctx context.Context) error {
	t := w.task
	now := w.agent.cfg.Now()
	if err := w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusActivating, PullStartedAt: now}); err != nil {
		return err
	}
	spec := runtime.Spec{ID: t.ID, MilliCPU: t.CPUUnits * 1000 / 1024, MemoryMiB: t.MemoryMiB,
		Labels: map[string]string{LabelTaskARN: t.ARN, LabelCluster: t.Cluster, LabelHost: w.agent.cfg.Host.ID}}
	for _, c := range t.Containers {
		env := make([]string, 0, len(c.Environment))
		for k, v := range c.Environment {
			env = append(env, k+"="+v)
		}
		sort.Strings(env)
		spec.Containers = append(spec.Containers, runtime.ContainerSpec{Name: c.Name, Image: c.Image,
			Args: c.Args(), Env: env, WorkingDir: c.WorkingDir, User: c.User})
	}
	// Image pulls belong to the runtimes that need images; the pull window
	// closes when the sandbox exists.
	if err := w.rt.Create(ctx, spec); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("%s: %v", task.ReasonResourceInitialization, err)
	}
	w.report(ctx, agentproto.StatusUpdate{PullStoppedAt: w.agent.cfg.Now()})
	return nil
}

// waitAll starts a waiter per started container that has not exited.
func (w *worker) waitAll(ctx context.Context, started map[string]bool, exited map[string]runtime.ExitStatus) <-chan exitEvent {
	ch := make(chan exitEvent, len(w.task.Containers))
	id := w.task.ID
	for _, c := range w.task.Containers {
		if !started[c.Name] {
			continue
		}
		if st, ok := exited[c.Name]; ok {
			ch <- exitEvent{name: c.Name, st: st}
			continue
		}
		go func(name string) {
			st, err := w.rt.Wait(ctx, id, name)
			ch <- exitEvent{name: name, st: st, err: err}
		}(c.Name)
	}
	return ch
}

func containerReason(st runtime.ExitStatus) string {
	if st.OOMKilled {
		return task.ReasonOutOfMemory + ": Container killed due to memory usage"
	}
	return ""
}

// watch is the RUNNING phase: it reports container exits and stops the task
// when an essential container exits or a stop is asked for.
func (w *worker) watch(ctx context.Context, started map[string]bool, exited map[string]runtime.ExitStatus) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exits := w.waitAll(wctx, started, exited)
	reported := map[string]bool{}
	pending := 0
	for _, c := range w.task.Containers {
		if started[c.Name] {
			pending++
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.gone:
			cancel()
			w.teardown(ctx)
			return
		case t := <-w.updates:
			w.task = t
			if t.DesiredStatus == task.StatusStopped {
				cancel()
				w.stop(ctx, started, exited)
				return
			}
		case ev := <-exits:
			pending--
			if ev.err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Error("waiting for container failed", "container", ev.name, "err", ev.err)
				w.report(ctx, agentproto.StatusUpdate{StopCode: task.StopCodeEssentialContainerExited,
					StoppedReason: fmt.Sprintf("%s: container %s: %v", task.ReasonCannotInspectContainer, ev.name, ev.err)})
				cancel()
				w.stop(ctx, started, exited)
				return
			}
			exited[ev.name] = ev.st
			if !reported[ev.name] {
				reported[ev.name] = true
				w.reportExit(ctx, ev.name, ev.st)
			}
			c := w.task.Container(ev.name)
			if (c != nil && c.Essential) || pending == 0 {
				reason := fmt.Sprintf("Essential container in task exited (%s exited with code %d)", ev.name, ev.st.Code)
				if r := containerReason(ev.st); r != "" {
					reason = r
				}
				w.report(ctx, agentproto.StatusUpdate{StopCode: task.StopCodeEssentialContainerExited, StoppedReason: reason})
				cancel()
				w.stop(ctx, started, exited)
				return
			}
		}
	}
}

func (w *worker) reportExit(ctx context.Context, name string, st runtime.ExitStatus) {
	code := st.Code
	w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{{
		Name: name, LastStatus: task.StatusStopped, ExitCode: &code, Reason: containerReason(st)}}})
}

// stop walks DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED: SIGTERM,
// SIGKILL after each container's stop timeout, then the sandbox is deleted.
func (w *worker) stop(ctx context.Context, started map[string]bool, exited map[string]runtime.ExitStatus) {
	t := w.task
	if t.LastStatus.Before(task.StatusDeactivating) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusDeactivating})
	}
	if t.LastStatus.Before(task.StatusStopping) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusStopping})
	}
	var running []task.Container
	var longest time.Duration
	for _, c := range t.Containers {
		if started[c.Name] {
			if _, done := exited[c.Name]; !done {
				running = append(running, c)
				timeout := c.StopTimeout
				if timeout <= 0 {
					timeout = task.DefaultStopTimeout
				}
				longest = max(longest, timeout)
			}
		}
	}
	if len(running) > 0 {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		results := make(chan exitEvent, len(running))
		for _, c := range running {
			if err := w.rt.Signal(ctx, t.ID, c.Name, syscall.SIGTERM); err != nil {
				w.log.Warn("SIGTERM failed", "container", c.Name, "err", err)
			}
			timeout := c.StopTimeout
			if timeout <= 0 {
				timeout = task.DefaultStopTimeout
			}
			go func(name string, timeout time.Duration) {
				tctx, tcancel := context.WithTimeout(wctx, timeout)
				st, err := w.rt.Wait(tctx, t.ID, name)
				tcancel()
				if err != nil && wctx.Err() == nil {
					// The stop timeout passed: SIGKILL, then wait for good.
					w.log.Info("stop timeout passed; sending SIGKILL", "container", name, "timeout", timeout)
					if kerr := w.rt.Signal(wctx, t.ID, name, syscall.SIGKILL); kerr != nil {
						w.log.Warn("SIGKILL failed", "container", name, "err", kerr)
					}
					kctx, kcancel := context.WithTimeout(wctx, 30*time.Second)
					st, err = w.rt.Wait(kctx, t.ID, name)
					kcancel()
				}
				results <- exitEvent{name: name, st: st, err: err}
			}(c.Name, timeout)
		}
		for range running {
			select {
			case <-ctx.Done():
				return
			case ev := <-results:
				if ev.err != nil {
					w.log.Error("container did not stop", "container", ev.name, "err", ev.err)
					continue
				}
				exited[ev.name] = ev.st
				w.reportExit(ctx, ev.name, ev.st)
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.finish(ctx, exited)
}

// finish is DEPROVISIONING → STOPPED: the sandbox and what it held are
// released before the task is reported STOPPED.
func (w *worker) finish(ctx context.Context, exited map[string]runtime.ExitStatus) {
	if w.task.LastStatus.Before(task.StatusDeprovisioning) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusDeprovisioning})
	}
	if err := w.rt.Delete(ctx, w.task.ID); err != nil && !errdefs.IsNotFound(err) {
		if ctx.Err() != nil {
			return
		}
		w.log.Error("deleting sandbox failed", "err", err)
		w.report(ctx, agentproto.StatusUpdate{StoppedReason: fmt.Sprintf("%s: %v", task.ReasonCannotStopContainer, err)})
	}
	w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusStopped})
	w.log.Info("task stopped")
}

// teardown removes the sandbox of a task the control plane no longer places
// here (it was stopped without us, e.g. its host was declared lost).
func (w *worker) teardown(ctx context.Context) {
	if err := w.rt.Delete(ctx, w.task.ID); err != nil && !errdefs.IsNotFound(err) && ctx.Err() == nil {
		w.log.Error("deleting sandbox of a task no longer placed here failed", "err", err)
	}
}
