package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// The service scheduler keeps each service's desired count of tasks
// running. It runs in every controller pass, after the task cache has
// caught up with the store: planService is pure (a service and its tasks in,
// a plan out) and reconcileServices applies the plans, writing the service
// first (with a revision check) and then the tasks it starts and stops.
// Nothing it decides is kept in memory: a restarted server plans again from
// the stored service and tasks.

// UnplacedEventInterval is how often the same "unable to place a task"
// event may be repeated.
const UnplacedEventInterval = time.Minute

// servicePlan is what one pass does to a service.
type servicePlan struct {
	record  *serviceRecord // the service to store, when changed
	changed bool
	launch  []serviceLaunch
	stop    []serviceStop
}

type serviceLaunch struct {
	taskID     string
	deployment string
	taskDef    string
	subnets    []string
}

type serviceStop struct {
	taskID string
	reason string
}

// ServiceStablePeriod is how long a deployment's tasks must have been
// RUNNING (and healthy) before the deployment completes and the service is
// in a steady state, so that a container that exits at once is seen to fail
// rather than to succeed.
const ServiceStablePeriod = time.Second

// maxCountedFailures bounds a deployment's list of failed tasks: the
// largest circuit breaker threshold.
const maxCountedFailures = 200

// circuitBreakerThreshold is how many tasks of a deployment may fail before
// its circuit breaker trips: min(max(10, desired/2), 200), as ECS.
func circuitBreakerThreshold(desired int32) int {
	return min(max(10, int(desired+1)/2), 200)
}

// taskHealthy reports whether a task counts as healthy for a deployment:
// RUNNING, and every essential container with a health check HEALTHY.
func taskHealthy(t *task.Task) bool {
	if t.LastStatus != task.StatusRunning {
		return false
	}
	for _, c := range t.Containers {
		if c.Essential && c.HealthCheck != nil && c.HealthStatus != task.HealthHealthy {
			return false
		}
	}
	return true
}

// taskFailed reports whether a stopped task counts against its deployment:
// it failed to start or its essential container exited.
func taskFailed(t *task.Task) bool {
	return t.Stopped() && (t.StopCode == task.StopCodeTaskFailedToStart || t.StopCode == task.StopCodeEssentialContainerExited)
}

// ServiceThrottle is ECS's service throttle logic: when a service's tasks
// keep stopping before they reach RUNNING, the scheduler waits longer and
// longer before it launches the next ones, and says so in an event. A task
// that reaches RUNNING, or a new deployment, ends it. Tasks that stop after
// RUNNING (an exit, a failed health check) do not count, as in ECS.
type ServiceThrottle struct {
	// After is how many tasks in a row must fail to start before the first
	// delay; 3 by default.
	After int
	// Delay is the first delay, doubled for each later launch round whose
	// tasks fail again; 10 s by default.
	Delay time.Duration
	// MaxDelay caps the delay; 27 min by default (or Delay, if longer),
	// ECS's documented maximum.
	MaxDelay time.Duration
}

// Service throttle defaults.
const (
	DefaultServiceThrottleAfter    = 3
	DefaultServiceThrottleDelay    = 10 * time.Second
	DefaultServiceThrottleMaxDelay = 27 * time.Minute
)

func (c *ServiceThrottle) fill() error {
	if c.After < 0 || c.Delay < 0 || c.MaxDelay < 0 {
		return errdefs.InvalidArgument("server: ServiceThrottle %+v must not be negative (0: the default)", *c)
	}
	if c.After == 0 {
		c.After = DefaultServiceThrottleAfter
	}
	if c.Delay == 0 {
		c.Delay = DefaultServiceThrottleDelay
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = max(DefaultServiceThrottleMaxDelay, c.Delay)
	}
	if c.MaxDelay < c.Delay {
		return errdefs.InvalidArgument("server: ServiceThrottle.MaxDelay %v is shorter than its Delay %v", c.MaxDelay, c.Delay)
	}
	return nil
}

// delay is the wait of the level-th round (1, 2, ...): Delay doubled
// level-1 times, at most MaxDelay.
func (c ServiceThrottle) delay(level int) time.Duration {
	d := c.Delay
	for i := 1; i < level && d < c.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// launchThrottle is a service's service-throttle state, stored with it so
// that a restarted control plane keeps waiting.
type launchThrottle struct {
	// Level is how many delays the current streak of failures has caused;
	// 0 when the service is not throttled.
	Level int `json:"level,omitempty"`
	// Since opens the window of launches looked at: the primary
	// deployment's tasks created at or after it.
	Since time.Time `json:"since,omitzero"`
	// Until is when the scheduler may launch again.
	Until time.Time `json:"until,omitzero"`
}

// taskFailedToStart reports whether a stopped task never reached RUNNING
// for a reason of its own (not a stop asked by a user or the scheduler).
func taskFailedToStart(t *task.Task) bool {
	return t.Stopped() && t.StartedAt.IsZero() &&
		(t.StopCode == task.StopCodeTaskFailedToStart || t.StopCode == task.StopCodeEssentialContainerExited)
}

// planLimits bound what one pass may do.
type planLimits struct {
	// launchBudget is how many tasks the pass may launch (the launch
	// bucket's tokens); negative means no limit.
	launchBudget int
	throttle     ServiceThrottle
}

// noPlanLimits are the defaults with no launch limit.
func noPlanLimits() planLimits {
	l := planLimits{launchBudget: -1}
	l.throttle.fill()
	return l
}

// planService decides one pass for a service from its tasks (those of its
// group and cluster). unplaced returns why a pending task could not be
// placed, or "". It does no I/O and does not modify its inputs.
func planService(in *serviceRecord, tasks []*task.Task, now time.Time, unplaced func(id string) string, lim planLimits) servicePlan {
	r := in.clone()
	p := servicePlan{record: r}
	name := r.Name
	changed := false

	tasks = slices.Clone(tasks)
	sort.Slice(tasks, func(i, j int) bool { // oldest first, stably
		if !tasks[i].CreatedAt.Equal(tasks[j].CreatedAt) {
			return tasks[i].CreatedAt.Before(tasks[j].CreatedAt)
		}
		return tasks[i].ID < tasks[j].ID
	})
	depIndex := func(id string) int {
		for i := range r.Deployments {
			if r.Deployments[i].ID == id {
				return i
			}
		}
		return -1
	}
	live := func(t *task.Task) bool { return !t.Stopped() && t.DesiredStatus == task.StatusRunning }
	stopping := map[string]bool{}
	stopTask := func(t *task.Task, reason string) {
		if !stopping[t.ID] {
			stopping[t.ID] = true
			p.stop = append(p.stop, serviceStop{taskID: t.ID, reason: reason})
		}
	}
	grace := time.Duration(deref(r.HealthCheckGracePeriodSeconds)) * time.Second

	// Failures: tasks that failed to start or exited, and tasks whose health
	// check fails, count against an IN_PROGRESS deployment.
	for _, t := range tasks {
		i := depIndex(t.StartedBy)
		counts := i >= 0 && r.Deployments[i].RolloutState == RolloutInProgress && !slices.Contains(r.Deployments[i].Failed, t.ID)
		if live(t) && t.LastStatus == task.StatusRunning && taskHealth(t) == api.HealthStatusUnhealthy && now.Sub(t.StartedAt) >= grace {
			stopTask(t, "Task failed container health checks")
		} else if !taskFailed(t) {
			continue
		}
		if counts && len(r.Deployments[i].Failed) < maxCountedFailures {
			d := &r.Deployments[i]
			d.Failed = append(d.Failed, t.ID)
			d.UpdatedAt = now
			changed = true
		}
	}

	// The circuit breaker.
	if len(r.Deployments) > 0 && r.CircuitBreaker.Enable {
		d := &r.Deployments[0]
		if d.RolloutState == RolloutInProgress && len(d.Failed) >= circuitBreakerThreshold(r.DesiredCount) {
			failedID := d.ID
			d.RolloutState = RolloutFailed
			d.RolloutStateReason = "ECS deployment circuit breaker: tasks failed to start."
			d.UpdatedAt = now
			r.addEvent(now, "(service %s) (deployment %s) deployment failed: tasks failed to start.", name, failedID)
			changed = true
			if r.CircuitBreaker.Rollback && r.StableTaskDefinition != "" && r.StableTaskDefinition != d.TaskDefinition {
				stable := r.StableDeployment
				r.newDeployment(r.StableTaskDefinition, now, "ECS deployment circuit breaker: rolling back to deploymentId "+stable+".")
				r.addEvent(now, "(service %s) rolling back to deployment %s.", name, stable)
			}
		}
	}

	desired := r.DesiredCount
	if r.Status != api.ServiceStatusActive {
		desired = 0
	}
	if len(r.Deployments) == 0 {
		r.newDeployment(r.TaskDefinition, now, "")
		changed = true
	}
	primary := &r.Deployments[0]

	// The service throttle, over the primary's tasks launched since the
	// window opened: one that reached RUNNING ends a streak of failures;
	// After failures start the first delay, and each later round that
	// fails again doubles it.
	th := &r.Throttle
	failedN, startedN := 0, 0
	for _, t := range tasks {
		if t.StartedBy != primary.ID || t.CreatedAt.Before(th.Since) {
			continue
		}
		if taskFailedToStart(t) {
			failedN++
		} else if !t.StartedAt.IsZero() {
			startedN++
		}
	}
	switch {
	case startedN > 0 && (th.Level > 0 || failedN > 0):
		*th = launchThrottle{Since: now}
		changed = true
	case failedN > 0 && (th.Level > 0 || failedN >= lim.throttle.After):
		th.Level++
		th.Since = now
		th.Until = now.Add(lim.throttle.delay(th.Level))
		r.addEvent(now, "(service %s) is unable to consistently start tasks successfully.", name)
		changed = true
	}
	throttled := now.Before(th.Until)

	// Sort the live tasks: the primary deployment's and the others'.
	var prim, old []*task.Task
	for _, t := range tasks {
		if !live(t) || stopping[t.ID] {
			continue
		}
		if t.StartedBy == primary.ID {
			prim = append(prim, t)
		} else {
			old = append(old, t)
		}
	}
	healthyOf := func(ts []*task.Task) int {
		n := 0
		for _, t := range ts {
			if taskHealthy(t) {
				n++
			}
		}
		return n
	}
	var started, stoppedRunning []string

	// Scale in the primary: pending tasks first, then the newest.
	if surplus := len(prim) - int(desired); surplus > 0 {
		order := slices.Clone(prim)
		sort.SliceStable(order, func(i, j int) bool {
			hi, hj := taskHealthy(order[i]), taskHealthy(order[j])
			if hi != hj {
				return !hi
			}
			return order[i].CreatedAt.After(order[j].CreatedAt)
		})
		for _, t := range order[:surplus] {
			stopTask(t, "Scaling activity initiated by (deployment "+primary.ID+")")
			if t.LastStatus == task.StatusRunning {
				stoppedRunning = append(stoppedRunning, t.ID)
			}
		}
		prim = slices.DeleteFunc(prim, func(t *task.Task) bool { return stopping[t.ID] })
	}

	// Drain older deployments, keeping minimumHealthyPercent of desired
	// healthy: tasks that are not healthy go at once.
	minHealthy := int((int64(desired)*int64(r.MinimumHealthyPercent) + 99) / 100)
	maxTotal := int(int64(desired) * int64(r.MaximumPercent) / 100)
	if primary.RolloutState != RolloutFailed || r.Status != api.ServiceStatusActive {
		healthy := healthyOf(prim) + healthyOf(old)
		for _, t := range old {
			if taskHealthy(t) {
				if healthy <= minHealthy {
					continue
				}
				healthy--
			}
			stopTask(t, "Scaling activity initiated by (deployment "+primary.ID+")")
			if t.LastStatus == task.StatusRunning {
				stoppedRunning = append(stoppedRunning, t.ID)
			}
		}
		old = slices.DeleteFunc(old, func(t *task.Task) bool { return stopping[t.ID] })
	}

	// Launch the primary's missing tasks within maximumPercent.
	if primary.RolloutState != RolloutFailed && r.Status == api.ServiceStatusActive && !throttled {
		n := min(int(desired)-len(prim), maxTotal-len(prim)-len(old))
		if lim.launchBudget >= 0 {
			n = min(n, lim.launchBudget)
		}
		for i := 0; i < n; i++ {
			id := newID()
			p.launch = append(p.launch, serviceLaunch{taskID: id, deployment: primary.ID,
				taskDef: primary.TaskDefinition, subnets: slices.Clone(primary.Subnets)})
			started = append(started, id)
		}
	}

	if len(started) > 0 {
		r.addEvent(now, "(service %s) has started %d tasks: %s.", name, len(started), taskList(started))
		r.Steady = false
		changed = true
	}
	if len(stoppedRunning) > 0 {
		r.addEvent(now, "(service %s) has stopped %d running tasks: %s.", name, len(stoppedRunning), taskList(stoppedRunning))
		r.Steady = false
		changed = true
	}

	// Why pending tasks wait, at most once a minute for the same reason.
	for _, t := range prim {
		why := unplaced(t.ID)
		if why == "" || t.HostID != "" {
			continue
		}
		if why != r.LastUnplaced || now.Sub(r.LastUnplacedAt) >= UnplacedEventInterval {
			r.addEvent(now, "(service %s) was unable to place a task because no host met all of its requirements. Reason: %s.", name, why)
			r.LastUnplaced, r.LastUnplacedAt = why, now
			changed = true
		}
		break
	}

	// Drop older deployments that have nothing left running.
	oldAlive := map[string]bool{}
	for _, t := range tasks {
		if !t.Stopped() && t.StartedBy != primary.ID {
			oldAlive[t.StartedBy] = true
		}
	}
	kept := r.Deployments[:1]
	for _, d := range r.Deployments[1:] {
		if oldAlive[d.ID] {
			kept = append(kept, d)
		} else {
			changed = true
		}
	}
	r.Deployments = kept
	primary = &r.Deployments[0]

	// Completion: the primary holds every desired task, healthy for
	// ServiceStablePeriod, and nothing older is left.
	healthyPrim := 0
	for _, t := range prim {
		if taskHealthy(t) && now.Sub(t.StartedAt) >= ServiceStablePeriod {
			healthyPrim++
		}
	}
	if primary.RolloutState == RolloutInProgress && len(prim) == int(desired) && healthyPrim == int(desired) &&
		len(oldAlive) == 0 && len(p.launch) == 0 && r.Status == api.ServiceStatusActive {
		primary.RolloutState = RolloutCompleted
		primary.RolloutStateReason = "ECS deployment " + primary.ID + " completed."
		primary.UpdatedAt = now
		r.StableDeployment, r.StableTaskDefinition = primary.ID, primary.TaskDefinition
		r.addEvent(now, "(service %s) (deployment %s) deployment completed.", name, primary.ID)
		changed = true
	}
	steady := r.Status == api.ServiceStatusActive && primary.RolloutState == RolloutCompleted && len(r.Deployments) == 1 &&
		len(prim) == int(desired) && healthyPrim == int(desired) && len(p.launch) == 0 && len(p.stop) == 0
	if steady && !r.Steady {
		r.addEvent(now, "(service %s) has reached a steady state.", name)
		r.Steady = true
		changed = true
	} else if !steady && r.Steady {
		r.Steady = false
		changed = true
	}

	// A deleted service is INACTIVE once its tasks have stopped.
	if r.Status == api.ServiceStatusDraining {
		busy := false
		for _, t := range tasks {
			busy = busy || !t.Stopped()
		}
		if !busy {
			r.Status = api.ServiceStatusInactive
			r.StatusChangedAt = now
			changed = true
		}
	}
	p.changed = changed
	return p
}

// spreadKey is the scheduler's spread key of a task: the tasks of one
// service are spread across its subnets and hosts; others are not spread.
func spreadKey(t *task.Task) string {
	if strings.HasPrefix(t.Group, ServiceGroupPrefix) && t.StopCode == "" {
		return t.Cluster + "/" + t.Group
	}
	return ""
}

// taskList writes task IDs as ECS's events do, "(task a) (task b)", with
// at most 20 named.
func taskList(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if i == 20 {
			fmt.Fprintf(&b, " and %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("(task " + id + ")")
	}
	return b.String()
}

// reconcileServices runs the service scheduler over every service, from the
// controller's pass (tasks is the caught-up task cache).
func (s *Server) reconcileServices(ctx context.Context, tasks []*task.Task, now time.Time) error {
	kvs, _, err := s.store.List(ctx, prefixServices)
	if err != nil {
		return err
	}
	if len(kvs) == 0 {
		return nil
	}
	byGroup := map[string][]*task.Task{}
	for _, t := range tasks {
		if strings.HasPrefix(t.Group, ServiceGroupPrefix) {
			k := t.Cluster + "/" + t.Group
			byGroup[k] = append(byGroup[k], t)
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
		if rec.Status == api.ServiceStatusInactive {
			if now.Sub(rec.StatusChangedAt) > s.cfg.StoppedTaskRetention {
				if err := s.store.Delete(ctx, kv.Key, kv.Revision); err != nil && !errdefs.IsConflict(err) && !errdefs.IsNotFound(err) {
					return err
				}
			}
			continue
		}
		lim := planLimits{launchBudget: s.launches.available(now), throttle: s.cfg.ServiceThrottle}
		plan := planService(&rec, byGroup[rec.Cluster+"/"+ServiceGroupPrefix+rec.Name], now, unplaced, lim)
		// The launches take their tokens before anything is stored; a
		// RunTask that took them meanwhile leaves the service to the next
		// pass, which plans again from the store.
		if !s.launches.take(len(plan.launch), now) {
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
func (s *Server) applyServicePlan(ctx context.Context, kv store.KV, p servicePlan, now time.Time) error {
	r := p.record
	if p.changed {
		_, err := putJSON(ctx, s.store, kv.Key, r, kv.Revision)
		if errdefs.IsConflict(err) || errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	for _, st := range p.stop {
		_, err := s.updateTask(ctx, st.taskID, func(t *task.Task) (bool, error) {
			return t.RequestStop(task.StopCodeServiceSchedulerInitiated, st.reason, now), nil
		})
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if len(p.launch) == 0 {
		return nil
	}
	defs := map[string]*taskDefRecord{}
	cl, err := s.getCluster(ctx, r.Cluster)
	if err != nil {
		return err
	}
	for _, l := range p.launch {
		def := defs[l.taskDef]
		if def == nil {
			if def, _, err = s.getTaskDef(ctx, l.taskDef); err != nil {
				s.log.Error("service cannot launch a task", "service", r.Name, "cluster", r.Cluster, "taskDefinition", l.taskDef, "err", err)
				return nil
			}
			defs[l.taskDef] = def
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
func (s *Server) serviceTask(r *serviceRecord, cl *clusterRecord, def *taskDefRecord, l serviceLaunch, now time.Time) (*task.Task, error) {
	t, err := s.resolveTask(&def.Def, nil)
	if err != nil {
		return nil, err
	}
	t.Cluster = r.Cluster
	t.Subnets = l.subnets
	t.StartedBy = l.deployment
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
	return task.New(t, l.taskID, s.taskARN(r.Cluster, l.taskID), now)
}
