package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// This file is the control plane's Go API for the Kubernetes bridge that
// runs in the same process (`vessel server --kubeconfig`): the bridge
// builds whole tasks from pods (volumes, init containers, probes) that the
// ECS API cannot express, so it hands them over as task.Task values.

// FargateProfile is what the bridge needs of a stored profile.
type FargateProfile = agentproto.FargateProfile

// FargateProfiles returns the profiles of an EKS cluster, in name order.
func (s *Server) FargateProfiles(ctx context.Context, cluster string) ([]FargateProfile, error) {
	recs, _, _, err := listJSON[profileRecord](ctx, s.store, prefixProfiles+cluster+"/")
	if err != nil {
		return nil, err
	}
	out := make([]FargateProfile, 0, len(recs))
	for _, r := range recs {
		if r.Cluster != cluster {
			continue
		}
		out = append(out, FargateProfile{Cluster: r.Cluster, Name: r.Name, Selectors: profileSelectors(r.Selectors),
			Subnets: r.Subnets, Tags: r.Tags, Status: r.Status, CreatedAt: r.CreatedAt})
	}
	slices.SortFunc(out, func(a, b FargateProfile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SubmitTask stores t as a new task of its cluster, as RunTask does for a
// task definition: it checks the cluster, the runtime and the subnets,
// validates the containers, gives the task its ID, ARN, status and
// timestamps, and returns the stored task. It takes a token of the launch
// bucket (LaunchRate), as a Fargate pod does: an empty bucket is an
// errdefs.ErrLimitExceeded error, and the bridge tries the pod again.
func (s *Server) SubmitTask(ctx context.Context, t *task.Task) (*task.Task, error) {
	if t.Cluster == "" {
		t.Cluster = DefaultCluster
	}
	if _, err := s.getCluster(ctx, t.Cluster); err != nil {
		return nil, err
	}
	for _, sn := range t.Subnets {
		if !slices.Contains(s.cfg.Subnets, sn) {
			return nil, errdefs.InvalidArgument("subnet %q is not known: the subnets are %s", sn, strings.Join(s.cfg.Subnets, ", "))
		}
	}
	if err := sizing.ValidateTask(t.CPUUnits, t.MemoryMiB); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	id := newID()
	t, err := task.New(t, id, s.taskARN(t.Cluster, id), now)
	if err != nil {
		return nil, err
	}
	if !s.launches.take(1, now) {
		s.metrics.throttled.WithLabelValues("launch").Inc()
		return nil, errdefs.LimitExceeded("%s: the control plane launches at most %g tasks a second (burst %d); retry later",
			RateExceeded, s.cfg.LaunchRate, s.cfg.LaunchBurst)
	}
	if _, err := putJSON(ctx, s.store, taskKey(t.ID), t, store.MustNotExist); err != nil {
		return nil, err
	}
	s.metrics.tasksLaunched.Inc()
	s.notify()
	return t, nil
}

// StopTaskWith asks a task to stop with the given stop code and reason; a
// task already stopping keeps its first reason. A missing task is an
// errdefs.ErrNotFound.
func (s *Server) StopTaskWith(ctx context.Context, cluster, id, code, reason string) error {
	_, err := s.updateTask(ctx, id, func(t *task.Task) (bool, error) {
		if t.Cluster != cluster {
			return false, errdefs.NotFound("task %s is not in cluster %s", id, cluster)
		}
		return t.RequestStop(code, reason, s.cfg.Now()), nil
	})
	if err == nil {
		s.notify()
	}
	return err
}

// TaskSnapshot returns copies of every task the control plane holds, as
// fresh as the store (freshTasks): a bridge that starts with a term of
// leadership adopts every task a former leader submitted, however far
// this replica's cache lags.
func (s *Server) TaskSnapshot(ctx context.Context) ([]*task.Task, error) {
	ts, _, err := s.freshTasks(ctx)
	return cloneTasks(ts), err
}

func cloneTasks(ts []*task.Task) []*task.Task {
	if ts == nil {
		return nil
	}
	out := make([]*task.Task, len(ts))
	for i, t := range ts {
		out[i] = t.Clone()
	}
	return out
}

// Changes returns a channel closed at the next change of any task or host.
func (s *Server) Changes() <-chan struct{} { return s.pulseChan() }

// HostAlive reports whether the host has sent a heartbeat, to this replica
// or (stored) to any, within the host timeout.
func (s *Server) HostAlive(hostID string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stored map[string]time.Time
	var hb heartbeatRecord
	if _, err := getJSON(ctx, s.store, prefixHeartbeats+hostID, &hb); err == nil {
		stored = map[string]time.Time{hostID: hb.At}
	}
	return s.hostAlive(hostID, s.cfg.Now(), stored)
}

// bridgeLongPoll bounds how long a task watch waits for a change; hosts'
// heartbeats are no store changes, so it is also how late a remote bridge
// may learn that a host went silent.
const bridgeLongPoll = 10 * time.Second

// routeBridge serves the bridge protocol (agentproto's bridge routes) for
// a Kubernetes bridge running apart from the control plane.
func (s *Server) routeBridge(mux *http.ServeMux) {
	mux.HandleFunc("GET /vessel/v1/clusters/{cluster}/fargate-profiles", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:BridgeProfiles")
		ps, err := s.FargateProfiles(r.Context(), r.PathValue("cluster"))
		writeAgent(w, ps, err)
	})
	mux.HandleFunc("POST /vessel/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:SubmitTask")
		var t task.Task
		if !decodeAgent(w, r, &t) {
			return
		}
		out, err := s.SubmitTask(r.Context(), &t)
		writeAgent(w, out, err)
	})
	mux.HandleFunc("POST /vessel/v1/clusters/{cluster}/tasks/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:StopTaskWith")
		var in agentproto.StopRequest
		if !decodeAgent(w, r, &in) {
			return
		}
		if err := task.ValidateStopReason(in.Reason); err != nil {
			writeAgent(w, nil, err)
			return
		}
		err := s.StopTaskWith(r.Context(), r.PathValue("cluster"), taskID(r.PathValue("id")), in.Code, in.Reason)
		writeAgent(w, struct{}{}, err)
	})
	mux.HandleFunc("GET /vessel/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:WatchTasks")
		q := r.URL.Query()
		after, err := strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil && q.Get("after") != "" {
			writeAgent(w, nil, errdefs.InvalidArgument("after %q is not a revision", q.Get("after")))
			return
		}
		out, err := s.watchTasks(r.Context(), q.Get("cluster"), q.Get("startedBy"), after)
		writeAgent(w, out, err)
	})
}

// watchTasks waits until the task cache has moved past revision after (or
// the long poll ends) and returns the matching tasks and the hosts' state.
func (s *Server) watchTasks(ctx context.Context, cluster, startedBy string, after int64) (agentproto.TaskWatch, error) {
	if cluster == "" {
		cluster = DefaultCluster
	}
	if after <= 0 {
		// A bridge's first watch (it adopts what it finds) is answered as
		// fresh as the store, however far this replica's cache lags.
		ts, rev, err := s.freshTasks(ctx)
		if err != nil {
			return agentproto.TaskWatch{}, err
		}
		if rev > after {
			return s.bridgeWatch(ts, cluster, startedBy, rev), nil
		}
	}
	deadline := time.NewTimer(bridgeLongPoll)
	defer deadline.Stop()
	for {
		pulse := s.pulseChan()
		ts, rev, err := s.tasks.snapshot(ctx)
		if err != nil {
			return agentproto.TaskWatch{}, err
		}
		if rev > after {
			return s.bridgeWatch(ts, cluster, startedBy, rev), nil
		}
		select {
		case <-ctx.Done():
			return agentproto.TaskWatch{}, ctx.Err()
		case <-deadline.C:
			if after > rev {
				// A bridge that moved here from another replica saw a
				// newer revision than this cache reached: answer from the
				// store, never with an older set.
				ts, _, err := s.storeTasks(ctx)
				if err != nil {
					return agentproto.TaskWatch{}, err
				}
				return s.bridgeWatch(ts, cluster, startedBy, after), nil
			}
			after = -1 // answer with what there is
		case <-pulse:
		}
	}
}

// bridgeWatch is the answer of the task watch for cluster and startedBy
// from tasks, as of revision rev.
func (s *Server) bridgeWatch(ts []*task.Task, cluster, startedBy string, rev int64) agentproto.TaskWatch {
	out := agentproto.TaskWatch{Revision: rev, Tasks: []task.Task{}, Hosts: map[string]bool{}}
	for _, t := range ts {
		if t.Cluster == cluster && (startedBy == "" || t.StartedBy == startedBy) {
			out.Tasks = append(out.Tasks, *t.Clone())
			if t.HostID != "" {
				out.Hosts[t.HostID] = s.HostAlive(t.HostID)
			}
		}
	}
	return out
}
