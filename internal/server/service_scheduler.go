package server

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/service"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// The service scheduler keeps each service's desired count of tasks
// running. It runs in every controller pass, after the task cache has
// caught up with the store: service.Compute plans each service (a service
// and its tasks in, a result out, no I/O) and reconcileServices applies the
// results, writing the service first (with a revision check) and then the
// tasks it starts and stops. Nothing it decides is kept in memory: a
// restarted server plans again from the stored service and tasks. The
// hosts being drained (host_admin.go) are an input of each plan: a
// service's tasks on them are started elsewhere, then stopped, within its
// minimumHealthyPercent and maximumPercent.

// ServiceThrottle is the service throttle's configuration (Config).
type ServiceThrottle = service.Throttle

// reconcileServices runs the service scheduler over every service, from the
// controller's pass (tasks is the caught-up task cache, drains the hosts
// being drained: their service tasks are replaced elsewhere).
func (s *Server) reconcileServices(ctx context.Context, drains map[string]hostDrain, now time.Time) error {
	kvs, _, err := s.reads(ctx).List(ctx, prefixServices)
	if err != nil {
		return err
	}
	if len(kvs) == 0 {
		return nil
	}
	var draining map[string]bool
	if len(drains) > 0 {
		draining = make(map[string]bool, len(drains))
		for id := range drains {
			draining[id] = true
		}
	}
	unplaced := func(id string) string {
		s.unplacedMu.Lock()
		defer s.unplacedMu.Unlock()
		return s.unplaced[id]
	}
	for _, kv := range kvs {
		var rec serviceRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			s.log.Error("service record is unreadable", "key", kv.Key, "err", err)
			continue
		}
		if rec.Status == service.StatusInactive {
			if now.Sub(rec.StatusChangedAt) > s.cfg.StoppedTaskRetention {
				if err := s.store.Delete(ctx, kv.Key, kv.Revision); err != nil && !errdefs.IsConflict(err) && !errdefs.IsNotFound(err) {
					return err
				}
			}
			continue
		}
		plan := service.Compute(service.Input{Service: &rec, Tasks: s.tasks.serviceTasks(rec.Cluster, ServiceGroupPrefix+rec.Name),
			Now: now, Unplaced: unplaced, NewTaskID: newID, DrainingHosts: draining,
			Limits: service.Limits{LaunchBudget: s.launches.available(now), Throttle: s.cfg.ServiceThrottle}})
		// The launches take their tokens before anything is stored; a
		// RunTask that took them meanwhile leaves the service to the next
		// pass, which plans again from the store.
		if !s.launches.take(len(plan.Launch), now) {
			s.metrics.throttled.WithLabelValues("service_launch").Inc()
			continue
		}
		if err := s.applyServicePlan(ctx, kv, plan, now); err != nil {
			return err
		}
	}
	return nil
}

// applyServicePlan stores the service, then starts and stops its tasks. A
// service changed meanwhile (UpdateService) is left for the next pass.
func (s *Server) applyServicePlan(ctx context.Context, kv store.KV, p service.Result, now time.Time) error {
	r := p.Record
	if p.Changed {
		_, err := putJSON(ctx, s.store, kv.Key, r, kv.Revision)
		if errdefs.IsConflict(err) || errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	for _, st := range p.Stop {
		_, err := s.updateTask(ctx, st.TaskID, func(t *task.Task) (bool, error) {
			return t.RequestStop(task.StopCodeServiceSchedulerInitiated, st.Reason, now), nil
		})
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if len(p.Launch) == 0 {
		return nil
	}
	defs := map[string]*taskDefRecord{}
	cl, err := s.getCluster(ctx, r.Cluster)
	if err != nil {
		return err
	}
	for _, l := range p.Launch {
		def := defs[l.TaskDefinition]
		if def == nil {
			if def, _, err = s.getTaskDef(ctx, l.TaskDefinition); err != nil {
				s.log.Error("service cannot launch a task", "service", r.Name, "cluster", r.Cluster, "taskDefinition", l.TaskDefinition, "err", err)
				return nil
			}
			defs[l.TaskDefinition] = def
		}
		t, err := s.serviceTask(r, cl, def, l, now)
		if err != nil {
			s.log.Error("service cannot launch a task", "service", r.Name, "cluster", r.Cluster, "err", err)
			return nil
		}
		if _, err := putJSON(ctx, s.store, taskKey(t.ID), t, store.MustNotExist); err != nil {
			return err
		}
		s.metrics.tasksLaunched.Inc()
		s.metrics.observeTask(t)
	}
	return nil
}

// serviceTask makes one task of a service's deployment, as RunTask would:
// startedBy is the deployment's ID and group "service:<name>".
func (s *Server) serviceTask(r *serviceRecord, cl *clusterRecord, def *taskDefRecord, l service.Launch, now time.Time) (*task.Task, error) {
	t, err := s.resolveTask(&def.Def, nil)
	if err != nil {
		return nil, err
	}
	t.Cluster = r.Cluster
	t.Subnets = l.Subnets
	t.StartedBy = l.Deployment
	t.Group = ServiceGroupPrefix + r.Name
	if s.cfg.TaskDNS != nil {
		// As RunTask's: the control plane's DNS server and the cluster's zone.
		t.DNS = s.cfg.TaskDNS(r.Cluster)
		if err := t.DNS.Validate(); err != nil {
			return nil, err
		}
	}
	defTags, _ := tagsFromAPI(def.Tags) // checked when the definition was registered
	switch r.PropagateTags {
	case "SERVICE":
		t.Tags = slices.Clone(r.Tags)
	case "TASK_DEFINITION":
		t.Tags = defTags
	}
	if t.Runtime, err = task.ResolveRuntime(r.Tags, defTags, cl.Tags); err != nil {
		return nil, err
	}
	return task.New(t, l.TaskID, s.taskARN(r.Cluster, l.TaskID), now)
}
