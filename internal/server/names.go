package server

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strconv"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/errdefs"
)

// Names of tasks for every host's DNS server. Every host agent follows
// them with a long poll (GET /agent/v1/hosts/{id}/names), answered by any
// replica from its task cache; the in-process agent calls Names directly.

var _ agentproto.NameSource = (*Server)(nil)

// namesCache is the names of the task cache at one of its revisions, made
// once for every host that asks.
type namesCache struct {
	mu    sync.Mutex
	rev   int64 // the task cache's revision they were made at; 0: none yet
	names agentproto.Names
}

// currentNames returns the names of the task cache as it is now.
func (s *Server) currentNames(ctx context.Context) (agentproto.Names, error) {
	c := &s.names
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != 0 && c.rev == s.tasks.revision() {
		return c.names, nil
	}
	tasks, rev, err := s.tasks.snapshot(ctx)
	if err != nil {
		return agentproto.Names{}, err
	}
	n := agentproto.Names{Names: discovery.NamesOf(tasks), StoreRevision: rev}
	n.Revision = namesRevision(n.Names)
	c.rev, c.names = rev, n
	return n, nil
}

// namesRevision is a digest of the names: the same names give the same
// revision on every replica, never 0 (what a host that has none passes).
func namesRevision(n discovery.Names) int64 {
	h := fnv.New64a()
	json.NewEncoder(h).Encode(n)
	r := int64(h.Sum64() >> 1)
	if r == 0 {
		r = 1
	}
	return r
}

// Names implements agentproto.NameSource. The names are the same for
// every host (hostID only says who asks).
func (s *Server) Names(ctx context.Context, hostID string, after, seen int64) (agentproto.Names, error) {
	// A host that moved here from another replica may have names newer
	// than this replica's cache: let the cache catch up first, so that it
	// is never answered older names. If it does not within the long poll,
	// the host keeps its names and asks again (any replica).
	if seen > s.tasks.revision() && !s.waitCache(ctx, seen) {
		return agentproto.Names{}, errdefs.Unavailable("names: this replica's task cache has not reached store revision %d, which the host's names reflect; ask again", seen)
	}
	for {
		pulse := s.pulseChan()
		n, err := s.currentNames(ctx)
		if err != nil {
			return agentproto.Names{}, err
		}
		if n.Revision != after {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-pulse:
		}
	}
}

// routeNames serves the agent protocol's names route.
func (s *Server) routeNames(mux *http.ServeMux) {
	mux.HandleFunc("GET /agent/v1/hosts/{id}/names", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		q := r.URL.Query()
		var revs [2]int64
		for i, name := range []string{"after", "seen"} {
			v := q.Get(name)
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeAgent(w, nil, errdefs.InvalidArgument("names: %s=%q is not a revision: give a whole number, 0 or more (0 or none: the host has no names yet)", name, v))
				return
			}
			revs[i] = n
		}
		after, seen := revs[0], revs[1]
		wait := agentproto.DefaultLongPoll
		if d, err := time.ParseDuration(q.Get("wait")); err == nil && d > 0 && d <= 5*time.Minute {
			wait = d
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		n, err := s.Names(ctx, r.PathValue("id"), after, seen)
		writeAgent(w, n, err)
	})
}
