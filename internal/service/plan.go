package service

import (
	"slices"
	"sort"
	"time"

	"vessel.dev/vessel/internal/task"
)

// UnplacedEventInterval is how often the same "unable to place a task"
// event may be repeated.
const UnplacedEventInterval = time.Minute

// StablePeriod is how long a deployment's tasks must have been RUNNING (and
// healthy) before the deployment completes and the service is in a steady
// state, so that a container that exits at once is seen to fail rather than
// to succeed.
const StablePeriod = time.Second

// maxCountedFailures bounds a deployment's list of failed tasks: the
// largest circuit breaker threshold.
const maxCountedFailures = 200

// Input is what one pass plans a service from.
type Input struct {
	// Service is the stored service; Compute does not modify it.
	Service *Record
	// Tasks are the service's tasks: those of its cluster and group
	// (GroupPrefix + name), stopped ones included. Compute does not modify
	// them.
	Tasks []*task.Task
	// Now is the pass's time.
	Now time.Time
	// Unplaced returns why a pending task could not be placed, or ""; nil
	// means none could not.
	Unplaced func(taskID string) string
	// NewTaskID returns the ID of a task to launch; required.
	NewTaskID func() string
	// DrainingHosts are the hosts being drained (vessel host drain): the
	// service's tasks on them are replaced elsewhere, within
	// minimumHealthyPercent and maximumPercent, then stopped. Nil means
	// none. Compute does not modify it.
	DrainingHosts map[string]bool
	Limits        Limits
}

// Limits bound what one pass may do.
type Limits struct {
	// LaunchBudget is how many tasks the pass may launch (the control
	// plane's launch bucket); negative means no limit.
	LaunchBudget int
	// Throttle is the service throttle's configuration; the zero value
	// means the defaults.
	Throttle Throttle
}

// Result is what one pass does to a service.
type Result struct {
	// Record is the service as the pass leaves it, to be stored when
	// Changed.
	Record  *Record
	Changed bool
	// Launch are the tasks to start, Stop those to stop.
	Launch []Launch
	Stop   []Stop
}

// Launch is a task to start for a deployment.
type Launch struct {
	TaskID         string
	Deployment     string // the task's startedBy
	TaskDefinition string
	Subnets        []string
}

// Stop is a task to stop, and why (its stoppedReason).
type Stop struct {
	TaskID string
	Reason string
}

// Compute plans one pass for a service: it does no I/O, reads no clock and
// does not modify its input. The steps run in this order, each on what the
// ones before it decided:
//
//	countFailures   failed and unhealthy tasks count against their deployment
//	circuitBreaker  too many failures fail the primary (and may roll back)
//	throttle        tasks that keep failing to start delay the next launches
//	leaveHosts      the primary's tasks on draining hosts are to be replaced:
//	                those not yet RUNNING stop at once
//	scaleIn         the primary's surplus tasks stop, pending ones first
//	drainOld        older deployments' tasks, then those leaving draining
//	                hosts, stop within minimumHealthyPercent
//	launch          the primary's missing tasks start, within maximumPercent
//	report          events for what was started, stopped or cannot be placed
//	dropDrained     older deployments with nothing left running go
//	complete        the primary completes; the service reaches a steady state
//	retire          a deleted service is INACTIVE once its tasks have stopped
func Compute(in Input) Result {
	p := newPlanner(in)
	p.countFailures()
	p.circuitBreaker()
	p.ensurePrimary()
	p.throttle()
	p.sortLive()
	p.leaveHosts()
	p.scaleIn()
	p.drainOld()
	p.launch()
	p.report()
	p.dropDrained()
	p.complete()
	p.retire()
	return p.res
}

// planner is one pass's working state.
type planner struct {
	r        *Record
	res      Result
	now      time.Time
	tasks    []*task.Task // oldest first
	unplaced func(string) string
	newID    func() string
	budget   int
	th       Throttle
	draining map[string]bool // hosts being drained

	stopping  map[string]bool // tasks the pass stops
	desired   int             // tasks the primary should hold
	throttled bool            // the throttle forbids launches now
	// prim and old are the live tasks of the primary and of the older
	// deployments that the pass does not stop; leaving are the primary's
	// RUNNING tasks on draining hosts, kept until their replacements run.
	prim, old, leaving []*task.Task
	// started and stoppedRunning are the tasks the pass starts, and the
	// RUNNING ones it stops, for the events.
	started, stoppedRunning []string
	// oldAlive are the older deployments with tasks not yet stopped.
	oldAlive map[string]bool
}

func newPlanner(in Input) *planner {
	r := in.Service.Clone()
	tasks := slices.Clone(in.Tasks)
	sort.Slice(tasks, func(i, j int) bool { // oldest first, stably
		if !tasks[i].CreatedAt.Equal(tasks[j].CreatedAt) {
			return tasks[i].CreatedAt.Before(tasks[j].CreatedAt)
		}
		return tasks[i].ID < tasks[j].ID
	})
	th := in.Limits.Throttle
	if th == (Throttle{}) {
		_ = th.Fill() // the defaults are valid
	}
	unplaced := in.Unplaced
	if unplaced == nil {
		unplaced = func(string) string { return "" }
	}
	desired := int(r.DesiredCount)
	if r.Status != StatusActive {
		desired = 0
	}
	return &planner{r: r, res: Result{Record: r}, now: in.Now, tasks: tasks, unplaced: unplaced,
		newID: in.NewTaskID, budget: in.Limits.LaunchBudget, th: th, draining: in.DrainingHosts,
		stopping: map[string]bool{}, desired: desired}
}

func (p *planner) changed() { p.res.Changed = true }

func (p *planner) event(format string, args ...any) {
	p.r.AddEvent(p.now, format, args...)
}

// primary is the PRIMARY deployment (after ensurePrimary).
func (p *planner) primary() *Deployment { return &p.r.Deployments[0] }

func (p *planner) active() bool { return p.r.Status == StatusActive }

func (p *planner) deployment(id string) *Deployment {
	for i := range p.r.Deployments {
		if p.r.Deployments[i].ID == id {
			return &p.r.Deployments[i]
		}
	}
	return nil
}

// live reports whether a task runs or is to run: not stopped, and not
// asked to stop.
func live(t *task.Task) bool { return !t.Stopped() && t.DesiredStatus == task.StatusRunning }

func (p *planner) stop(t *task.Task, reason string) {
	if !p.stopping[t.ID] {
		p.stopping[t.ID] = true
		p.res.Stop = append(p.res.Stop, Stop{TaskID: t.ID, Reason: reason})
	}
}

// stopForScaling stops a task for the primary's rollout, noting it among
// the RUNNING tasks stopped.
func (p *planner) stopForScaling(t *task.Task) {
	p.stop(t, "Scaling activity initiated by (deployment "+p.primary().ID+")")
	if t.LastStatus == task.StatusRunning {
		p.stoppedRunning = append(p.stoppedRunning, t.ID)
	}
}

// countFailures: tasks that failed to start or exited, and tasks whose
// health check fails (which it stops), count against an IN_PROGRESS
// deployment, each once.
func (p *planner) countFailures() {
	grace := time.Duration(0)
	if g := p.r.HealthCheckGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	for _, t := range p.tasks {
		if live(t) && t.LastStatus == task.StatusRunning && t.Health() == task.HealthUnhealthy && p.now.Sub(t.StartedAt) >= grace {
			p.stop(t, "Task failed container health checks")
		} else if !taskFailed(t) {
			continue
		}
		d := p.deployment(t.StartedBy)
		if d != nil && d.RolloutState == RolloutInProgress && !slices.Contains(d.Failed, t.ID) && len(d.Failed) < maxCountedFailures {
			d.Failed = append(d.Failed, t.ID)
			d.UpdatedAt = p.now
			p.changed()
		}
	}
}

// circuitBreaker fails an IN_PROGRESS primary whose failures reached the
// threshold and, with rollback, deploys the last deployment that completed.
func (p *planner) circuitBreaker() {
	r := p.r
	if len(r.Deployments) == 0 || !r.CircuitBreaker.Enable {
		return
	}
	d := &r.Deployments[0]
	if d.RolloutState != RolloutInProgress || len(d.Failed) < CircuitBreakerThreshold(r.DesiredCount) {
		return
	}
	d.RolloutState = RolloutFailed
	d.RolloutStateReason = "ECS deployment circuit breaker: tasks failed to start."
	d.UpdatedAt = p.now
	p.event("(service %s) (deployment %s) deployment failed: tasks failed to start.", r.Name, d.ID)
	p.changed()
	if r.CircuitBreaker.Rollback && r.StableTaskDefinition != "" && r.StableTaskDefinition != d.TaskDefinition {
		stable := r.StableDeployment
		r.NewDeployment(r.StableTaskDefinition, p.now, "ECS deployment circuit breaker: rolling back to deploymentId "+stable+".")
		p.event("(service %s) rolling back to deployment %s.", r.Name, stable)
	}
}

// ensurePrimary gives a service without deployments its first one.
func (p *planner) ensurePrimary() {
	if len(p.r.Deployments) == 0 {
		p.r.NewDeployment(p.r.TaskDefinition, p.now, "")
		p.changed()
	}
}

// throttle looks at the primary's tasks launched since the throttle's
// window opened: one that reached RUNNING ends a streak of failures; After
// failures start the first delay, and each later round that fails again
// doubles it.
func (p *planner) throttle() {
	th := &p.r.Throttle
	primary := p.primary().ID
	failedN, startedN := 0, 0
	for _, t := range p.tasks {
		if t.StartedBy != primary || t.CreatedAt.Before(th.Since) {
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
		*th = ThrottleState{Since: p.now}
		p.changed()
	case failedN > 0 && (th.Level > 0 || failedN >= p.th.After):
		th.Level++
		th.Since = p.now
		th.Until = p.now.Add(p.th.delay(th.Level))
		p.event("(service %s) is unable to consistently start tasks successfully.", p.r.Name)
		p.changed()
	}
	p.throttled = p.now.Before(th.Until)
}

// sortLive sorts the live tasks the pass does not stop into the primary's
// and the older deployments'.
func (p *planner) sortLive() {
	primary := p.primary().ID
	for _, t := range p.tasks {
		if !live(t) || p.stopping[t.ID] {
			continue
		}
		if t.StartedBy == primary {
			p.prim = append(p.prim, t)
		} else {
			p.old = append(p.old, t)
		}
	}
}

// scaleIn stops the primary's tasks beyond the desired count: those not
// healthy first, then the newest. Tasks leaving draining hosts are not
// counted: drainOld stops them.
func (p *planner) scaleIn() {
	surplus := len(p.prim) - p.desired
	if surplus <= 0 {
		return
	}
	order := slices.Clone(p.prim)
	sort.SliceStable(order, func(i, j int) bool {
		hi, hj := taskHealthy(order[i]), taskHealthy(order[j])
		if hi != hj {
			return !hi
		}
		return order[i].CreatedAt.After(order[j].CreatedAt)
	})
	for _, t := range order[:surplus] {
		p.stopForScaling(t)
	}
	p.prim = slices.DeleteFunc(p.prim, func(t *task.Task) bool { return p.stopping[t.ID] })
}

// onDrainingHost reports whether t is placed on a host being drained.
func (p *planner) onDrainingHost(t *task.Task) bool {
	return t.HostID != "" && p.draining[t.HostID]
}

// leaveHosts takes the primary's tasks on draining hosts out of its count,
// so that launch replaces them: those not yet RUNNING stop at once (as ECS
// stops a draining container instance's PENDING service tasks), the
// RUNNING ones stay (leaving) until drainOld may stop them.
func (p *planner) leaveHosts() {
	for _, t := range p.prim {
		if !p.onDrainingHost(t) {
			continue
		}
		if t.LastStatus == task.StatusRunning {
			p.leaving = append(p.leaving, t)
			continue
		}
		p.stop(t, drainReason(t.HostID, p.primary().ID))
	}
	p.prim = slices.DeleteFunc(p.prim, func(t *task.Task) bool { return p.stopping[t.ID] || p.onDrainingHost(t) })
}

// drainReason is the stoppedReason of a task stopped because its host is
// drained.
func drainReason(hostID, deployment string) string {
	return "Host " + hostID + " is draining: task replaced on another host (deployment " + deployment + ")"
}

// minHealthy is the fewest healthy tasks a rollout keeps:
// minimumHealthyPercent of desired, rounded up.
func (p *planner) minHealthy() int {
	return int((int64(p.desired)*int64(p.r.MinimumHealthyPercent) + 99) / 100)
}

// maxTotal is the most live tasks a rollout may hold: maximumPercent of
// desired, rounded down.
func (p *planner) maxTotal() int {
	return int(int64(p.desired) * int64(p.r.MaximumPercent) / 100)
}

// drainOld stops the older deployments' tasks, then the primary's tasks
// leaving draining hosts, keeping minimumHealthyPercent of desired healthy:
// tasks that are not healthy go at once. A failed primary of an active
// service keeps the older deployments' tasks (those on draining hosts
// included: they are what runs).
func (p *planner) drainOld() {
	healthy := countHealthy(p.prim) + countHealthy(p.old) + countHealthy(p.leaving)
	stopWithin := func(t *task.Task, stop func(*task.Task)) {
		if taskHealthy(t) {
			if healthy <= p.minHealthy() {
				return
			}
			healthy--
		}
		stop(t)
	}
	if !(p.primary().RolloutState == RolloutFailed && p.active()) {
		// Those on draining hosts first.
		old := slices.Clone(p.old)
		sort.SliceStable(old, func(i, j int) bool { return p.onDrainingHost(old[i]) && !p.onDrainingHost(old[j]) })
		for _, t := range old {
			stopWithin(t, p.stopForScaling)
		}
		p.old = slices.DeleteFunc(p.old, func(t *task.Task) bool { return p.stopping[t.ID] })
	}
	for _, t := range p.leaving {
		stopWithin(t, p.stopForDrain)
	}
	p.leaving = slices.DeleteFunc(p.leaving, func(t *task.Task) bool { return p.stopping[t.ID] })
}

// stopForDrain stops a RUNNING task leaving a draining host.
func (p *planner) stopForDrain(t *task.Task) {
	p.stop(t, drainReason(t.HostID, p.primary().ID))
	p.stoppedRunning = append(p.stoppedRunning, t.ID)
}

// launch starts the primary's missing tasks within maximumPercent and the
// launch budget, unless the primary failed, the service is deleted or
// throttled.
func (p *planner) launch() {
	primary := p.primary()
	if primary.RolloutState == RolloutFailed || !p.active() || p.throttled {
		return
	}
	n := min(p.desired-len(p.prim), p.maxTotal()-len(p.prim)-len(p.old)-len(p.leaving))
	if p.budget >= 0 {
		n = min(n, p.budget)
	}
	for i := 0; i < n; i++ {
		id := p.newID()
		p.res.Launch = append(p.res.Launch, Launch{TaskID: id, Deployment: primary.ID,
			TaskDefinition: primary.TaskDefinition, Subnets: slices.Clone(primary.Subnets)})
		p.started = append(p.started, id)
	}
}

// report records what the pass started and stopped, and why the primary's
// first pending task waits: at most once a minute for the same reason.
func (p *planner) report() {
	name := p.r.Name
	if len(p.started) > 0 {
		p.event("(service %s) has started %d tasks: %s.", name, len(p.started), taskList(p.started))
		p.r.Steady = false
		p.changed()
	}
	if len(p.stoppedRunning) > 0 {
		p.event("(service %s) has stopped %d running tasks: %s.", name, len(p.stoppedRunning), taskList(p.stoppedRunning))
		p.r.Steady = false
		p.changed()
	}
	for _, t := range p.prim {
		why := p.unplaced(t.ID)
		if why == "" || t.HostID != "" {
			continue
		}
		if why != p.r.LastUnplaced || p.now.Sub(p.r.LastUnplacedAt) >= UnplacedEventInterval {
			p.event("(service %s) was unable to place a task because no host met all of its requirements. Reason: %s.", name, why)
			p.r.LastUnplaced, p.r.LastUnplacedAt = why, p.now
			p.changed()
		}
		break
	}
}

// dropDrained drops the older deployments that have nothing left running.
func (p *planner) dropDrained() {
	primary := p.primary().ID
	p.oldAlive = map[string]bool{}
	for _, t := range p.tasks {
		if !t.Stopped() && t.StartedBy != primary {
			p.oldAlive[t.StartedBy] = true
		}
	}
	kept := p.r.Deployments[:1]
	for _, d := range p.r.Deployments[1:] {
		if p.oldAlive[d.ID] {
			kept = append(kept, d)
		} else {
			p.changed()
		}
	}
	p.r.Deployments = kept
}

// complete completes the primary once it holds every desired task, healthy
// for StablePeriod, and nothing older is left; the service is then in a
// steady state until the pass has something to do.
func (p *planner) complete() {
	r, primary := p.r, p.primary()
	healthy := 0
	for _, t := range p.prim {
		if taskHealthy(t) && p.now.Sub(t.StartedAt) >= StablePeriod {
			healthy++
		}
	}
	full := len(p.prim) == p.desired && healthy == p.desired
	if primary.RolloutState == RolloutInProgress && full && len(p.oldAlive) == 0 && len(p.res.Launch) == 0 && p.active() {
		primary.RolloutState = RolloutCompleted
		primary.RolloutStateReason = "ECS deployment " + primary.ID + " completed."
		primary.UpdatedAt = p.now
		r.StableDeployment, r.StableTaskDefinition = primary.ID, primary.TaskDefinition
		p.event("(service %s) (deployment %s) deployment completed.", r.Name, primary.ID)
		p.changed()
	}
	steady := p.active() && primary.RolloutState == RolloutCompleted && len(r.Deployments) == 1 &&
		full && len(p.res.Launch) == 0 && len(p.res.Stop) == 0
	if steady && !r.Steady {
		p.event("(service %s) has reached a steady state.", r.Name)
		r.Steady = true
		p.changed()
	} else if !steady && r.Steady {
		r.Steady = false
		p.changed()
	}
}

// retire makes a deleted (DRAINING) service INACTIVE once its tasks have
// stopped.
func (p *planner) retire() {
	if p.r.Status != StatusDraining {
		return
	}
	for _, t := range p.tasks {
		if !t.Stopped() {
			return
		}
	}
	p.r.Status = StatusInactive
	p.r.StatusChangedAt = p.now
	p.changed()
}
