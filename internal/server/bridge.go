package server

import (
	"context"
	"slices"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/profile"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// This file is the control plane's Go API for the Kubernetes bridge that
// runs in the same process (`vessel server --kubeconfig`): the bridge
// builds whole tasks from pods (volumes, init containers, probes) that the
// ECS API cannot express, so it hands them over as task.Task values.

// FargateProfile is what the bridge needs of a stored profile.
type FargateProfile struct {
	Cluster   string
	Name      string
	Selectors []profile.Selector
	Subnets   []string
	Tags      map[string]string
	// Status is CREATING, ACTIVE or DELETING.
	Status    string
	CreatedAt time.Time
}

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
// timestamps, and returns the stored task.
func (s *Server) SubmitTask(ctx context.Context, t *task.Task) (*task.Task, error) {
	if t.Cluster == "" {
		t.Cluster = DefaultCluster
	}
	if _, err := s.getCluster(ctx, t.Cluster); err != nil {
		return nil, err
	}
	if t.Runtime != "" && !slices.Contains(Runtimes, t.Runtime) {
		return nil, errdefs.InvalidArgument("runtime %q is not known: the runtimes are %s", t.Runtime, strings.Join(Runtimes, ", "))
	}
	for _, sn := range t.Subnets {
		if !slices.Contains(s.cfg.Subnets, sn) {
			return nil, errdefs.InvalidArgument("subnet %q is not known: the subnets are %s", sn, strings.Join(s.cfg.Subnets, ", "))
		}
	}
	if len(t.Containers) == 0 {
		return nil, errdefs.InvalidArgument("a task needs at least one container")
	}
	if err := sizing.ValidateTask(t.CPUUnits, t.MemoryMiB); err != nil {
		return nil, err
	}
	t = t.Clone()
	now := s.cfg.Now()
	t.ID = newID()
	t.ARN = s.taskARN(t.Cluster, t.ID)
	t.LastStatus = task.StatusProvisioning
	t.DesiredStatus = task.StatusRunning
	t.CreatedAt = now
	t.Version = 1
	if t.Group == "" && t.Family != "" {
		t.Group = "family:" + t.Family
	}
	for j := range t.Containers {
		t.Containers[j].LastStatus = task.StatusPending
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

// TaskSnapshot returns copies of every task the control plane holds, from
// its cache of the store.
func (s *Server) TaskSnapshot(ctx context.Context) ([]*task.Task, error) {
	ts, _, err := s.tasks.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*task.Task, len(ts))
	for i, t := range ts {
		out[i] = t.Clone()
	}
	return out, nil
}

// Changes returns a channel closed at the next change of any task or host.
func (s *Server) Changes() <-chan struct{} { return s.pulseChan() }

// HostAlive reports whether the host has sent a heartbeat within the host
// timeout.
func (s *Server) HostAlive(hostID string) bool { return s.hostAlive(hostID, s.cfg.Now()) }
