package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testutil"
)

// outboxPlane records the ReportStatuses calls it gets; the first blocks
// until release is closed, and the task named refuse is refused.
type outboxPlane struct {
	agentproto.ControlPlane // the other methods are not called
	mu                      sync.Mutex
	calls                   [][]string // task IDs of each call
	first                   chan struct{}
	release                 chan struct{}
	refuse                  string
	fail                    error // the call itself fails
}

func (p *outboxPlane) ReportStatuses(ctx context.Context, hostID string, tasks [][]agentproto.StatusUpdate) ([]error, error) {
	p.mu.Lock()
	var ids []string
	errs := make([]error, len(tasks))
	for i, reports := range tasks {
		ids = append(ids, reports[0].TaskID)
		if reports[0].TaskID == p.refuse {
			errs[i] = errdefs.Conflict("task %s is not placed on host %s", p.refuse, hostID)
		}
	}
	p.calls = append(p.calls, ids)
	n := len(p.calls)
	p.mu.Unlock()
	if n == 1 {
		close(p.first)
		<-p.release
	}
	if p.fail != nil {
		return nil, p.fail
	}
	return errs, nil
}

// TestReportsOfTasksTravelTogether: while one status call is in flight,
// the reports of other tasks wait and then go as one call, each task
// getting its own outcome; a call that fails fails for each of its tasks.
func TestReportsOfTasksTravelTogether(t *testing.T) {
	for _, fail := range []error{nil, errdefs.Unavailable("control plane unreachable")} {
		t.Run(fmt.Sprintf("call fails %v", fail != nil), func(t *testing.T) {
			p := &outboxPlane{first: make(chan struct{}), release: make(chan struct{}), refuse: "t3", fail: fail}
			a := &Agent{cfg: Config{ControlPlane: p}}
			a.cfg.Host.ID = "h1"
			ctx := t.Context()
			send := func(id string) chan error {
				out := make(chan error, 1)
				go func() {
					out <- a.sendReports(ctx, []agentproto.StatusUpdate{{TaskID: id, At: time.Now()}})
				}()
				return out
			}
			results := map[string]chan error{"t0": send("t0")}
			<-p.first
			for i := 1; i <= 5; i++ {
				id := fmt.Sprintf("t%d", i)
				results[id] = send(id)
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				a.outbox.mu.Lock()
				defer a.outbox.mu.Unlock()
				if n := len(a.outbox.queue); n != 5 {
					return fmt.Errorf("%d reports queued, want 5", n)
				}
				return nil
			})
			close(p.release)
			for id, ch := range results {
				err := <-ch
				switch {
				case fail != nil && id != "t0" && !errors.Is(err, errdefs.ErrUnavailable):
					t.Errorf("task %s: %v, want the call's error", id, err)
				case fail == nil && id == "t3" && !errors.Is(err, errdefs.ErrConflict):
					t.Errorf("task t3: %v, want its own refusal", err)
				case fail == nil && id != "t3" && err != nil:
					t.Errorf("task %s: %v, want none", id, err)
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.calls) != 2 || len(p.calls[1]) != 5 {
				t.Errorf("calls %v; want t0 alone, then the five others in one call", p.calls)
			}
		})
	}
}
