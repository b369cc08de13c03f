package agent

import (
	"context"
	"sync"
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
