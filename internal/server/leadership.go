package server

import (
	"context"
	"sync"
	"sync/atomic"

	"vessel.dev/vessel/internal/store"
)

// Leadership decides whether this replica runs the controllers (placement,
// the service scheduler and deployments, host liveness, pending timeouts,
// retention, profile deletion). With several replicas on one distributed
// store exactly one leads at a time (the etcd store's Elector); a single
// process on bbolt always leads (AlwaysLeader).
type Leadership interface {
	// Lead calls term once per term of leadership, until ctx is done. The
	// term's context ends when the leadership does, and may carry a
	// store.Fence (store.WithFence) so that the writes made with it are
	// refused once a successor may lead.
	Lead(ctx context.Context, term func(ctx context.Context)) error
}

// AlwaysLeader is the Leadership of a single control plane process: one
// term, from Run to its end, unfenced.
type AlwaysLeader struct{}

// Lead implements Leadership.
func (AlwaysLeader) Lead(ctx context.Context, term func(ctx context.Context)) error {
	term(ctx)
	return nil
}

// leaderState is whether this replica leads, for /healthz and /metrics,
// and what else runs while it does.
type leaderState struct {
	leading atomic.Bool
	mu      sync.Mutex
	hooks   []func(ctx context.Context)
}

// OnLeadership has fn run, in a goroutine of its own, during each term of
// leadership of this replica, with the term's context (fenced: the writes
// fn makes through the server end with the term): the Kubernetes bridge's
// scheduler and virtual nodes with several replicas. A term ends only once
// fn has returned, so that two terms' copies never overlap on this
// replica. Call it before Run.
func (s *Server) OnLeadership(fn func(ctx context.Context)) {
	s.leader.mu.Lock()
	s.leader.hooks = append(s.leader.hooks, fn)
	s.leader.mu.Unlock()
}

// runControllers runs the controllers for each term of leadership.
func (s *Server) runControllers(ctx context.Context) {
	s.cfg.Leadership.Lead(ctx, func(term context.Context) {
		s.leader.leading.Store(true)
		s.metrics.leader.Set(1)
		s.metrics.leaderChanges.Inc()
		_, fenced := store.FenceFrom(term)
		s.log.Info("this replica leads: controllers started", "fenced", fenced)
		term, end := context.WithCancel(term)
		var wg sync.WaitGroup
		s.leader.mu.Lock()
		for _, fn := range s.leader.hooks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn(term)
			}()
		}
		s.leader.mu.Unlock()
		s.controller(term)
		end()
		wg.Wait()
		s.leader.leading.Store(false)
		s.metrics.leader.Set(0)
		if ctx.Err() == nil {
			s.log.Warn("leadership lost: controllers stopped; campaigning again")
		}
	})
}

// IsLeader reports whether this replica runs the controllers now.
func (s *Server) IsLeader() bool { return s.leader.leading.Load() }
