package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// Host maintenance, for the operator of a fleet: `vessel host ls`,
// `describe`, `drain`, `undrain` and `rm`.
//
// A draining host gets no new placements (the scheduler sees it as not
// ready) but, unlike a lost host, keeps its tasks: the service scheduler
// starts its service tasks elsewhere within each service's
// minimumHealthyPercent and maximumPercent and then stops them (as ECS
// drains a container instance); its standalone tasks are left to finish,
// or, drained with --stop-tasks, stopped by the controller with
// TerminationNotice. The drain is a record of its own,
// hostdrains/<host id>, written by the API (any replica) and read by the
// leader's controller in each pass, so it survives restarts and changes of
// leader, and an agent registering again does not undo it. A host is
// drained once it drains and holds no task that is not STOPPED; `host rm`
// removes a drained host (or, with --force, any host, its tasks stopped in
// the record first).

const prefixHostDrains = "hostdrains/" // hostdrains/<host id>

// hostDrain marks a host as draining.
type hostDrain struct {
	HostID string    `json:"hostId"`
	Since  time.Time `json:"since"`
	// StopTasks: the host's standalone tasks are stopped too (else they
	// are left to finish).
	StopTasks bool `json:"stopTasks,omitempty"`
}

// Host states, as `vessel host ls` shows them.
const (
	HostReady         = "ready"
	HostLost          = "lost"
	HostDraining      = "draining"
	HostDrained       = "drained"
	HostRevoked       = "revoked"
	HostNotRegistered = "not registered"
)

// HostInfo is a host as `vessel host ls` shows it.
type HostInfo struct {
	ID string `json:"id"`
	// State is one of ready, lost, draining, drained, revoked and not
	// registered (a credential without a registration).
	State         string    `json:"state"`
	Registered    bool      `json:"registered"`
	Alive         bool      `json:"alive"`
	Revoked       bool      `json:"revoked"`
	Draining      bool      `json:"draining"`
	DrainingSince time.Time `json:"drainingSince,omitzero"`
	StopTasks     bool      `json:"stopTasks,omitempty"`
	// Address is where the host is reached: its underlay address when it
	// reported one, else the host part of its endpoint.
	Address     string   `json:"address,omitempty"`
	AccessKeyID string   `json:"accessKeyId,omitempty"`
	Runtimes    []string `json:"runtimes,omitempty"`
	// Capacity is the host's physical size; Allocated what its tasks that
	// are not STOPPED hold; Tasks how many they are.
	Capacity  HostResources `json:"capacity,omitzero"`
	Allocated HostResources `json:"allocated,omitzero"`
	Tasks     int           `json:"tasks"`
	// Slices are the host's shares of the fleet's subnets (empty until the
	// host has some).
	Slices        []agentproto.Slice `json:"slices,omitempty"`
	LastHeartbeat time.Time          `json:"lastHeartbeat,omitzero"`
	RegisteredAt  time.Time          `json:"registeredAt,omitzero"`
	RevokedAt     time.Time          `json:"revokedAt,omitzero"`
	LogsEndpoint  string             `json:"logsEndpoint,omitempty"`
	CredentialAge time.Time          `json:"credentialCreatedAt,omitzero"`
	// WarmPools are the host's warm sandbox pools as its agent last
	// reported them (--warm-pool), one per runtime with a pool.
	WarmPools []agentproto.WarmPool `json:"warmPools,omitempty"`
}

// HostResources is an amount of CPU (thousandths of a vCPU) and memory.
type HostResources struct {
	MilliCPU  int64 `json:"milliCPU"`
	MemoryMiB int64 `json:"memoryMiB"`
}

// HostTask is a task placed on a host, as `vessel host describe` lists it.
type HostTask struct {
	ID            string    `json:"id"`
	ARN           string    `json:"arn"`
	Cluster       string    `json:"cluster"`
	Group         string    `json:"group,omitempty"`
	LastStatus    string    `json:"lastStatus"`
	DesiredStatus string    `json:"desiredStatus"`
	IP            string    `json:"ip,omitempty"`
	MilliCPU      int64     `json:"milliCPU"`
	MemoryMiB     int64     `json:"memoryMiB"`
	CreatedAt     time.Time `json:"createdAt"`
}

// HostDetail is a host with its tasks, for `vessel host describe`.
type HostDetail struct {
	HostInfo
	// TaskList are the host's tasks that are not STOPPED, oldest first.
	TaskList []HostTask `json:"taskList"`
}

// hostDrains returns the draining hosts by ID.
func (s *Server) hostDrains(ctx context.Context) (map[string]hostDrain, error) {
	recs, _, _, err := listJSON[hostDrain](ctx, s.reads(ctx), prefixHostDrains)
	if err != nil {
		return nil, err
	}
	out := make(map[string]hostDrain, len(recs))
	for _, r := range recs {
		out[r.HostID] = r
	}
	return out, nil
}

// lastHeartbeat is when host id was last heard from, by this replica or
// (stored) any.
func (s *Server) lastHeartbeat(id string, stored map[string]time.Time) time.Time {
	s.hbMu.Lock()
	last := s.heartbeats[id]
	s.hbMu.Unlock()
	if at := stored[id]; at.After(last) {
		last = at
	}
	return last
}

// Hosts lists registered hosts, hosts with a credential, and revoked ones,
// with their state, capacity, what their tasks hold and their slices.
func (s *Server) Hosts(ctx context.Context) ([]HostInfo, error) {
	hs, _, err := s.hosts(ctx)
	return hs, err
}

// hosts is Hosts, with the tasks it counted.
func (s *Server) hosts(ctx context.Context) ([]HostInfo, []*task.Task, error) {
	by := map[string]*HostInfo{}
	get := func(id string) *HostInfo {
		if by[id] == nil {
			by[id] = &HostInfo{ID: id}
		}
		return by[id]
	}
	kvs, _, err := s.store.List(ctx, prefixHosts)
	if err != nil {
		return nil, nil, err
	}
	beats, err := s.storedHeartbeats(ctx)
	if err != nil {
		return nil, nil, err
	}
	drains, err := s.hostDrains(ctx)
	if err != nil {
		return nil, nil, err
	}
	tasks, _, err := s.tasks.snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := s.cfg.Now()
	for _, kv := range kvs {
		var h hostRecord
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		hi := get(h.ID)
		hi.Registered, hi.Alive, hi.Runtimes, hi.RegisteredAt, hi.LogsEndpoint = true, s.hostAlive(h.ID, now, beats), h.Runtimes, h.RegisteredAt, h.LogsEndpoint
		hi.Capacity = HostResources{MilliCPU: h.MilliCPU, MemoryMiB: h.MemoryMiB}
		hi.LastHeartbeat = s.lastHeartbeat(h.ID, beats)
		if h.Address.IsValid() {
			hi.Address = h.Address.String()
		}
		if hi.Address == "" && h.LogsEndpoint != "" {
			if u, err := url.Parse(h.LogsEndpoint); err == nil {
				hi.Address = u.Hostname()
			}
		}
	}
	pools, err := s.warmPools(ctx)
	if err != nil {
		return nil, nil, err
	}
	for id, ps := range pools {
		if hi := by[id]; hi != nil {
			hi.WarmPools = ps
		}
	}
	sliceRecs, _, err := s.listSlices(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	for _, r := range sliceRecs {
		if hi := by[r.HostID]; hi != nil {
			hi.Slices = append(hi.Slices, agentproto.Slice{Subnet: r.Subnet, CIDR: r.CIDR})
		}
	}
	revs, _, _, err := listJSON[revokedHost](ctx, s.store, prefixRevokedHosts)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range revs {
		hi := get(r.HostID)
		hi.Revoked, hi.RevokedAt = true, r.RevokedAt
	}
	keys, err := s.keyring.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range keys {
		if k.Policy == auth.PolicyHost && k.HostID != "" {
			hi := get(k.HostID)
			hi.AccessKeyID, hi.CredentialAge = k.AccessKeyID, k.CreatedAt
		}
	}
	for _, d := range drains {
		if hi := by[d.HostID]; hi != nil {
			hi.Draining, hi.DrainingSince, hi.StopTasks = true, d.Since, d.StopTasks
		}
	}
	for _, t := range tasks {
		if hi := by[t.HostID]; t.HostID != "" && hi != nil && !t.Stopped() {
			hi.Tasks++
			hi.Allocated.MilliCPU += t.MilliCPU()
			hi.Allocated.MemoryMiB += t.MemoryMiB
		}
	}
	out := make([]HostInfo, 0, len(by))
	for _, hi := range by {
		hi.State = hostState(hi)
		out = append(out, *hi)
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, tasks, nil
}

// hostState is a host's state from what Hosts gathered.
func hostState(hi *HostInfo) string {
	switch {
	case !hi.Registered && hi.Revoked:
		return HostRevoked
	case !hi.Registered:
		return HostNotRegistered
	case hi.Draining && hi.Tasks == 0:
		return HostDrained
	case !hi.Alive:
		return HostLost
	case hi.Draining:
		return HostDraining
	}
	return HostReady
}

// DescribeHost returns host id with its tasks that are not STOPPED.
func (s *Server) DescribeHost(ctx context.Context, id string) (HostDetail, error) {
	hs, tasks, err := s.hosts(ctx)
	if err != nil {
		return HostDetail{}, err
	}
	i := slices.IndexFunc(hs, func(h HostInfo) bool { return h.ID == id })
	if i < 0 {
		return HostDetail{}, unknownHost(id)
	}
	d := HostDetail{HostInfo: hs[i], TaskList: []HostTask{}}
	for _, t := range tasks {
		if t.HostID != id || t.Stopped() {
			continue
		}
		d.TaskList = append(d.TaskList, HostTask{ID: t.ID, ARN: t.ARN, Cluster: t.Cluster, Group: t.Group,
			LastStatus: string(t.LastStatus), DesiredStatus: string(t.DesiredStatus), IP: t.IP,
			MilliCPU: t.MilliCPU(), MemoryMiB: t.MemoryMiB, CreatedAt: t.CreatedAt})
	}
	slices.SortFunc(d.TaskList, func(a, b HostTask) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return d, nil
}

func unknownHost(id string) error {
	return errdefs.NotFound("host %q is unknown: it is not registered, has no credential and was not revoked (vessel host ls lists the hosts)", id)
}

// registeredHost checks that host id is registered.
func (s *Server) registeredHost(ctx context.Context, id string) error {
	_, err := s.store.Get(ctx, hostKey(id))
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("host %q is not registered (vessel host ls lists the hosts)", id)
	}
	return err
}

// DrainHost makes host id draining: no new placements; its service tasks
// are replaced elsewhere, then stopped; its standalone tasks are left to
// finish, or stopped when stopTasks. Draining a draining host again may
// add stopTasks (never removes it: undrain first).
func (s *Server) DrainHost(ctx context.Context, id string, stopTasks bool) error {
	if err := s.registeredHost(ctx, id); err != nil {
		return err
	}
	for {
		var d hostDrain
		rev, err := getJSON(ctx, s.store, prefixHostDrains+id, &d)
		switch {
		case errdefs.IsNotFound(err):
			d, rev = hostDrain{HostID: id, Since: s.cfg.Now()}, store.MustNotExist
		case err != nil:
			return err
		case d.StopTasks || !stopTasks:
			return nil // already so
		}
		d.StopTasks = d.StopTasks || stopTasks
		if _, err := putJSON(ctx, s.store, prefixHostDrains+id, d, rev); errdefs.IsConflict(err) || errdefs.IsAlreadyExists(err) {
			continue
		} else if err != nil {
			return err
		}
		s.log.Info("host draining", "host", id, "stop_tasks", d.StopTasks)
		s.notify()
		return nil
	}
}

// UndrainHost takes host id back into placement. A host that is not
// draining is refused (errdefs.ErrConflict), so that a typo is noticed.
func (s *Server) UndrainHost(ctx context.Context, id string) error {
	if err := s.registeredHost(ctx, id); err != nil {
		return err
	}
	err := s.store.Delete(ctx, prefixHostDrains+id, store.AnyRevision)
	if errdefs.IsNotFound(err) {
		return errdefs.Conflict("host %s is not draining: nothing to undo (vessel host drain %s drains it)", id, id)
	}
	if err != nil {
		return err
	}
	s.log.Info("host undrained", "host", id)
	s.notify()
	return nil
}

// RemoveHost removes host id: its registration, heartbeats, drain, its
// credential (it may come back only by joining with a new token, as after
// `vessel host revoke`) and its slices. Only a drained host (draining, no
// task that is not STOPPED) is removed, unless force: then its tasks are
// first stopped in the record (TerminationNotice), as those of a lost
// host.
func (s *Server) RemoveHost(ctx context.Context, id string, force bool) error {
	hs, _, err := s.hosts(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(hs, func(h HostInfo) bool { return h.ID == id })
	if i < 0 {
		return unknownHost(id)
	}
	h := hs[i]
	// Decide from the store, not the cache.
	tasks, _, err := s.freshTasks(ctx)
	if err != nil {
		return err
	}
	var live []*task.Task
	for _, t := range tasks {
		if t.HostID == id && !t.Stopped() {
			live = append(live, t)
		}
	}
	if !force {
		switch {
		case h.Registered && !h.Draining:
			return errdefs.Conflict("host %s is %s, not drained: drain it first (vessel host drain %s), or remove it at once with --force (its tasks are stopped)", id, h.State, id)
		case len(live) > 0:
			return errdefs.Conflict("host %s is draining but not empty: %d tasks are not STOPPED yet (%s); wait until `vessel host ls` shows it drained, drain with --stop-tasks to stop its standalone tasks, or remove it at once with --force",
				id, len(live), taskStates(live))
		}
	}
	now := s.cfg.Now()
	for _, t := range live {
		_, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
			if t.Stopped() {
				return false, nil
			}
			t.RequestStop(task.StopCodeTerminationNotice, fmt.Sprintf("Host %s was removed (vessel host rm --force); its tasks were stopped", id), now)
			return true, t.Advance(task.StatusStopped, now)
		})
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if h.AccessKeyID != "" || h.Registered {
		if _, err := putJSON(ctx, s.store, prefixRevokedHosts+id, revokedHost{HostID: id, RevokedAt: now}, store.AnyRevision); err != nil {
			return err
		}
	}
	if h.AccessKeyID != "" {
		if err := s.keyring.Delete(ctx, h.AccessKeyID); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	for _, key := range []string{hostKey(id), prefixHeartbeats + id, prefixHostDrains + id, prefixWarmPools + id} {
		if err := s.store.Delete(ctx, key, store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	s.hbMu.Lock()
	delete(s.heartbeats, id)
	delete(s.hbStored, id)
	s.hbMu.Unlock()
	// Its tasks are STOPPED in the record and its registration is gone:
	// its slices go back to the fleet (slices.go).
	if err := s.ReleaseHostSlices(ctx, id); err != nil {
		return fmt.Errorf("host %s is removed, but its subnet slices were not released: %w", id, err)
	}
	s.log.Warn("host removed", "host", id, "force", force, "tasks_stopped", len(live))
	s.notify()
	return nil
}

// taskStates summarizes tasks as "3 RUNNING, 1 PENDING".
func taskStates(ts []*task.Task) string {
	n := map[task.Status]int{}
	var order []task.Status
	for _, t := range ts {
		if n[t.LastStatus] == 0 {
			order = append(order, t.LastStatus)
		}
		n[t.LastStatus]++
	}
	var parts []string
	for _, st := range order {
		parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
	}
	return strings.Join(parts, ", ")
}

// stopOnDrainingHost stops a standalone task (not a service's) on a host
// drained with --stop-tasks, as ECS's instance termination does
// (TerminationNotice); the agent stops it gracefully.
func (s *Server) stopOnDrainingHost(ctx context.Context, t *task.Task, now time.Time) error {
	if strings.HasPrefix(t.Group, ServiceGroupPrefix) || t.DesiredStatus == task.StatusStopped {
		return nil
	}
	_, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
		return t.RequestStop(task.StopCodeTerminationNotice,
			fmt.Sprintf("Host %s is draining (vessel host drain --stop-tasks); its tasks are stopped", t.HostID), now), nil
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err == nil {
		s.log.Info("task stopped: its host drains with --stop-tasks", "task", t.ID, "host", t.HostID)
	}
	return err
}

// routeHosts serves the host maintenance routes.
func (s *Server) routeHosts(mux *http.ServeMux) {
	op := func(r *http.Request, action string) { s.metrics.setOperation(r, action) }
	mux.HandleFunc("GET /vessel/v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:ListHosts")
		hs, err := s.Hosts(r.Context())
		writeAgent(w, map[string]any{"hosts": hs}, err)
	})
	mux.HandleFunc("GET /vessel/v1/hosts/{id}", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:DescribeHost")
		d, err := s.DescribeHost(r.Context(), r.PathValue("id"))
		writeAgent(w, d, err)
	})
	mux.HandleFunc("POST /vessel/v1/hosts/{id}/drain", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:DrainHost")
		var in struct {
			StopTasks bool `json:"stopTasks"`
		}
		if r.ContentLength != 0 && !decodeAgent(w, r, &in) {
			return
		}
		writeAgent(w, nil, s.DrainHost(r.Context(), r.PathValue("id"), in.StopTasks))
	})
	mux.HandleFunc("POST /vessel/v1/hosts/{id}/undrain", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:UndrainHost")
		writeAgent(w, nil, s.UndrainHost(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("DELETE /vessel/v1/hosts/{id}", func(w http.ResponseWriter, r *http.Request) {
		op(r, "vessel:RemoveHost")
		force := false
		if v := r.URL.Query().Get("force"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				writeAgent(w, nil, errdefs.InvalidArgument("force=%q is not accepted: give true or false", v))
				return
			}
			force = b
		}
		writeAgent(w, nil, s.RemoveHost(r.Context(), r.PathValue("id"), force))
	})
}
