package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

var _ agentproto.ControlPlane = (*Server)(nil)

// RegisterHost implements agentproto.ControlPlane.
func (s *Server) RegisterHost(ctx context.Context, h agentproto.Host) error {
	if h.ID == "" {
		return errdefs.InvalidArgument("host ID is required")
	}
	if h.MilliCPU <= 0 || h.MemoryMiB <= 0 {
		return errdefs.InvalidArgument("host %s: capacity must be positive (got %d milli-CPU, %d MiB)", h.ID, h.MilliCPU, h.MemoryMiB)
	}
	if len(h.Runtimes) == 0 {
		return errdefs.InvalidArgument("host %s offers no runtime", h.ID)
	}
	if h.DefaultRuntime != "" && !slices.Contains(h.Runtimes, h.DefaultRuntime) {
		return errdefs.InvalidArgument("host %s: default runtime %q is not among its runtimes %v", h.ID, h.DefaultRuntime, h.Runtimes)
	}
	if revoked, err := s.isRevoked(ctx, h.ID); err != nil {
		return err
	} else if revoked {
		return fmt.Errorf("host %s was revoked (vessel host revoke): it may register again only after joining with a new token: %w", h.ID, agentproto.ErrAccessDenied)
	}
	if h.Address.IsValid() && (h.Address.IsUnspecified() || h.Address.IsMulticast()) {
		return errdefs.InvalidArgument("host %s: address %s is not one other hosts can reach it at; give its unicast address (vessel agent --advertise-address)", h.ID, h.Address)
	}
	if len(h.Subnets) == 0 {
		h.Subnets = slices.Clone(s.cfg.Subnets)
	}
	if err := s.checkHostSubnets(h); err != nil {
		return err
	}
	if _, err := putJSON(ctx, s.store, hostKey(h.ID), hostRecord{Host: h, RegisteredAt: s.cfg.Now()}, store.AnyRevision); err != nil {
		return err
	}
	s.networkChanged()
	if err := s.recordHeartbeat(ctx, h.ID, true); err != nil {
		return err
	}
	full, err := s.assignSlices(ctx, h)
	if err != nil {
		return err
	}
	if len(full) > 0 {
		s.log.Warn(noSliceMessage(h.ID, full), "host", h.ID)
	}
	s.log.Info("host registered", "host", h.ID, "cpu_milli", h.MilliCPU, "memory_mib", h.MemoryMiB, "runtimes", h.Runtimes, "address", h.Address)
	s.notify()
	return nil
}

// Heartbeat implements agentproto.ControlPlane. A heartbeat is kept in
// memory and, at most every HostTimeout/4 per host, in the store
// (heartbeats/<id>): any replica may receive a host's heartbeats, and the
// leader, whichever replica it is or becomes, judges liveness from the
// stored ones as well as its own. After the start of a process a host it
// has no newer news of counts as alive for HostTimeout, as before.
func (s *Server) Heartbeat(ctx context.Context, hostID string) error {
	if _, err := s.store.Get(ctx, hostKey(hostID)); err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("host %s is not registered", hostID)
		}
		return err
	}
	return s.recordHeartbeat(ctx, hostID, false)
}

// heartbeatRecord is the stored heartbeat of a host.
type heartbeatRecord struct {
	HostID string    `json:"hostId"`
	At     time.Time `json:"at"`
}

// recordHeartbeat notes a heartbeat of hostID in memory, and in the store
// if force or if this replica last stored one HostTimeout/4 ago or more.
func (s *Server) recordHeartbeat(ctx context.Context, hostID string, force bool) error {
	now := s.cfg.Now()
	s.hbMu.Lock()
	s.heartbeats[hostID] = now
	due := force || now.Sub(s.hbStored[hostID]) >= s.cfg.HostTimeout/4
	if due {
		s.hbStored[hostID] = now
	}
	s.hbMu.Unlock()
	if !due {
		return nil
	}
	if _, err := putJSON(ctx, s.store, prefixHeartbeats+hostID, heartbeatRecord{HostID: hostID, At: now}, store.AnyRevision); err != nil {
		s.hbMu.Lock()
		delete(s.hbStored, hostID) // try again with the next heartbeat
		s.hbMu.Unlock()
		return err
	}
	return nil
}

// storedHeartbeats returns the latest stored heartbeat of each host.
func (s *Server) storedHeartbeats(ctx context.Context) (map[string]time.Time, error) {
	recs, _, _, err := listJSON[heartbeatRecord](ctx, s.reads(ctx), prefixHeartbeats)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(recs))
	for _, r := range recs {
		out[r.HostID] = r.At
	}
	return out, nil
}

// hostAlive reports whether host id was heard from, by this replica or
// (stored) by any, within HostTimeout; a host this process has no news of
// since it started counts as alive for HostTimeout after the start.
func (s *Server) hostAlive(id string, now time.Time, stored map[string]time.Time) bool {
	s.hbMu.Lock()
	last := s.heartbeats[id]
	s.hbMu.Unlock()
	if at := stored[id]; at.After(last) {
		last = at
	}
	if s.started.After(last) {
		last = s.started
	}
	return now.Sub(last) <= s.cfg.HostTimeout
}

// Assignments implements agentproto.ControlPlane.
func (s *Server) Assignments(ctx context.Context, hostID string, after int64) (agentproto.Assignments, error) {
	return s.assignments(ctx, hostID, after, true)
}

// assignments answers a host's poll; changes allows an answer of only what
// changed after after (agents from before answers of changes ask without).
func (s *Server) assignments(ctx context.Context, hostID string, after int64, changes bool) (agentproto.Assignments, error) {
	// Never answer an agent with a set older than one it may have seen
	// through another replica: a task missing from the answer is one the
	// agent tears down.
	if after <= 0 {
		// A first poll (an agent starting) deletes the host's sandboxes
		// that are not in the answer: answer as fresh as the store.
		tasks, rev, err := s.freshTasks(ctx)
		if err != nil {
			return agentproto.Assignments{}, err
		}
		if rev != after {
			return hostAssignments(tasks, hostID, rev), nil
		}
	}
	// An agent that moved here from another replica may have seen a newer
	// set than this replica's cache holds. Wait for the cache to catch up;
	// if it does not within the long poll, answer from the store (a set at
	// least as new as the agent's) under the agent's revision.
	if after > s.tasks.revision() && !s.waitCache(ctx, after) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tasks, _, err := s.storeTasks(rctx)
		if err != nil {
			return agentproto.Assignments{}, err
		}
		return hostAssignments(tasks, hostID, after), nil
	}
	if err := s.tasks.ready(ctx); err != nil {
		return agentproto.Assignments{}, err
	}
	for waited := false; ; {
		// Only a change of this host's tasks (or a relist) wakes it.
		pulse := s.tasks.hostPulse(hostID)
		if ahead := s.tasks.hostAhead(hostID); ahead > 0 && !waited {
			// A change of the host's tasks this replica wrote ahead of
			// the watch: answer once the watch has it (a moment), so
			// that the answer's revision covers it; else every poll
			// until then would be answered with it again at once.
			wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			s.waitCache(wctx, ahead)
			cancel()
			waited = true
		}
		tasks, stopped, rev, full, changed := s.tasks.hostChanges(hostID, after, changes)
		if changed || ctx.Err() != nil {
			out := agentproto.Assignments{Tasks: make([]task.Task, 0, len(tasks)), Revision: rev, Changes: !full, Stopped: stopped}
			for _, t := range tasks {
				out.Tasks = append(out.Tasks, *t.Clone())
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
		case <-pulse:
		}
	}
}

// hostAssignments is the set of tasks placed on hostID that are not
// stopped, as of revision rev.
func hostAssignments(tasks []*task.Task, hostID string, rev int64) agentproto.Assignments {
	out := agentproto.Assignments{Tasks: []task.Task{}, Revision: rev}
	for _, t := range tasks {
		if t.HostID == hostID && !t.Stopped() {
			out.Tasks = append(out.Tasks, *t.Clone())
		}
	}
	return out
}

// ReportStatuses implements agentproto.ControlPlane: each task's reports
// apply as ReportStatus applies them, the tasks at once (so that a store
// that commits concurrent writes together writes them together).
func (s *Server) ReportStatuses(ctx context.Context, hostID string, tasks [][]agentproto.StatusUpdate) ([]error, error) {
	if len(tasks) > agentproto.MaxTasksPerCall {
		return nil, errdefs.InvalidArgument("a status call carries the reports of at most %d tasks, not %d", agentproto.MaxTasksPerCall, len(tasks))
	}
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, reports := range tasks {
		wg.Go(func() { errs[i] = s.ReportStatus(ctx, hostID, reports...) })
	}
	wg.Wait()
	return errs, nil
}

// ReportStatus applies reports about one task, in order, in one write of
// the task.
func (s *Server) ReportStatus(ctx context.Context, hostID string, reports ...agentproto.StatusUpdate) error {
	if len(reports) == 0 {
		return errdefs.InvalidArgument("a status report carries at least one report")
	}
	if len(reports) > agentproto.MaxReportsPerCall {
		return errdefs.InvalidArgument("a status report carries at most %d reports, not %d", agentproto.MaxReportsPerCall, len(reports))
	}
	for _, u := range reports {
		if err := u.Validate(); err != nil {
			return err
		}
		if u.TaskID != reports[0].TaskID {
			return errdefs.InvalidArgument("the reports of one call are about one task: %s and %s differ", reports[0].TaskID, u.TaskID)
		}
	}
	now := s.cfg.Now()
	_, err := s.updateTask(ctx, reports[0].TaskID, func(t *task.Task) (bool, error) {
		if t.HostID != hostID {
			return false, errdefs.Conflict("task %s is not placed on host %s", t.ID, hostID)
		}
		changed := false
		for _, u := range reports {
			c, err := t.ApplyReport(u, now)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	})
	if err == nil {
		s.notify()
	}
	return err
}

// The agent protocol over HTTP, for `vessel agent --server URL`.

func (s *Server) routeAgent(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		var h agentproto.Host
		if !decodeAgent(w, r, &h) {
			return
		}
		if err := agentCaller(r, h.ID); err != nil {
			writeAgent(w, nil, err)
			return
		}
		writeAgent(w, nil, s.RegisterHost(r.Context(), h))
	})
	mux.HandleFunc("POST /agent/v1/hosts/{id}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		writeAgent(w, nil, s.Heartbeat(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("GET /agent/v1/hosts/{id}/assignments", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		ctx, after, cancel := longPoll(r)
		defer cancel()
		// changes=1: the agent takes answers of what changed only.
		as, err := s.assignments(ctx, r.PathValue("id"), after, r.URL.Query().Get("changes") == "1")
		writeAgent(w, as, err)
	})
	mux.HandleFunc("GET /agent/v1/hosts/{id}/network", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		ctx, after, cancel := longPoll(r)
		defer cancel()
		hn, err := s.HostNetwork(ctx, r.PathValue("id"), after)
		writeAgent(w, hn, err)
	})
	mux.HandleFunc("POST /agent/v1/hosts/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		// One report as an object, or several about one task as an array.
		var reports []agentproto.StatusUpdate
		if !decodeAgent(w, r, &reportsBody{&reports}) {
			return
		}
		writeAgent(w, nil, s.ReportStatus(r.Context(), r.PathValue("id"), reports...))
	})
	mux.HandleFunc("POST /agent/v1/hosts/{id}/statuses", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		var in agentproto.StatusesRequest
		if !decodeAgent(w, r, &in) {
			return
		}
		errs, err := s.ReportStatuses(r.Context(), r.PathValue("id"), in.Tasks)
		if err != nil {
			writeAgent(w, nil, err)
			return
		}
		out := agentproto.StatusesResponse{Results: make([]*agentproto.ErrorBody, len(errs))}
		for i, err := range errs {
			out.Results[i] = agentproto.ErrorBodyOf(err)
		}
		writeAgent(w, out, nil)
	})
}

// longPoll reads a long poll's revision ("after") and wait ("wait", at
// most 5 min; DefaultLongPoll when absent) and bounds the request's
// context by the wait.
func longPoll(r *http.Request) (context.Context, int64, context.CancelFunc) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	wait := agentproto.DefaultLongPoll
	if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil && d > 0 && d <= 5*time.Minute {
		wait = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	return ctx, after, cancel
}

// agentCaller checks that the request's signer may act for hostID: a host
// credential only for the host it is bound to; admin keys (the in-process
// agent, set-ups from before host credentials) for any host. Whether the
// key may call the agent protocol at all ("vessel-agent:*") authorize
// decided before the handler ran.
func agentCaller(r *http.Request, hostID string) error {
	id, ok := auth.IdentityFrom(r.Context())
	if !ok {
		return fmt.Errorf("agent protocol: the request carries no verified identity: %w", agentproto.ErrAccessDenied)
	}
	if id.Key.Policy == auth.PolicyHost && id.Key.HostID != hostID {
		return fmt.Errorf("access key %s is the credential of host %s: it may act only for that host, not for host %q: %w",
			id.AccessKeyID, id.Key.HostID, hostID, agentproto.ErrAccessDenied)
	}
	return nil
}

// reportsBody decodes a status call's body: one report (an object) or an
// array of them.
type reportsBody struct{ reports *[]agentproto.StatusUpdate }

func (b *reportsBody) UnmarshalJSON(data []byte) error {
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
		return json.Unmarshal(data, b.reports)
	}
	var u agentproto.StatusUpdate
	if err := json.Unmarshal(data, &u); err != nil {
		return err
	}
	*b.reports = []agentproto.StatusUpdate{u}
	return nil
}

func decodeAgent(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeAgent(w, nil, errdefs.InvalidArgument("bad agent request body: %v", err))
		return false
	}
	return true
}

func writeAgent(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		agentproto.WriteError(w, err)
		return
	}
	if v == nil {
		v = struct{}{}
	}
	json.NewEncoder(w).Encode(v)
}
