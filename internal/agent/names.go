package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/discovery"
)

// NameFeed is this host's copy of the names of the fleet's tasks, which
// its DNS server (discovery.Server, on its subnets' gateways) answers
// from: Run follows the control plane's names with a long poll and keeps
// the last it got, so that names are answered through an outage of the
// control plane. It is the DNS server's discovery.Source.
type NameFeed struct {
	src   agentproto.NameSource
	log   *slog.Logger
	retry time.Duration

	mu      sync.Mutex
	cur     agentproto.Names
	got     bool          // the first names are in
	have    chan struct{} // closed once they are
	changed chan struct{} // closed and replaced at every change
}

var _ discovery.Source = (*NameFeed)(nil)

// NewNameFeed returns a feed from src (the control plane, in process or
// over HTTP); nothing is fetched until Run. log defaults to slog.Default().
func NewNameFeed(src agentproto.NameSource, log *slog.Logger) *NameFeed {
	if log == nil {
		log = slog.Default()
	}
	return &NameFeed{src: src, log: log.With("component", "names"), retry: time.Second,
		have: make(chan struct{}), changed: make(chan struct{})}
}

// Names implements discovery.Source: the last names fetched, waiting for
// the first.
func (f *NameFeed) Names(ctx context.Context) (discovery.Names, error) {
	select {
	case <-f.have:
	case <-ctx.Done():
		return discovery.Names{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur.Names, nil
}

// Changes implements discovery.Source.
func (f *NameFeed) Changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Revision is the revision of the names held, 0 before the first.
func (f *NameFeed) Revision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur.Revision
}

// Run follows the names for host hostID until ctx ends. A failed poll
// keeps the names held and is tried again after a pause.
func (f *NameFeed) Run(ctx context.Context, hostID string) {
	failing := false
	for ctx.Err() == nil {
		f.mu.Lock()
		after, seen := f.cur.Revision, f.cur.StoreRevision
		f.mu.Unlock()
		n, err := f.src.Names(ctx, hostID, after, seen)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				f.log.Warn("fetching the names of tasks failed; answering with the last ones until the control plane answers", "err", err)
				failing = true
			}
			sleep(ctx, f.retry)
			continue
		}
		if failing {
			f.log.Info("fetching the names of tasks again")
			failing = false
		}
		f.set(n)
	}
}

// set takes in n, if it is not what the feed holds.
func (f *NameFeed) set(n agentproto.Names) {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := !f.got
	if !first && n.Revision == f.cur.Revision {
		f.cur.StoreRevision = max(f.cur.StoreRevision, n.StoreRevision)
		return
	}
	f.cur = n
	if first {
		f.got = true
		close(f.have)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.log.Debug("names of tasks updated", "records", len(n.Records), "revision", n.Revision)
}
