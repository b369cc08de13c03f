package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"vessel.dev/vessel/internal/agentproto"
)

// DefaultReportDelay is Config.ReportDelay's default: a task that starts
// within it reaches RUNNING with one status write (its ACTIVATING, address,
// image digests and containers' starts sent with RUNNING); one that takes
// longer shows its progress at most this late.
const DefaultReportDelay = 250 * time.Millisecond

// reports queues one task's status reports. note queues a progress report
// to be sent within the agent's ReportDelay, together with what follows;
// send queues one and sends the queue at once. The reports reach the
// control plane in the order they were made, as one call (one write).
type reports struct {
	mu      sync.Mutex // guards queue and timer
	queue   []agentproto.StatusUpdate
	timer   *time.Timer
	sending sync.Mutex // one call at a time, so that order holds
}

// stamp fills in what every report of w carries.
func (w *worker) stamp(u agentproto.StatusUpdate) agentproto.StatusUpdate {
	u.TaskID = w.task.ID
	if u.Runtime == "" {
		u.Runtime = w.rt.Name()
	}
	if u.At.IsZero() {
		u.At = w.agent.cfg.Now()
	}
	return u
}

// note queues a progress report, sent within ReportDelay or with the next
// report sent at once, whichever comes first.
func (w *worker) note(ctx context.Context, u agentproto.StatusUpdate) {
	delay := w.agent.cfg.ReportDelay
	if delay < 0 {
		w.report(ctx, u)
		return
	}
	u = w.stamp(u)
	r := &w.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append(r.queue, u)
	if r.timer == nil {
		r.timer = time.AfterFunc(delay, func() { w.flush(ctx) })
	}
}

// report sends u, after whatever is queued, and waits for the control
// plane's answer.
func (w *worker) report(ctx context.Context, u agentproto.StatusUpdate) error {
	u = w.stamp(u)
	r := &w.reports
	r.mu.Lock()
	r.queue = append(r.queue, u)
	r.mu.Unlock()
	return w.flush(ctx)
}

// flush sends the queued reports as one call.
func (w *worker) flush(ctx context.Context) error {
	r := &w.reports
	r.sending.Lock()
	defer r.sending.Unlock()
	r.mu.Lock()
	queue := r.queue
	r.queue = nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	for len(queue) > 0 {
		n := min(len(queue), agentproto.MaxReportsPerCall)
		batch := queue[:n]
		queue = queue[n:]
		if err := w.agent.report(ctx, batch...); err != nil {
			if ctx.Err() == nil {
				last := batch[len(batch)-1]
				w.log.Warn("status report refused", "status", last.LastStatus, "reports", len(batch), "err", err)
			}
			return err
		}
	}
	return nil
}

// Reports of several tasks travel together. Each task's reports go to
// the control plane in order, one call at a time (flush); calls of
// different tasks made at the same time are sent as one ReportStatuses
// call (at most agentproto.MaxTasksPerCall tasks): a lone task's call
// goes out at once, those made while one is in flight share the next. On
// a host whose tasks start together this turns a call (a signature, a
// request, a verification) per task into one per round trip.

// outbox queues the calls waiting to be sent.
type outbox struct {
	mu      sync.Mutex
	queue   []*outgoing
	sending bool
}

// outgoing is one task's reports waiting to be sent, and where its
// outcome goes.
type outgoing struct {
	ctx     context.Context
	reports []agentproto.StatusUpdate
	done    chan error
}

// sendReportsTimeout bounds one ReportStatuses call made for several
// callers; it also ends when all of them have given up.
const sendReportsTimeout = time.Minute

// sendReports sends one task's reports together with other tasks' and
// returns their outcome.
func (a *Agent) sendReports(ctx context.Context, reports []agentproto.StatusUpdate) error {
	o := &outgoing{ctx: ctx, reports: reports, done: make(chan error, 1)}
	b := &a.outbox
	b.mu.Lock()
	b.queue = append(b.queue, o)
	start := !b.sending
	b.sending = true
	b.mu.Unlock()
	if start {
		go a.sendOutbox()
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendOutbox sends the queued calls, as many tasks' as one call may carry
// at a time, until the queue is empty.
func (a *Agent) sendOutbox() {
	b := &a.outbox
	for {
		b.mu.Lock()
		var batch []*outgoing
		for len(b.queue) > 0 && len(batch) < agentproto.MaxTasksPerCall {
			o := b.queue[0]
			b.queue = b.queue[1:]
			if o.ctx.Err() != nil {
				o.done <- o.ctx.Err()
				continue
			}
			batch = append(batch, o)
		}
		if len(batch) == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		tasks := make([][]agentproto.StatusUpdate, len(batch))
		for i, o := range batch {
			tasks[i] = o.reports
		}
		// The call ends when every caller has gone (the agent stopping).
		ctx, cancel := context.WithTimeout(context.Background(), sendReportsTimeout)
		var left atomic.Int64
		left.Store(int64(len(batch)))
		stops := make([]func() bool, len(batch))
		for i, o := range batch {
			stops[i] = context.AfterFunc(o.ctx, func() {
				if left.Add(-1) == 0 {
					cancel()
				}
			})
		}
		errs, err := a.cfg.ControlPlane.ReportStatuses(ctx, a.cfg.Host.ID, tasks)
		for _, stop := range stops {
			stop()
		}
		cancel()
		for i, o := range batch {
			if err == nil {
				o.done <- errs[i]
			} else {
				o.done <- err
			}
		}
	}
}
