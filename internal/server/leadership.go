package server

import (
	"context"
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

// leaderState is whether this replica leads, for /healthz and /metrics.
type leaderState struct {
	leading atomic.Bool
}

// runControllers runs the controllers for each term of leadership.
func (s *Server) runControllers(ctx context.Context) {
	s.cfg.Leadership.Lead(ctx, func(term context.Context) {
		s.leader.leading.Store(true)
		s.metrics.leader.Set(1)
		s.metrics.leaderChanges.Inc()
		_, fenced := store.FenceFrom(term)
		s.log.Info("this replica leads: controllers started", "fenced", fenced)
		s.controller(term)
		s.leader.leading.Store(false)
		s.metrics.leader.Set(0)
		if ctx.Err() == nil {
			s.log.Warn("leadership lost: controllers stopped; campaigning again")
		}
	})
}

// IsLeader reports whether this replica runs the controllers now.
func (s *Server) IsLeader() bool { return s.leader.leading.Load() }
