package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// Images is what the agent needs of the host's image cache.
type Images interface {
	// Get returns a cached image; errdefs.ErrNotFound if it is not cached.
	Get(ctx context.Context, ref string) (*image.Image, error)
	// Pull fetches an image into the cache (downloading only missing layers).
	Pull(ctx context.Context, ref string, o image.PullOptions) (*image.Image, error)
}

// Network is what the agent needs of the host's task networking.
type Network interface {
	Attach(ctx context.Context, taskID, subnet string, o network.AttachOptions) (*network.Attachment, error)
	Detach(ctx context.Context, taskID string) error
	Reconcile(ctx context.Context, keep func(taskID string) bool) error
	// Rekey moves a warm sandbox's attachment to the task that takes it,
	// or back (network.Manager.Rekey).
	Rekey(ctx context.Context, fromID, toID string, o network.AttachOptions) (*network.Attachment, error)
	// Get returns a task's attachment (probes dial from its namespace).
	Get(taskID string) (*network.Attachment, bool)
}

// Image pull behaviours, as the ECS agent's ECS_IMAGE_PULL_BEHAVIOR.
const (
	PullPreferCached = "prefer-cached" // use a cached image; pull only what is missing
	PullAlways       = "always"        // ask the registry every time (layers still come from the cache)
)

// Labels the agent keeps on each sandbox.
const (
	LabelTaskARN = "vessel.task-arn"
	LabelCluster = "vessel.cluster"
	LabelHost    = "vessel.host"
	// LabelSandboxID is on the sandbox of a task that took a warm one:
	// the warm sandbox's ID, which its containers' IDs begin with.
	LabelSandboxID = "vessel.sandbox-id"
)

// Config configures an agent.
type Config struct {
	// Host is what the agent registers. Host.ID is required and must be
	// stable across restarts, so that the agent finds its tasks again.
	Host agentproto.Host
	// ControlPlane is the control plane, in process or over HTTP. Required.
	ControlPlane agentproto.ControlPlane
	// Runtimes by name. At least one is required; Host.DefaultRuntime must
	// be one of them (the first registered if empty).
	Runtimes map[string]runtime.Runtime
	// HeartbeatInterval defaults to 5 s.
	HeartbeatInterval time.Duration
	// RetryInterval is the pause after a failed call to the control plane;
	// 1 s by default.
	RetryInterval time.Duration
	// ReleaseGrace is how long a stopping task whose sandbox cannot be
	// deleted stays DEPROVISIONING while the agent tries again every
	// RetryInterval; after it the task is reported STOPPED with the
	// failure in its reason, and the agent goes on trying (the sandbox
	// keeps its address and volumes until it is gone). 30 s by default.
	ReleaseGrace time.Duration
	// ReportDelay is how long a task's progress reports (ACTIVATING, its
	// address, image digests, containers started) may wait to be sent
	// together with what follows; a change of status that matters (RUNNING,
	// stopping, an exit) sends them at once. DefaultReportDelay by default;
	// negative sends each report at once.
	ReportDelay time.Duration
	// Images and Network serve runtimes that run real processes; they may
	// be nil when only simulated runtimes are configured.
	Images  Images
	Network Network
	// PullBehavior is PullPreferCached (default) or PullAlways.
	PullBehavior string
	// InsecureRegistries are registry hosts reached over plain HTTP.
	InsecureRegistries []string
	// LogDir keeps each task's container logs in LogDir/<task ID>/, beyond
	// the task's end; required with real runtimes.
	LogDir string
	// TaskDir keeps each task's own files (its volumes) in
	// TaskDir/<task ID>/ while it runs; by default "tasks" beside LogDir.
	TaskDir string
	// LogMaxBytes caps the logs kept per task (split between its
	// containers); 10 MiB by default.
	LogMaxBytes int64
	// LogRetention is how long the logs of a finished task are kept; 1 h
	// by default (as the control plane keeps STOPPED tasks).
	LogRetention time.Duration
	// RestartBackoff is the first delay before a container is restarted in
	// place (tasks with a RestartPolicy), doubled for each restart in a row
	// up to MaxRestartBackoff; 10 s and 5 min by default, as the kubelet.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// WarmPools is how many warm sandboxes to keep per runtime name
	// (pool.go); a runtime absent or at 0 has none. Each must be one of
	// Runtimes and a runtime.Warmer.
	WarmPools map[string]int
	// WarmSubnet is the subnet warm sandboxes attach to: the one tasks get
	// when they name none (tasks of other subnets start cold). Required
	// with a pool of a runtime that runs real processes.
	WarmSubnet string
	// WarmRetry is the first pause after a failed warm, doubled for each
	// failure in a row up to a minute; 1 s by default.
	WarmRetry time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Agent runs the tasks placed on one host.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker
	// finished holds the tasks whose worker ended here (the task reported
	// STOPPED or torn down), with when: an answer computed before the end
	// and applied after it must not start the task again.
	finished map[string]time.Time
	prunedAt time.Time // when finished was last pruned
	wg       sync.WaitGroup
	// outbox holds reports of several tasks to be sent in one call
	// (sendReports).
	outbox outbox

	// pools are the warm pools by name (pool.go), fixed by New, and
	// byRuntime the same pools per runtime, the smallest class first;
	// poolMu guards their entries and counts. a.mu is never taken while
	// poolMu is held.
	pools     map[string]*pool
	byRuntime map[string][]*pool
	poolMu    sync.Mutex
}

// finishedMemory is how long the agent remembers a task it finished, far
// longer than an assignments answer is in flight.
const finishedMemory = 10 * time.Minute

// New checks cfg and returns an agent; nothing starts until Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Host.ID == "" {
		return nil, errdefs.InvalidArgument("agent: Host.ID is required")
	}
	if cfg.ControlPlane == nil {
		return nil, errdefs.InvalidArgument("agent: ControlPlane is required")
	}
	if len(cfg.Runtimes) == 0 {
		return nil, errdefs.InvalidArgument("agent: at least one runtime is required")
	}
	if len(cfg.Host.Runtimes) == 0 {
		for name := range cfg.Runtimes {
			cfg.Host.Runtimes = append(cfg.Host.Runtimes, name)
		}
	}
	for _, name := range cfg.Host.Runtimes {
		if cfg.Runtimes[name] == nil {
			return nil, errdefs.InvalidArgument("agent: host offers runtime %q but none is configured", name)
		}
	}
	if cfg.Host.DefaultRuntime == "" {
		cfg.Host.DefaultRuntime = cfg.Host.Runtimes[0]
	}
	if cfg.Runtimes[cfg.Host.DefaultRuntime] == nil {
		return nil, errdefs.InvalidArgument("agent: default runtime %q is not configured", cfg.Host.DefaultRuntime)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.ReleaseGrace <= 0 {
		cfg.ReleaseGrace = 30 * time.Second
	}
	if cfg.ReportDelay == 0 {
		cfg.ReportDelay = DefaultReportDelay
	}
	switch cfg.PullBehavior {
	case "":
		cfg.PullBehavior = PullPreferCached
	case PullPreferCached, PullAlways:
	default:
		return nil, errdefs.InvalidArgument("agent: pull behavior %q is not known: use %s or %s", cfg.PullBehavior, PullPreferCached, PullAlways)
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = 10 << 20
	}
	if cfg.LogRetention <= 0 {
		cfg.LogRetention = time.Hour
	}
	if cfg.TaskDir == "" && cfg.LogDir != "" {
		cfg.TaskDir = filepath.Join(filepath.Dir(filepath.Clean(cfg.LogDir)), "tasks")
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = DefaultRestartBackoff
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	if cfg.MaxRestartBackoff < cfg.RestartBackoff {
		return nil, errdefs.InvalidArgument("agent: MaxRestartBackoff %s is below RestartBackoff %s", cfg.MaxRestartBackoff, cfg.RestartBackoff)
	}
	for name, rt := range cfg.Runtimes {
		if sim, ok := rt.(runtime.Simulated); ok && sim.Simulated() {
			continue
		}
		if cfg.Images == nil || cfg.Network == nil || cfg.LogDir == "" {
			return nil, errdefs.InvalidArgument("agent: runtime %q runs real processes: Images, Network and LogDir are required", name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WarmRetry <= 0 {
		cfg.WarmRetry = time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("host", cfg.Host.ID), workers: map[string]*worker{},
		finished: map[string]time.Time{}}
	if err := a.newPools(); err != nil {
		return nil, err
	}
	return a, nil
}

// HostID is the ID the agent registers its host under.
func (a *Agent) HostID() string { return a.cfg.Host.ID }

// Run registers the host and reconciles until ctx is done. Sandboxes keep
// running after Run returns; Run waits for its own goroutines.
func (a *Agent) Run(ctx context.Context) error {
	defer a.wg.Wait()
	for {
		err := a.cfg.ControlPlane.RegisterHost(ctx, a.cfg.Host)
		if err == nil {
			break
		}
		a.log.Warn("registering host failed; retrying", "err", err)
		if sleep(ctx, a.cfg.RetryInterval) != nil {
			return nil
		}
	}
	a.log.Info("host registered", "runtimes", a.cfg.Host.Runtimes, "default_runtime", a.cfg.Host.DefaultRuntime)

	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.heartbeat(ctx)
	}()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.followFleetNetwork(ctx) // fleetnet.go
	}()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.serveMetadata(ctx) // taskmeta.go
	}()

	adopted, err := a.listSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("agent: listing sandboxes: %w", err)
	}
	var rev int64
	first := true
	for ctx.Err() == nil {
		as, err := a.cfg.ControlPlane.Assignments(ctx, a.cfg.Host.ID, rev)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.log.Warn("fetching assignments failed; retrying", "err", err)
			sleep(ctx, a.cfg.RetryInterval)
			continue
		}
		if ctx.Err() != nil {
			// Shutting down: the set may be stale and workers are gone;
			// starting new ones now would tear down sandboxes that must
			// outlive the agent.
			break
		}
		rev = as.Revision
		if first {
			a.deleteOrphans(ctx, as.Tasks, adopted)
			a.reconcileNetwork(ctx, as.Tasks, adopted)
			a.reconcileTaskDirs(as.Tasks)
			a.adoptPools(ctx, adopted) // pool.go
		}
		a.apply(ctx, as, adopted)
		// The tasks' memory first: warm sandboxes give way (pool.go).
		a.shrinkPools(ctx)
		if first {
			adopted = nil
			first = false
			a.runPools(ctx)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.collectLogs(ctx)
			}()
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.shipLogs(ctx) // shipper.go
			}()
		}
	}
	return nil
}

type sandboxRef struct {
	rt   runtime.Runtime
	info runtime.SandboxInfo
}

func (a *Agent) listSandboxes(ctx context.Context) (map[string]sandboxRef, error) {
	out := map[string]sandboxRef{}
	for _, rt := range a.cfg.Runtimes {
		infos, err := rt.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("runtime %s: %w", rt.Name(), err)
		}
		for _, in := range infos {
			out[in.ID] = sandboxRef{rt: rt, info: in}
		}
	}
	return out, nil
}

// deleteOrphans removes sandboxes whose task is no longer placed here: it
// stopped, or was removed, while the agent was away.
func (a *Agent) deleteOrphans(ctx context.Context, tasks []task.Task, adopted map[string]sandboxRef) {
	placed := map[string]bool{}
	for _, t := range tasks {
		placed[t.ID] = true
	}
	for id, ref := range adopted {
		if placed[id] || ref.info.Warm {
			continue // warm sandboxes are the pools' (adoptPools)
		}
		a.log.Info("deleting sandbox whose task is no longer placed on this host", "task", id, "runtime", ref.rt.Name())
		if err := ref.rt.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			a.log.Error("deleting orphan sandbox failed", "task", id, "err", err)
		}
	}
}

// reconcileNetwork frees the addresses and namespaces of tasks that are no
// longer placed here (they stopped while the agent was away, or a crash
// struck between a lease and its use), and of warm sandboxes the runtimes
// no longer list (a warm that never finished); those of listed warm
// sandboxes stay for adoptPools.
func (a *Agent) reconcileNetwork(ctx context.Context, tasks []task.Task, listed map[string]sandboxRef) {
	if a.cfg.Network == nil {
		return
	}
	placed := map[string]bool{}
	for _, t := range tasks {
		placed[t.ID] = true
	}
	for id, ref := range listed {
		if ref.info.Warm {
			placed[id] = true
		}
	}
	if err := a.cfg.Network.Reconcile(ctx, func(id string) bool { return placed[id] }); err != nil {
		a.log.Warn("network reconcile found problems; affected tasks are re-attached when they start", "err", err)
	}
}

func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	var pools []agentproto.WarmPool // as last reported
	force := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.cfg.ControlPlane.Heartbeat(ctx, a.cfg.Host.ID)
		if errdefs.IsNotFound(err) {
			err = a.cfg.ControlPlane.RegisterHost(ctx, a.cfg.Host)
			force = true // a registration starts the host's record over
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat failed", "err", err)
			continue
		}
		if a.reportPools(ctx, &pools, force) { // pool.go
			force = false
		}
	}
}

// apply starts a worker for each new task and hands updates to the others.
// Workers whose task left the set (a whole set), or stopped (an answer of
// changes), tear their sandbox down.
func (a *Agent) apply(ctx context.Context, as agentproto.Assignments, adopted map[string]sandboxRef) {
	tasks, changes, stopped := as.Tasks, as.Changes, as.Stopped
	a.mu.Lock()
	defer a.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if now := time.Now(); now.Sub(a.prunedAt) > time.Minute {
		// At most once a minute: answers come many times a second.
		for id, at := range a.finished {
			if now.Sub(at) > finishedMemory {
				delete(a.finished, id)
			}
		}
		a.prunedAt = now
	}
	seen := map[string]bool{}
	for i := range tasks {
		t := tasks[i].Clone()
		seen[t.ID] = true
		if w, ok := a.workers[t.ID]; ok {
			w.update(t)
			continue
		}
		if _, done := a.finished[t.ID]; done {
			// A version from before its end (the answer was made before
			// the STOPPED report was stored): running it again would
			// attach and create what was just released.
			a.log.Debug("assignment of a task already finished here ignored", "task", t.ID, "status", t.LastStatus)
			continue
		}
		rtName := t.Runtime
		if rtName == "" {
			rtName = a.cfg.Host.DefaultRuntime
		}
		rt := a.cfg.Runtimes[rtName]
		var ref *sandboxRef
		if r, ok := adopted[t.ID]; ok {
			ref = &r
			rt = r.rt
		}
		w := &worker{agent: a, rt: rt, rtName: rtName, task: t, adopted: ref, memoryMiB: t.MemoryMiB,
			updates: make(chan *task.Task, 1), gone: make(chan struct{}),
			log: a.log.With("task", t.ID, "cluster", t.Cluster)}
		if ref != nil {
			if id := ref.info.Labels[LabelSandboxID]; id != "" {
				w.warmSandbox.Store(&id)
			}
		}
		a.workers[t.ID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			if a.workers[t.ID] == w {
				delete(a.workers, t.ID)
			}
			if ctx.Err() == nil {
				a.finished[t.ID] = time.Now()
			}
			a.mu.Unlock()
			a.pokePools() // its memory is free for warm sandboxes
		}()
	}
	if changes {
		for _, id := range stopped {
			if w, ok := a.workers[id]; ok && !seen[id] {
				w.markGone()
			}
		}
		return
	}
	for id, w := range a.workers {
		if !seen[id] {
			w.markGone()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// report sends status reports about one task (in order, applied as one
// write), retrying while the control plane is unreachable. It gives up
// when ctx is done, or when the control plane refuses the reports (the
// task is no longer ours).
func (a *Agent) report(ctx context.Context, reports ...agentproto.StatusUpdate) error {
	for i := range reports {
		if reports[i].At.IsZero() {
			reports[i].At = a.cfg.Now()
		}
	}
	for {
		err := a.sendReports(ctx, reports)
		if err == nil {
			return nil
		}
		if errdefs.IsConflict(err) || errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) || errors.Is(err, context.Canceled) {
			return err
		}
		last := reports[len(reports)-1]
		a.log.Warn("reporting status failed; retrying", "task", last.TaskID, "status", last.LastStatus, "err", err)
		if sleep(ctx, a.cfg.RetryInterval) != nil {
			return ctx.Err()
		}
	}
}
