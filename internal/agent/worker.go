package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/agent/taskmeta"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// worker reconciles one task with its sandbox, from creation to deletion.
type worker struct {
	agent   *Agent
	rt      runtime.Runtime
	rtName  string
	task    *task.Task
	adopted *sandboxRef
	log     *slog.Logger
	// memoryMiB is the task's memory, fixed at placement (placedMemory
	// reads it from other goroutines; task is the worker's own).
	memoryMiB int64

	updates  chan *task.Task
	gone     chan struct{}
	goneOnce sync.Once

	// State of the containers, owned by the worker's goroutine.
	started map[string]bool
	// refused holds the containers of a Kubernetes task whose start the
	// runtime refused for their configuration (runAsNonRoot with a root
	// user): they stay waiting, as the kubelet's CreateContainerConfigError.
	refused map[string]bool
	exited  map[string]runtime.ExitStatus
	health  map[string]string
	// runs holds restarts in place and probes (RestartPolicy).
	runs runState
	// ip is the task's address, once attached here.
	ip string
	// record is the latest task record, for the metadata endpoint
	// (taskmeta.go), which reads it from its own goroutines.
	record atomic.Pointer[task.Task]
	// reports queues the task's status reports (reports.go).
	reports reports
	// warmSandbox is the ID of the warm sandbox the task took, when it
	// took one: the ID its sandbox was made under, which its containers'
	// IDs and metadata URIs begin with. Read by the metadata endpoint's
	// goroutines; nil for a sandbox made under the task's ID.
	warmSandbox atomic.Pointer[string]
	// warmStarted tells the task's warm pool that the task that took one
	// of its sandboxes has started its containers (or failed to): the
	// pool's refill waits for it. Nil for a cold start.
	warmStarted func()
}

// update hands the worker the latest version of its task, dropping an
// older one it has not read yet.
func (w *worker) update(t *task.Task) {
	for {
		select {
		case w.updates <- t:
			return
		default:
		}
		select {
		case <-w.updates:
		default:
		}
	}
}

func (w *worker) markGone() { w.goneOnce.Do(func() { close(w.gone) }) }

func (w *worker) simulated() bool {
	s, ok := w.rt.(runtime.Simulated)
	return ok && s.Simulated()
}

type exitEvent struct {
	name string
	st   runtime.ExitStatus
	err  error
}

type healthEvent struct {
	name   string
	status string
}

// fail stops the task with a stop code and reason, then tears it down.
func (w *worker) fail(ctx context.Context, code, reason string) {
	w.report(ctx, agentproto.StatusUpdate{StopCode: code, StoppedReason: reason})
	w.stop(ctx)
}

func (w *worker) run(ctx context.Context) {
	t := w.task
	w.record.Store(t)
	exists := w.adopted != nil
	w.started = map[string]bool{}
	w.refused = map[string]bool{}
	w.exited = map[string]runtime.ExitStatus{}
	w.health = map[string]string{}
	w.runs = newRunState(len(t.Containers))
	for _, c := range t.Containers {
		w.runs.restarts[c.Name] = c.RestartCount
		w.runs.started[c.Name] = c.StartedAt
	}
	if exists {
		for _, c := range w.adopted.info.Containers {
			w.runs.restarts[c.Name] = max(w.runs.restarts[c.Name], c.Restarts)
			w.started[c.Name] = c.Started
			if c.Exit != nil {
				w.exited[c.Name] = *c.Exit
			}
		}
		w.log.Info("adopted sandbox", "runtime", w.rt.Name(), "status", t.LastStatus)
	}

	switch {
	case t.DesiredStatus == task.StatusStopped && !exists:
		w.finish(ctx)
		return
	case !exists && !t.LastStatus.Before(task.StatusRunning):
		// The task ran here but its sandbox is gone (the host rebooted).
		w.fail(ctx, task.StopCodeEssentialContainerExited,
			task.ReasonCannotInspectContainer+": the task's sandbox is no longer on host "+w.agent.cfg.Host.ID)
		return
	case t.DesiredStatus == task.StatusStopped:
		w.stop(ctx)
		return
	}

	if !exists {
		defer func() {
			if w.warmStarted != nil {
				w.warmStarted()
			}
		}()
		if err := w.create(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(ctx, task.StopCodeTaskFailedToStart, err.Error())
			return
		}
	}
	w.watch(ctx)
}

// create is the ACTIVATING phase: images, network, sandbox.
func (w *worker) create(ctx context.Context) error {
	t := w.task
	cfg := &w.agent.cfg
	// Progress reports wait to go with RUNNING, or ReportDelay at most.
	w.note(ctx, agentproto.StatusUpdate{LastStatus: task.StatusActivating, PullStartedAt: cfg.Now()})
	spec := runtime.Spec{ID: t.ID, MilliCPU: t.MilliCPU(), MemoryMiB: t.MemoryMiB,
		EphemeralStorageGiB: int(t.EphemeralStorageGiB),
		Labels:              map[string]string{LabelTaskARN: t.ARN, LabelCluster: t.Cluster, LabelHost: cfg.Host.ID}}
	if err := t.ValidateVolumes(); err != nil {
		return fmt.Errorf("%s: %v", task.ReasonCannotCreateVolume, err)
	}
	secrets, err := w.taskSecrets(ctx)
	if err != nil {
		return err
	}
	if err := w.createLogStreams(ctx); err != nil { // shipper.go
		return err
	}
	// A warm sandbox of the task's runtime and size class, if one can
	// serve it (pool.go).
	var entry *warmEntry
	p, e, why := w.agent.takeWarm(w.rtName, t, t.Subnet)
	switch {
	case p != nil && why == "":
		entry = &e
	case p != nil:
		w.log.Info("warm pool miss: the task starts cold", "runtime", w.rtName, "why", why)
		p.miss()
	}
	// An entry taken and then neither claimed nor given back (the start
	// failed before the claim) is deleted; its attachment, the task's
	// since the move, goes with the task.
	defer func() {
		if entry != nil {
			p.destroyRuntimePart(ctx, entry.id)
			p.settle(false, false)
		}
	}()
	var mounts map[string][]runtime.Mount
	if !w.simulated() {
		// The network first: it does not depend on the images, and the
		// IP reported early lets the control plane (and the Kubernetes
		// bridge) show it while the images are pulled.
		if entry != nil {
			if !w.takeWarmAttachment(ctx, p, *entry, &spec) {
				p.miss()
				p.settle(false, false)
				entry = nil
			}
		}
		if entry == nil {
			if err := w.attach(ctx, &spec); err != nil {
				return err
			}
		}
		spec.LogDir = w.agent.taskLogDir(t.ID)
		if err := os.MkdirAll(spec.LogDir, 0o700); err != nil {
			return fmt.Errorf("%s: %v", task.ReasonResourceInitialization, err)
		}
		if err := writeAWSLogsConfig(spec.LogDir, t); err != nil {
			return fmt.Errorf("%s: %v", task.ReasonResourceInitialization, err)
		}
		spec.LogMaxBytes = cfg.LogMaxBytes / int64(max(len(t.Containers), 1))
		if mounts, err = w.prepareVolumes(ctx, t); err != nil {
			return fmt.Errorf("%s: %v", task.ReasonCannotCreateVolume, err)
		}
	}
	if entry != nil {
		w.tookWarm(&spec, entry.id)
	}
	if err := w.containerSpecs(ctx, &spec, secrets, mounts); err != nil {
		return err
	}
	// A sandbox made under the task's ID after all: the containers'
	// IDs and metadata URIs are the task's.
	coldSpecs := func() error {
		w.tookWarm(&spec, "")
		spec.Containers = nil
		return w.containerSpecs(ctx, &spec, secrets, mounts)
	}
	if entry != nil {
		began := time.Now()
		err := p.warmer.Claim(ctx, entry.id, spec)
		switch {
		case err == nil:
			w.warmStarted = p.settle(true, entry.forTask)
			w.log.Info("warm pool hit: the task took a warm sandbox", "runtime", w.rtName, "pool", p.name, "warm_sandbox", entry.id,
				"primed", entry.forTask, "ip", w.ip, "took", time.Since(began))
			if w.ip != "" {
				w.note(ctx, agentproto.StatusUpdate{IP: w.ip})
			}
			entry = nil
			p.learn(t, secrets, mounts)
			return nil
		case ctx.Err() != nil && !errdefs.IsConflict(err):
			return ctx.Err()
		case errdefs.IsConflict(err):
			// The runtime turned the task down; the warm sandbox is as it
			// was: back to the pool, with its attachment.
			w.log.Info("warm pool miss: the runtime turned the task down; the task starts cold", "runtime", w.rtName, "warm_sandbox", entry.id, "why", err)
			p.miss()
			if !w.simulated() {
				if _, rerr := cfg.Network.Rekey(ctx, t.ID, entry.id, network.AttachOptions{}); rerr != nil {
					w.log.Error("giving the warm sandbox its attachment back failed; deleting it", "warm_sandbox", entry.id, "err", rerr)
					p.destroyRuntimePart(ctx, entry.id)
					p.settle(false, false)
					if err := cfg.Network.Detach(ctx, t.ID); err != nil {
						return fmt.Errorf("%s: %v", task.ReasonResourceInitialization, err)
					}
				} else {
					p.giveBack(*entry)
				}
				entry = nil
				// A cold start has its own attachment: a new address, so
				// the containers' placeholders are expanded again.
				if err := w.attach(ctx, &spec); err != nil {
					return err
				}
			} else {
				p.giveBack(*entry)
			}
			entry = nil
			if err := coldSpecs(); err != nil {
				return err
			}
		default:
			// Nothing is left of the warm sandbox (the runtime's contract);
			// the task keeps its attachment and starts cold in it.
			w.log.Warn("warm pool miss: claiming the warm sandbox failed; the task starts cold", "runtime", w.rtName, "warm_sandbox", entry.id, "err", err)
			p.miss()
			p.destroyRuntimePart(ctx, entry.id)
			p.settle(false, false)
			entry = nil
			if w.ip != "" {
				w.note(ctx, agentproto.StatusUpdate{IP: w.ip})
			}
			if err := coldSpecs(); err != nil {
				return err
			}
		}
	}
	began := time.Now()
	if err := w.rt.Create(ctx, spec); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("%s: %v", task.ReasonResourceInitialization, err)
	}
	w.log.Debug("sandbox created", "took", time.Since(began))
	p.learn(t, secrets, mounts)
	return nil
}

// attach gives the task an attachment of its own (a cold start) and
// reports its address.
func (w *worker) attach(ctx context.Context, spec *runtime.Spec) error {
	t := w.task
	subnet := t.Subnet
	began := time.Now()
	att, err := w.agent.cfg.Network.Attach(ctx, t.ID, subnet, attachOptions(t))
	w.log.Debug("network attached", "took", time.Since(began))
	if err != nil {
		return fmt.Errorf("%s: attaching the task to subnet %s: %v", task.ReasonResourceInitialization, subnet, err)
	}
	spec.NetNSPath, spec.EtcDir, spec.Hostname = att.NetNSPath, att.EtcDir, att.Hostname
	w.ip = att.IP.String()
	w.note(context.WithoutCancel(ctx), agentproto.StatusUpdate{IP: w.ip})
	return nil
}

// takeWarmAttachment makes warm sandbox e's attachment the task's
// (Rekey, with the task's DNS). On failure the warm sandbox is deleted
// and false returned: the task starts cold, in the attachment if the move
// happened before the failure.
func (w *worker) takeWarmAttachment(ctx context.Context, p *pool, e warmEntry, spec *runtime.Spec) bool {
	t := w.task
	nw := w.agent.cfg.Network
	att, err := nw.Rekey(ctx, e.id, t.ID, attachOptions(t))
	if err == nil {
		spec.NetNSPath, spec.EtcDir, spec.Hostname = att.NetNSPath, att.EtcDir, att.Hostname
		w.ip = att.IP.String()
		return true
	}
	w.log.Warn("warm pool miss: moving the warm sandbox's attachment to the task failed; the task starts cold", "warm_sandbox", e.id, "err", err)
	if _, moved := nw.Get(t.ID); moved {
		// The attachment is the task's now (Attach takes it as it is):
		// only the runtime's part goes.
		p.destroyRuntimePart(ctx, e.id)
		return false
	}
	p.destroy(ctx, e.id, false)
	return false
}

// sandboxID is the ID the task's sandbox was made under: the warm
// sandbox's it took, else the task's.
func (w *worker) sandboxID() string {
	if id := w.warmSandbox.Load(); id != nil {
		return *id
	}
	return w.task.ID
}

// tookWarm records that the task's sandbox is warm sandbox id (on its
// sandbox's labels too, for an agent started again), or with "" that it
// is made under the task's ID after all.
func (w *worker) tookWarm(spec *runtime.Spec, id string) {
	if id == "" {
		w.warmSandbox.Store(nil)
		delete(spec.Labels, LabelSandboxID)
		return
	}
	w.warmSandbox.Store(&id)
	spec.Labels[LabelSandboxID] = id
}

// containerSpecs adds the task's containers to spec: images pulled, their
// configuration resolved, placeholders expanded with the task's address.
func (w *worker) containerSpecs(ctx context.Context, spec *runtime.Spec, secrets agentproto.TaskSecrets, mounts map[string][]runtime.Mount) error {
	cs, digests, err := w.agent.containerSpecs(ctx, w.task, w.ip, w.sandboxID(), secrets, mounts, w.simulated(), w.pull)
	if err != nil {
		return err
	}
	spec.Containers = append(spec.Containers, cs...)
	w.note(ctx, agentproto.StatusUpdate{PullStoppedAt: w.agent.cfg.Now(), Containers: digests})
	return nil
}

// containerSpecs is the runtime's view of t's containers in a sandbox
// made under sandboxID with address ip ("" for a simulated runtime, whose
// containers pull nothing): images pulled with pull, their configuration
// resolved, placeholders expanded with ip, and the digest of each image.
func (a *Agent) containerSpecs(ctx context.Context, t *task.Task, ip, sandboxID string, secrets agentproto.TaskSecrets,
	mounts map[string][]runtime.Mount, simulated bool, pull func(context.Context, *task.Container) (*image.Image, error),
) ([]runtime.ContainerSpec, []agentproto.ContainerUpdate, error) {
	var out []runtime.ContainerSpec
	var digests []agentproto.ContainerUpdate
	for _, c := range t.Containers {
		// A simulated sandbox has no IP: its placeholders stay.
		c := task.ExpandPlaceholders(c, ip)
		cs := runtime.ContainerSpec{Name: c.Name, Image: c.Image, Args: c.Args(), WorkingDir: c.WorkingDir, User: c.User,
			Mounts: mounts[c.Name]}
		env := map[string]string{}
		if ra, ok := secrets.RegistryAuth[c.Name]; ok {
			c.RegistryAuth = &ra
		}
		if !simulated {
			img, err := pull(ctx, &c)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: pulling %s for container %s: %v", task.ReasonCannotPullContainer, c.Image, c.Name, err)
			}
			digests = append(digests, agentproto.ContainerUpdate{Name: c.Name, ImageDigest: img.Digest})
			cs.Layers = img.Layers
			cs.Args = resolveArgs(&c, img.Config)
			if cs.WorkingDir == "" {
				cs.WorkingDir = img.Config.WorkingDir
			}
			if cs.User == "" {
				cs.User = img.Config.User
			}
			for _, kv := range img.Config.Env {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
			if len(cs.Args) == 0 {
				return nil, nil, fmt.Errorf("%s: container %s: neither the task nor image %s gives a command to run", task.ReasonCannotStartContainer, c.Name, c.Image)
			}
		}
		if metadataFor(t) {
			for k, v := range taskmeta.Env(sandboxID, c.Name) {
				env[k] = v
			}
		}
		for k, v := range c.Environment {
			env[k] = v
		}
		for k, v := range secrets.Env[c.Name] {
			env[k] = v
		}
		for k, v := range env {
			cs.Env = append(cs.Env, k+"="+v)
		}
		sort.Strings(cs.Env)
		cs.Security = containerSecurity(t, &c)
		if c.Nofile != nil {
			cs.NofileSoft, cs.NofileHard = c.Nofile.Soft, c.Nofile.Hard
		}
		out = append(out, cs)
	}
	return out, digests, nil
}

// containerSecurity is the runtime's confinement of one container of t:
// its settings, with the task's fsGroup as a supplemental group.
func containerSecurity(t *task.Task, c *task.Container) runtime.Security {
	sec := c.Security
	out := runtime.Security{Capabilities: sec.Capabilities()}
	if sec != nil {
		out.ReadOnlyRootfs = sec.ReadOnlyRootFilesystem
		out.RunAsNonRoot = sec.RunAsNonRoot
		out.SupplementalGroups = append(out.SupplementalGroups, sec.SupplementalGroups...)
		out.Init = sec.InitProcess
	}
	if t.FSGroup != nil && !slices.Contains(out.SupplementalGroups, *t.FSGroup) {
		out.SupplementalGroups = append(out.SupplementalGroups, *t.FSGroup)
	}
	return out
}

// resolveArgs applies ECS's rules: the task's entryPoint replaces the
// image's ENTRYPOINT, its command replaces CMD, and a new entry point drops
// the image's CMD.
func resolveArgs(c *task.Container, ic image.ImageConfig) []string {
	ep := c.EntryPoint
	if len(ep) == 0 {
		ep = ic.Entrypoint
	}
	cmd := c.Command
	if len(cmd) == 0 && len(c.EntryPoint) == 0 {
		cmd = ic.Cmd
	}
	return append(append([]string(nil), ep...), cmd...)
}

// pull gets the container's image into the host's cache, reporting
// progress while it runs. A cached image is used only if the container's
// credentials (or none) may pull it: the store checks with the registry.
func (w *worker) pull(ctx context.Context, c *task.Container) (*image.Image, error) {
	o := w.agent.pullOptions(c)
	var mu sync.Mutex
	var last time.Time
	o.Progress = func(p image.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 500*time.Millisecond && p.LayersDone < p.LayersTotal {
			return
		}
		last = time.Now()
		text := fmt.Sprintf("%s: %d/%d layers, %.1f/%.1f MB", c.Name, p.LayersDone, p.LayersTotal,
			float64(p.BytesDone)/1e6, float64(p.BytesTotal)/1e6)
		w.note(ctx, agentproto.StatusUpdate{PullProgress: text})
	}
	return w.agent.cfg.Images.Pull(ctx, c.Image, o)
}

// pullOptions are the options container c's image is pulled with: the
// host's pull behaviour, c's credentials, and whether its registry is
// one the host reaches without TLS.
func (a *Agent) pullOptions(c *task.Container) image.PullOptions {
	cfg := &a.cfg
	o := image.PullOptions{PreferCached: cfg.PullBehavior == PullPreferCached}
	if c.RegistryAuth != nil {
		o.Auth = image.Auth{Username: c.RegistryAuth.Username, Password: c.RegistryAuth.Password}
	}
	for _, r := range cfg.InsecureRegistries {
		if strings.HasPrefix(c.Image, r+"/") {
			o.Insecure = true
		}
	}
	return o
}

// depsMet says whether c may start, and whether it never can (a
// dependency ended the wrong way).
func (w *worker) depsMet(c *task.Container) (ok bool, never string) {
	for _, d := range c.DependsOn {
		st, exited := w.exited[d.Container]
		switch d.Condition {
		case task.ConditionStart:
			if !w.started[d.Container] {
				return false, ""
			}
		case task.ConditionComplete:
			if !exited {
				return false, ""
			}
		case task.ConditionSuccess:
			if !exited {
				return false, ""
			}
			if st.Code != 0 {
				return false, fmt.Sprintf("dependency %s exited with code %d, and %s waits for its SUCCESS", d.Container, st.Code, c.Name)
			}
		case task.ConditionHealthy:
			switch w.health[d.Container] {
			case task.HealthHealthy:
			case task.HealthUnhealthy:
				return false, fmt.Sprintf("dependency %s is UNHEALTHY, and %s waits for it to be HEALTHY", d.Container, c.Name)
			default:
				if exited {
					return false, fmt.Sprintf("dependency %s exited before it was HEALTHY", d.Container)
				}
				return false, ""
			}
		}
	}
	return true, ""
}

// startReady starts every container whose dependencies are met. It
// returns an error when a container cannot start or never will.
func (w *worker) startReady(ctx context.Context, exits chan<- exitEvent, healths chan<- healthEvent) error {
	for progress := true; progress; {
		progress = false
		for i := range w.task.Containers {
			c := &w.task.Containers[i]
			if w.started[c.Name] || w.refused[c.Name] {
				continue
			}
			ok, never := w.depsMet(c)
			if never != "" {
				return fmt.Errorf("%s: %s", task.ReasonCannotStartContainer, never)
			}
			if !ok {
				continue
			}
			began := time.Now()
			if err := w.rt.Start(ctx, w.task.ID, c.Name); err != nil {
				if w.task.RestartPolicy != "" && errdefs.IsInvalidArgument(err) {
					// The kubelet leaves such a container waiting and the
					// pod pending; the rest of the pod carries on.
					w.log.Warn("the runtime refused the container's configuration", "container", c.Name, "err", err)
					w.refused[c.Name] = true
					w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{{Name: c.Name,
						Reason: task.ReasonCreateContainerConfigError + ": " + err.Error()}}})
					continue
				}
				return fmt.Errorf("%s: container %s: %v", task.ReasonCannotStartContainer, c.Name, err)
			}
			w.log.Debug("container started", "container", c.Name, "took", time.Since(began))
			w.started[c.Name] = true
			progress = true
			w.waitFor(ctx, c.Name, exits)
			w.checkHealth(ctx, c, healths)
			u := agentproto.ContainerUpdate{Name: c.Name, LastStatus: task.StatusRunning, RuntimeID: taskmeta.ContainerID(w.sandboxID(), c.Name)}
			w.beginRun(ctx, c, w.agent.cfg.Now(), false, &u)
			w.note(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{u}})
		}
	}
	return nil
}

// waitFor sends the container's exit on exits.
func (w *worker) waitFor(ctx context.Context, name string, exits chan<- exitEvent) {
	id := w.task.ID
	go func() {
		st, err := w.rt.Wait(ctx, id, name)
		if ctx.Err() == nil {
			exits <- exitEvent{name: name, st: st, err: err}
		}
	}()
}

// checkHealth runs the container's health check, as ECS does: the first
// success makes it HEALTHY, Retries failures in a row UNHEALTHY; failures
// within StartPeriod do not count.
func (w *worker) checkHealth(ctx context.Context, c *task.Container, healths chan<- healthEvent) {
	hc := c.HealthCheck
	ex, ok := w.rt.(runtime.Execer)
	if hc == nil || !ok || len(hc.Command) < 2 {
		return
	}
	args := hc.Command[1:]
	if hc.Command[0] == "CMD-SHELL" {
		args = []string{"/bin/sh", "-c", strings.Join(hc.Command[1:], " ")}
	}
	id, name := w.task.ID, c.Name
	go func() {
		begun := time.Now()
		failures := 0
		status := task.HealthUnknown
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(hc.Interval):
			}
			cctx, cancel := context.WithTimeout(ctx, hc.Timeout)
			code, err := ex.Exec(cctx, id, name, runtime.ExecProcess{Args: args})
			cancel()
			if ctx.Err() != nil {
				return
			}
			next := status
			if err == nil && code == 0 {
				failures = 0
				next = task.HealthHealthy
			} else if time.Since(begun) >= hc.StartPeriod {
				failures++
				if failures >= hc.Retries {
					next = task.HealthUnhealthy
				}
			}
			if next != status {
				status = next
				select {
				case healths <- healthEvent{name: name, status: status}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
}

func containerReason(st runtime.ExitStatus) string {
	if st.OOMKilled {
		return task.ReasonOutOfMemory + ": Container killed due to memory usage"
	}
	return ""
}

// watch is the RUNNING phase: it starts containers as their dependencies
// allow, reports exits and health, and stops the task when an essential
// container exits or a stop is asked for.
func (w *worker) watch(ctx context.Context) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exits := make(chan exitEvent, len(w.task.Containers))
	healths := make(chan healthEvent, len(w.task.Containers))
	for _, c := range w.task.Containers {
		if !w.started[c.Name] {
			continue
		}
		if st, ok := w.exited[c.Name]; ok {
			exits <- exitEvent{name: c.Name, st: st}
			delete(w.exited, c.Name) // re-added when the event is handled
			continue
		}
		w.waitFor(wctx, c.Name, exits)
		tc := &w.task.Containers[indexOf(w.task, c.Name)]
		w.checkHealth(wctx, tc, healths)
		// An adopted run: probes start over (the startup probe only if it
		// had not passed), and a restart the agent made but did not
		// report before it went away is reported now.
		began := tc.StartedAt
		if began.IsZero() {
			began = w.agent.cfg.Now()
		}
		u := agentproto.ContainerUpdate{Name: c.Name, LastStatus: task.StatusRunning}
		if n := w.runs.restarts[c.Name]; n > tc.RestartCount {
			u.RestartCount = n
		}
		w.beginRun(wctx, tc, began, tc.Started, &u)
		w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{u}})
	}
	err := w.startReady(wctx, exits, healths)
	if w.warmStarted != nil {
		w.warmStarted()
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		cancel()
		w.fail(ctx, task.StopCodeTaskFailedToStart, err.Error())
		return
	}
	if w.task.LastStatus.Before(task.StatusRunning) {
		if w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusRunning}) != nil && ctx.Err() != nil {
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.gone:
			cancel()
			w.log.Info("task no longer placed on this host (the control plane stopped it without us)")
			w.teardown(ctx)
			return
		case t := <-w.updates:
			w.task = t
			w.record.Store(t)
			if t.DesiredStatus == task.StatusStopped {
				cancel()
				w.stop(ctx)
				return
			}
		case h := <-healths:
			w.health[h.name] = h.status
			w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{{Name: h.name, HealthStatus: h.status}}})
			if err := w.startReady(wctx, exits, healths); err != nil {
				cancel()
				w.fail(ctx, task.StopCodeTaskFailedToStart, err.Error())
				return
			}
		case ev := <-w.runs.probeEvents:
			w.onProbe(wctx, ev)
		case name := <-w.runs.restartDue:
			if err := w.restart(ctx, wctx, name, exits); err != nil {
				cancel()
				w.fail(ctx, task.StopCodeEssentialContainerExited, err.Error())
				return
			}
		case ev := <-exits:
			if ev.err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Error("waiting for container failed", "container", ev.name, "err", ev.err)
				cancel()
				if errors.Is(ev.err, runtime.ErrStartInterrupted) {
					// A previous agent went away while starting it: it
					// never ran.
					w.fail(ctx, task.StopCodeTaskFailedToStart,
						fmt.Sprintf("%s: container %s: %v", task.ReasonCannotStartContainer, ev.name, ev.err))
					return
				}
				w.fail(ctx, task.StopCodeEssentialContainerExited,
					fmt.Sprintf("%s: container %s: %v", task.ReasonCannotInspectContainer, ev.name, ev.err))
				return
			}
			w.exited[ev.name] = ev.st
			w.endRun(ev.name)
			w.reportExit(ctx, ev.name, ev.st)
			c := w.task.Container(ev.name)
			if w.task.RestartPolicy != "" {
				// Kubernetes: restart in place, or stop once nothing runs
				// or will restart.
				if done, reason := w.afterExit(wctx, ev.name, ev.st); done {
					cancel()
					w.fail(ctx, task.StopCodeEssentialContainerExited, reason)
					return
				}
			} else if (c != nil && c.Essential) || len(w.exited) == len(w.task.Containers) {
				reason := fmt.Sprintf("Essential container in task exited (%s exited with code %d)", ev.name, ev.st.Code)
				if r := containerReason(ev.st); r != "" {
					reason = r
				}
				cancel()
				w.fail(ctx, task.StopCodeEssentialContainerExited, reason)
				return
			}
			if err := w.startReady(wctx, exits, healths); err != nil {
				cancel()
				w.fail(ctx, task.StopCodeTaskFailedToStart, err.Error())
				return
			}
		}
	}
}

func indexOf(t *task.Task, name string) int {
	for i := range t.Containers {
		if t.Containers[i].Name == name {
			return i
		}
	}
	return -1
}

func (w *worker) reportExit(ctx context.Context, name string, st runtime.ExitStatus) {
	code := st.Code
	w.report(ctx, agentproto.StatusUpdate{Containers: []agentproto.ContainerUpdate{{
		Name: name, LastStatus: task.StatusStopped, ExitCode: &code, Reason: containerReason(st),
		FinishedAt: st.ExitedAt, Ready: boolp(false), Started: boolp(false)}}})
}

// stop walks DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED: SIGTERM,
// SIGKILL after each container's stop timeout, then the sandbox and its
// network are released.
func (w *worker) stop(ctx context.Context) {
	t := w.task
	if t.LastStatus.Before(task.StatusDeactivating) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusDeactivating})
	}
	if t.LastStatus.Before(task.StatusStopping) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusStopping})
	}
	var running []task.Container
	for _, c := range t.Containers {
		if _, done := w.exited[c.Name]; w.started[c.Name] && !done {
			running = append(running, c)
		}
	}
	results := make(chan exitEvent, len(running))
	for _, c := range running {
		if err := w.rt.Signal(ctx, t.ID, c.Name, syscall.SIGTERM); err != nil {
			w.log.Warn("SIGTERM failed", "container", c.Name, "err", err)
		}
		timeout := c.StopTimeout
		if timeout <= 0 {
			timeout = task.DefaultStopTimeout
		}
		go func(name string, timeout time.Duration) {
			tctx, tcancel := context.WithTimeout(ctx, timeout)
			st, err := w.rt.Wait(tctx, t.ID, name)
			tcancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				// The stop timeout passed: SIGKILL, then wait for good.
				w.log.Info("stop timeout passed; sending SIGKILL", "container", name, "timeout", timeout)
				if kerr := w.rt.Signal(ctx, t.ID, name, syscall.SIGKILL); kerr != nil {
					w.log.Warn("SIGKILL failed", "container", name, "err", kerr)
				}
				kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
				st, err = w.rt.Wait(kctx, t.ID, name)
				kcancel()
			}
			results <- exitEvent{name: name, st: st, err: err}
		}(c.Name, timeout)
	}
	for range running {
		select {
		case <-ctx.Done():
			return
		case ev := <-results:
			if ev.err != nil {
				w.log.Error("container did not stop", "container", ev.name, "err", ev.err)
				continue
			}
			w.exited[ev.name] = ev.st
			w.reportExit(ctx, ev.name, ev.st)
		}
	}
	if ctx.Err() != nil {
		return
	}
	w.finish(ctx)
}

// finish is DEPROVISIONING → STOPPED: the sandbox, its file systems and its
// IP are released before the task is reported STOPPED. A release that fails
// is tried again every RetryInterval; past ReleaseGrace the task is
// reported STOPPED with the failure, and the worker goes on trying until
// the sandbox is gone.
func (w *worker) finish(ctx context.Context) {
	if w.task.LastStatus.Before(task.StatusDeprovisioning) {
		w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusDeprovisioning})
	}
	cfg := &w.agent.cfg
	deadline := time.Now().Add(cfg.ReleaseGrace)
	for {
		err := w.release(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			w.log.Error("releasing the sandbox failed; reporting the task STOPPED and trying on", "err", err, "for", cfg.ReleaseGrace)
			w.report(ctx, agentproto.StatusUpdate{StoppedReason: fmt.Sprintf("%s: %v", task.ReasonCannotStopContainer, err)})
			w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusStopped})
			w.teardown(ctx)
			return
		}
		w.log.Warn("releasing the sandbox failed; trying again", "err", err)
		if sleep(ctx, cfg.RetryInterval) != nil {
			return
		}
	}
	w.report(ctx, agentproto.StatusUpdate{LastStatus: task.StatusStopped})
	w.log.Info("task stopped")
}

// release deletes the sandbox, removes the task's volumes and detaches the
// task from its subnet. A sandbox that could not be deleted keeps its
// volumes and its address: what still runs in it must not share them with
// a new task.
func (w *worker) release(ctx context.Context) error {
	err := w.rt.Delete(ctx, w.task.ID)
	if errdefs.IsNotFound(err) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("deleting the sandbox (its volumes and address are kept until it is gone): %w", err)
	}
	// The containers are gone: their volumes and address may go too.
	err = w.agent.releaseVolumes(w.task.ID)
	if n := w.agent.cfg.Network; n != nil && !w.simulated() {
		err = errors.Join(err, n.Detach(ctx, w.task.ID))
	}
	return err
}

// teardown removes the sandbox of a task the control plane no longer places
// here (it was stopped without us, e.g. its host was declared lost), or
// whose release finish gave up waiting for, trying again every
// RetryInterval until it is gone or ctx is done.
func (w *worker) teardown(ctx context.Context) {
	w.log.Info("deleting the sandbox of a task stopped in the record")
	for {
		err := w.release(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		w.log.Error("releasing a stopped task's sandbox failed; trying again", "err", err)
		if sleep(ctx, w.agent.cfg.RetryInterval) != nil {
			return
		}
	}
}
