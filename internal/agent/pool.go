package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/task"
)

// Warm pools: per runtime that can (runtime.Warmer), the agent keeps
// Config.WarmPools[runtime] sandboxes of the runtime's WarmClass, and per
// size class a runtime.SizedWarmer was given (Config.WarmPools
// ["RUNTIME:VCPU/GB"]) sandboxes booted at that size, all made before
// their tasks are known, each with a network attachment of its own on
// Config.WarmSubnet. A task of that runtime and subnet takes one of the
// pool of its size class, the smallest class that serves it
// (worker.create, takeWarm): its attachment is re-keyed to the task's ID
// (network.Manager.Rekey), then the runtime's Claim adds the task's size
// and containers. Each pool refills in the background, one warm sandbox
// at a time, pausing after a failure (doubling up to maxWarmBackoff).
// docs/architecture.md says why each piece is as it is.

// WarmIDPrefix begins the ID of every warm sandbox ("warm-<runtime>-<8 hex
// digits>"), so that neither a task ID (a UUID) nor a person mistakes one
// for the other.
const WarmIDPrefix = "warm-"

// LabelWarm marks a warm sandbox with its pool's name (its runtime's, or
// RUNTIME:VCPU/GB for a sized class).
const LabelWarm = "vessel.warm"

// maxWarmBackoff caps the pause between failed warms.
const maxWarmBackoff = time.Minute

// warmEntry is one warm sandbox of a pool.
type warmEntry struct {
	id string
	// ip is its attachment's address; empty for a simulated runtime.
	ip string
	// primed is the key (primeKey) of the task whose containers it was
	// primed with (runtime.Primer), "" if none, noPrime if it must not
	// be primed (one an earlier agent left, which may be primed already);
	// mem is what the primed containers hold beyond the class's idle
	// memory.
	primed string
	mem    int64
	// forTask is set on an entry takeWarm hands to a task it was primed
	// for.
	forTask bool
}

// noPrime marks a warm entry that is not primed.
const noPrime = "-"

// pool is the warm pool of one runtime and class.
type pool struct {
	a *Agent
	// name is the pool's (ParseWarmPools): its runtime's name, or
	// RUNTIME:VCPU/GB for a sized class.
	name   string
	rtName string
	rt     runtime.Runtime
	warmer runtime.Warmer
	// primer is the runtime's, when it can create containers ahead.
	primer runtime.Primer
	class  runtime.WarmClass
	target int
	sim    bool
	kick   chan struct{}

	// Guarded by a.poolMu.
	ready   []warmEntry // oldest first
	warming int
	// claiming counts entries taken by tasks whose claim has not ended:
	// they count against the target until then, so that a refill does
	// not replace an entry that may come back (giveBack).
	claiming int
	// launching counts tasks that took a warm sandbox and whose
	// containers are not started yet: the refill waits for them, as
	// making a sandbox (booting gVisor's, a VM) would take the host's CPU
	// from the very start the pool is there to speed up.
	launching int
	hits      int64
	misses    int64
	// primedHits counts the hits that took a sandbox primed for them.
	primedHits int64
	// recipes are what the pool's warm sandboxes are primed with: the
	// last tasks of the pool that could be (learn), one per task
	// definition, the latest first, at most maxPrimed.
	recipes []*primeRecipe
}

// ParseWarmPools parses --warm-pool values, POOL=N separated by commas
// (flags may repeat). POOL is a runtime's name, for the pool of its
// WarmClass, or RUNTIME:VCPU/GB, for a pool of that size class (a size of
// the Fargate table, e.g. gvisor:16/120), which serves the tasks its
// smaller classes cannot. Runtime names must be known (runtime.Known) and
// N a whole number of 0 or more. The keys it returns are the pools'
// names, with the class written as sizing.Size.Class writes it. Whether
// the runtime has warm sandboxes, and of a size, is checked when the
// agent is made (New).
func ParseWarmPools(values []string) (map[string]int, error) {
	out := map[string]int{}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			name, n, ok := strings.Cut(item, "=")
			if !ok || name == "" || n == "" {
				return nil, errdefs.InvalidArgument("--warm-pool %q: use RUNTIME=N or RUNTIME:VCPU/GB=N, e.g. runc=2 or gvisor:16/120=1 (several separated by commas)", item)
			}
			rt, class, sized := strings.Cut(name, ":")
			if !runtime.Known(rt) {
				return nil, errdefs.InvalidArgument("--warm-pool %q: runtime %q is not known; the runtimes are %s", item, rt, strings.Join(runtime.Names, ", "))
			}
			if sized {
				size, err := sizing.ParseClass(class)
				if err != nil {
					return nil, errdefs.InvalidArgument("--warm-pool %q: %v", item, err)
				}
				name = poolName(rt, size)
			}
			var count int
			if _, err := fmt.Sscanf(n, "%d", &count); err != nil || fmt.Sprint(count) != strings.TrimPrefix(n, "+") {
				return nil, errdefs.InvalidArgument("--warm-pool %q: %q is not a whole number of warm sandboxes (0 turns the pool off)", item, n)
			}
			if count < 0 {
				return nil, errdefs.InvalidArgument("--warm-pool %q: the size must be 0 (off) or more, not %d", item, count)
			}
			if _, dup := out[name]; dup {
				return nil, errdefs.InvalidArgument("--warm-pool: pool %q is given twice; give each pool once", name)
			}
			out[name] = count
		}
	}
	return out, nil
}

// poolName names the pool of runtime rt's size class size.
func poolName(rt string, size sizing.Size) string { return rt + ":" + size.Class() }

// PoolRuntime is the runtime of the pool called name (ParseWarmPools).
func PoolRuntime(name string) string {
	rt, _, _ := strings.Cut(name, ":")
	return rt
}

// splitPoolName returns a pool name's runtime and, for a sized pool, its
// class (ParseWarmPools has checked it).
func splitPoolName(name string) (rt string, size sizing.Size, sized bool) {
	rt, class, sized := strings.Cut(name, ":")
	if sized {
		size, _ = sizing.ParseClass(class)
	}
	return rt, size, sized
}

// newPools checks cfg.WarmPools and makes the pools (nothing runs yet).
func (a *Agent) newPools() error {
	a.pools, a.byRuntime = map[string]*pool{}, map[string][]*pool{}
	names := make([]string, 0, len(a.cfg.WarmPools))
	for name := range a.cfg.WarmPools {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := a.cfg.WarmPools[name]
		if n < 0 {
			return errdefs.InvalidArgument("agent: warm pool %q: size %d is below 0; give 0 (off) or more", name, n)
		}
		if n == 0 {
			continue
		}
		rtName, size, sized := splitPoolName(name)
		rt := a.cfg.Runtimes[rtName]
		if rt == nil {
			return errdefs.InvalidArgument("agent: warm pool %q: runtime %s is not available on this host; the host's runtimes are %s", name, rtName, strings.Join(a.cfg.Host.Runtimes, ", "))
		}
		w, ok := rt.(runtime.Warmer)
		if !ok {
			return errdefs.InvalidArgument("agent: warm pool %q: runtime %s cannot prepare sandboxes ahead (it has no warm sandboxes); drop it from --warm-pool", name, rtName)
		}
		class := w.WarmClass()
		if sized {
			sw, ok := rt.(runtime.SizedWarmer)
			if !ok {
				return errdefs.InvalidArgument("agent: warm pool %q: runtime %s's warm sandboxes serve tasks of every size; give %s=N", name, rtName, rtName)
			}
			if size.MilliCPU == class.MilliCPU && size.MemoryMiB == class.MemoryMiB {
				return errdefs.InvalidArgument("agent: warm pool %q: %s is runtime %s's own warm class; give %s=N", name, size.Class(), rtName, rtName)
			}
			var err error
			if class, err = sw.SizedWarmClass(size.MilliCPU, size.MemoryMiB); err != nil {
				return errdefs.InvalidArgument("agent: warm pool %q: %v", name, err)
			}
			if cpu, mem := a.allocatableMilliCPU(), a.allocatableMemory(); size.MilliCPU > cpu || size.MemoryMiB > mem {
				return errdefs.InvalidArgument("agent: warm pool %q: a task of %s (vCPU/GB) cannot be placed on this host, which can give tasks %d milli-CPU and %d MiB",
					name, size.Class(), cpu, mem)
			}
		}
		s, isSim := rt.(runtime.Simulated)
		sim := isSim && s.Simulated()
		if !sim && a.cfg.WarmSubnet == "" {
			return errdefs.InvalidArgument("agent: warm pool %q: WarmSubnet is required (the subnet tasks get when they name none)", name)
		}
		p := &pool{a: a, name: name, rtName: rtName, rt: rt, warmer: w, class: class, target: n, sim: sim,
			kick: make(chan struct{}, 1)}
		if pr, ok := rt.(runtime.Primer); ok && !sim {
			p.primer = pr
		}
		a.pools[name] = p
		a.byRuntime[rtName] = append(a.byRuntime[rtName], p)
	}
	// The smallest class first (a class of any size last), for takeWarm.
	for _, ps := range a.byRuntime {
		slices.SortStableFunc(ps, func(x, y *pool) int {
			key := func(c runtime.WarmClass) []int64 {
				if c.MilliCPU == 0 || c.MemoryMiB == 0 {
					return []int64{math.MaxInt64, math.MaxInt64}
				}
				return []int64{c.MemoryMiB, c.MilliCPU}
			}
			return slices.Compare(key(x.class), key(y.class))
		})
	}
	return nil
}

func newWarmID(rt string) string {
	var b [4]byte
	rand.Read(b[:])
	return WarmIDPrefix + rt + "-" + hex.EncodeToString(b[:])
}

// allocatableMilliCPU is the host CPU tasks may be given.
func (a *Agent) allocatableMilliCPU() int64 {
	r := a.cfg.Host.CPUAllocationRatio
	if r <= 0 {
		r = 1
	}
	return int64(float64(a.cfg.Host.MilliCPU) * r)
}

// allocatableMemory is the host memory tasks may be given.
func (a *Agent) allocatableMemory() int64 {
	r := a.cfg.Host.MemoryAllocationRatio
	if r <= 0 {
		r = 1
	}
	return int64(float64(a.cfg.Host.MemoryMiB) * r)
}

// placedMemory is what the tasks placed here hold: those with a worker.
func (a *Agent) placedMemory() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sum int64
	for _, w := range a.workers {
		sum += w.memoryMiB
	}
	return sum
}

// poolMemoryLocked is what the pools hold, ready or being made. a.poolMu
// is held.
func (a *Agent) poolMemoryLocked() int64 {
	var sum int64
	for _, p := range a.pools {
		sum += int64(len(p.ready)+p.warming+p.claiming) * p.class.IdleMemoryMiB
		for _, e := range p.ready {
			sum += e.mem
		}
	}
	return sum
}

// shrinkPools deletes warm sandboxes, newest first, until the pools and
// the placed tasks fit the host's allocatable memory: the pools only ever
// use memory no task was given, so a task is never refused for them (the
// control plane places by the tasks' memory alone).
func (a *Agent) shrinkPools(ctx context.Context) {
	if len(a.pools) == 0 {
		return
	}
	free := a.allocatableMemory() - a.placedMemory()
	type victim struct {
		p *pool
		e warmEntry
	}
	var victims []victim
	a.poolMu.Lock()
	for a.poolMemoryLocked() > free {
		// The newest entry of any pool that holds memory.
		var from *pool
		for _, name := range a.poolNames() {
			p := a.pools[name]
			if len(p.ready) > 0 && (p.class.IdleMemoryMiB > 0 || p.primer != nil) && (from == nil || len(p.ready) > len(from.ready)) {
				from = p
			}
		}
		if from == nil {
			break // what remains is being made; refill checks again after
		}
		e := from.ready[len(from.ready)-1]
		from.ready = from.ready[:len(from.ready)-1]
		victims = append(victims, victim{from, e})
	}
	a.poolMu.Unlock()
	for _, v := range victims {
		a.log.Info("deleting a warm sandbox: the host's memory is needed by its tasks", "pool", v.p.name, "warm_sandbox", v.e.id,
			"allocatable_mib", a.allocatableMemory(), "tasks_mib", a.allocatableMemory()-free)
		v.p.destroy(ctx, v.e.id, false)
	}
}

func (a *Agent) poolNames() []string {
	names := make([]string, 0, len(a.pools))
	for n := range a.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// WarmPools reports the host's warm pools, by name.
func (a *Agent) WarmPools() []agentproto.WarmPool {
	a.poolMu.Lock()
	defer a.poolMu.Unlock()
	var out []agentproto.WarmPool
	for _, name := range a.poolNames() {
		p := a.pools[name]
		mem := int64(len(p.ready)) * p.class.IdleMemoryMiB
		primed := 0
		for _, e := range p.ready {
			mem += e.mem
			if e.primed != "" && e.primed != noPrime {
				primed++
			}
		}
		out = append(out, agentproto.WarmPool{Runtime: p.rtName, Class: p.classText(), Target: p.target, Ready: len(p.ready), Hits: p.hits,
			Misses: p.misses, MemoryMiB: mem, Primed: primed, PrimedHits: p.primedHits})
	}
	return out
}

// classText is the pool's class as VCPU/GB (sizing.Size.Class), "" for a
// class of any size.
func (p *pool) classText() string {
	if p.class.MilliCPU == 0 || p.class.MemoryMiB == 0 {
		return ""
	}
	return sizing.Size{MilliCPU: p.class.MilliCPU, MemoryMiB: p.class.MemoryMiB}.Class()
}

// runPools refills each pool until ctx is done.
func (a *Agent) runPools(ctx context.Context) {
	for _, p := range a.pools {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			p.refill(ctx)
		}()
	}
}

func (p *pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// refill makes warm sandboxes, one at a time, while the pool holds fewer
// than its target and the host's memory has room; after a failure it
// waits (1 s, doubling up to maxWarmBackoff) before the next attempt.
func (p *pool) refill(ctx context.Context) {
	a := p.a
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if backoff > 0 {
			if sleep(ctx, backoff) != nil {
				return
			}
		}
		placed := a.placedMemory() // a.mu is never taken inside poolMu
		a.poolMu.Lock()
		need := len(p.ready)+p.warming+p.claiming < p.target
		fits := a.poolMemoryLocked()+p.class.IdleMemoryMiB <= a.allocatableMemory()-placed
		quiet := p.launching == 0
		if need && fits && quiet {
			p.warming++
		}
		// A full pool replaces the sandboxes primed for a task
		// definition it no longer primes for, one at a time.
		var stale *warmEntry
		if !need && quiet {
			if e, ok := p.takeStaleLocked(); ok {
				stale = &e
			}
		}
		// A new sandbox is primed while fewer than maxPrimed are, for the
		// recipe with the fewest; the rest stay unprimed, for tasks of
		// other definitions.
		recipe := p.nextRecipeLocked()
		a.poolMu.Unlock()
		if stale != nil {
			a.log.Debug("deleting a warm sandbox primed for another task definition", "pool", p.name, "warm_sandbox", stale.id)
			p.destroyWith(context.WithoutCancel(ctx), stale.id)
			continue
		}
		if !need || !fits || !quiet {
			// Wait for a claim, a hit's start, a task's end or a retry of
			// the memory check.
			select {
			case <-ctx.Done():
				return
			case <-p.kick:
			case <-time.After(5 * time.Second):
			}
			continue
		}
		id := newWarmID(p.rtName)
		// One to be primed is attached as the recipe's task would be
		// (its DNS settings in its /etc files, which its containers bind).
		var o network.AttachOptions
		if recipe != nil {
			o = attachOptions(recipe.t)
		}
		e, err := p.warm(ctx, id, o)
		if err == nil && recipe != nil {
			var ok bool
			if e, ok = p.prime(ctx, e, recipe); !ok {
				err = fmt.Errorf("warm sandbox %s was lost while it was primed", id)
			}
		}
		a.poolMu.Lock()
		p.warming--
		if err == nil {
			p.ready = append(p.ready, e)
		}
		a.poolMu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, a.cfg.WarmRetry), maxWarmBackoff)
			a.log.Warn("making a warm sandbox failed; trying again later", "pool", p.name, "err", err, "retry_in", backoff)
			continue
		}
		backoff = 0
		a.log.Debug("warm sandbox ready", "pool", p.name, "warm_sandbox", id, "ip", e.ip, "primed", e.primed != "")
		// A task's assignment may have taken the memory meanwhile.
		a.shrinkPools(ctx)
	}
}

// warm makes warm sandbox id: its attachment (with o), then the
// runtime's part. On failure nothing of it is left.
func (p *pool) warm(ctx context.Context, id string, o network.AttachOptions) (warmEntry, error) {
	a := p.a
	e := warmEntry{id: id}
	milliCPU, memMiB := p.warmSize()
	spec := runtime.Spec{ID: id, MilliCPU: milliCPU, MemoryMiB: memMiB,
		Labels: map[string]string{LabelHost: a.cfg.Host.ID, LabelWarm: p.name}}
	if !p.sim {
		att, err := a.cfg.Network.Attach(ctx, id, a.cfg.WarmSubnet, o)
		if err != nil {
			return e, fmt.Errorf("attaching warm sandbox %s to subnet %s: %w", id, a.cfg.WarmSubnet, err)
		}
		spec.NetNSPath, spec.EtcDir, spec.Hostname = att.NetNSPath, att.EtcDir, att.Hostname
		e.ip = att.IP.String()
	}
	if err := p.warmer.Warm(ctx, spec); err != nil {
		// A context ended in the middle may leave a part the runtime made.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		p.destroyWith(dctx, id)
		return e, err
	}
	return e, nil
}

// warmSize is the size a warm sandbox is made with: its class's, and
// where the class says any (0), the largest a task here can have (the
// host's CPUs, its allocatable memory), which Claim lowers to the task's.
func (p *pool) warmSize() (milliCPU, memoryMiB int64) {
	milliCPU, memoryMiB = p.class.MilliCPU, p.class.MemoryMiB
	if milliCPU <= 0 {
		milliCPU = max(p.a.cfg.Host.MilliCPU, 1)
	}
	if memoryMiB <= 0 {
		memoryMiB = max(p.a.allocatableMemory(), 1)
	}
	return milliCPU, memoryMiB
}

// destroy deletes warm sandbox id and its attachment, in the background
// unless wait.
func (p *pool) destroy(ctx context.Context, id string, wait bool) {
	if wait {
		p.destroyWith(ctx, id)
		return
	}
	p.a.wg.Add(1)
	go func() {
		defer p.a.wg.Done()
		p.destroyWith(context.WithoutCancel(ctx), id)
	}()
}

// destroyRuntimePart deletes warm sandbox id in its runtime only: its
// attachment was moved to a task, which releases it.
func (p *pool) destroyRuntimePart(ctx context.Context, id string) {
	err := p.rt.Delete(context.WithoutCancel(ctx), id)
	if err != nil && !errdefs.IsNotFound(err) {
		p.a.log.Error("deleting a warm sandbox failed", "pool", p.name, "warm_sandbox", id, "err", err)
	}
}

func (p *pool) destroyWith(ctx context.Context, id string) {
	err := p.rt.Delete(ctx, id)
	if errdefs.IsNotFound(err) {
		err = nil
	}
	if err != nil {
		// Its attachment stays while something may still run in it; the
		// next start of the agent deletes both.
		p.a.log.Error("deleting a warm sandbox failed", "pool", p.name, "warm_sandbox", id, "err", err)
		return
	}
	if !p.sim {
		if err := p.a.cfg.Network.Detach(ctx, id); err != nil {
			p.a.log.Error("detaching a warm sandbox failed", "pool", p.name, "warm_sandbox", id, "err", err)
		}
	}
}

// DropPools deletes the warm sandboxes the pools hold, with their
// attachments, once Run has returned: a graceful stop of the agent
// (SIGTERM) leaves no warm sandbox behind, since a pool is made again at
// the next start, while a crash leaves them to the next start, which
// adopts them. Tasks' sandboxes are not touched. It logs and returns how
// many it deleted.
func (a *Agent) DropPools(ctx context.Context) int {
	n := 0
	for _, name := range a.poolNames() {
		p := a.pools[name]
		a.poolMu.Lock()
		ready := p.ready
		p.ready = nil
		a.poolMu.Unlock()
		for _, e := range ready {
			p.destroyWith(ctx, e.id)
			n++
		}
	}
	if n > 0 {
		a.log.Info("warm sandboxes deleted", "count", n)
	}
	return n
}

// takeWarm hands out a warm sandbox of runtime rt that can serve t on
// subnet, from the pool of t's size class: the smallest class of the
// runtime's pools that serves it (a larger class's sandboxes are kept for
// the larger tasks only they serve, and a small task in a large VM would
// hold more host memory than it was placed for). Else it says why none
// can (the task then starts cold: a miss) and returns the pool that
// counts the miss, nil if the runtime has no pool.
func (a *Agent) takeWarm(rt string, t *task.Task, subnet string) (*pool, warmEntry, string) {
	pools := a.byRuntime[rt]
	if len(pools) == 0 {
		return nil, warmEntry{}, ""
	}
	var p *pool
	for _, q := range pools {
		if q.class.Serves(t.MilliCPU(), t.MemoryMiB) {
			p = q
			break
		}
	}
	if p == nil {
		p = pools[len(pools)-1]
		return p, warmEntry{}, fmt.Sprintf("the task's size (%d milli-CPU, %d MiB) is larger than every warm pool's class of the runtime (the largest: %d milli-CPU, %d MiB)",
			t.MilliCPU(), t.MemoryMiB, p.class.MilliCPU, p.class.MemoryMiB)
	}
	if !p.sim && subnet != a.cfg.WarmSubnet {
		return p, warmEntry{}, fmt.Sprintf("the task's subnet %s is not the pool's %s", subnet, a.cfg.WarmSubnet)
	}
	if !p.sim {
		if _, ok := a.cfg.Network.Get(t.ID); ok {
			// A start begun by an agent that went away: the task keeps
			// the attachment it has.
			return p, warmEntry{}, "the task already has a network attachment"
		}
	}
	a.poolMu.Lock()
	defer a.poolMu.Unlock()
	if len(p.ready) == 0 {
		return p, warmEntry{}, fmt.Sprintf("pool %s is empty", p.name)
	}
	// One primed with the task's containers, else one not primed. One
	// primed for another task definition is kept for it: its claim would
	// first delete the primed containers, which takes longer than a cold
	// start (the refill replaces it once the pool learnt another
	// definition).
	i, key := 0, p.primeKey(t)
	if key != "" {
		i = slices.IndexFunc(p.ready, func(e warmEntry) bool { return e.primed == key })
		if i < 0 {
			i = slices.IndexFunc(p.ready, func(e warmEntry) bool { return e.primed == "" || e.primed == noPrime })
		}
		if i < 0 {
			return p, warmEntry{}, fmt.Sprintf("pool %s's warm sandboxes are primed for another task definition", p.name)
		}
	}
	e := p.ready[i]
	p.ready = slices.Delete(p.ready, i, i+1)
	p.claiming++
	e.forTask = e.primed != "" && e.primed != noPrime && e.primed == key
	return p, e, ""
}

// giveBack returns an entry a claim did not use (the runtime turned the
// task down) to the front of the pool.
func (p *pool) giveBack(e warmEntry) {
	e.forTask = false
	p.a.poolMu.Lock()
	p.claiming--
	p.ready = append([]warmEntry{e}, p.ready...)
	p.a.poolMu.Unlock()
}

// settle ends the claim of a taken entry: the task took it (a hit, primed
// if the sandbox was primed for it), or it was deleted. The refill makes
// its replacement; after a hit, once the function settle returns has
// been called (the task's containers started, or its start failed; later
// calls do nothing).
func (p *pool) settle(hit, primed bool) (started func()) {
	p.a.poolMu.Lock()
	p.claiming--
	if hit {
		p.hits++
		p.launching++
		if primed {
			p.primedHits++
		}
	}
	p.a.poolMu.Unlock()
	p.poke()
	if !hit {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.a.poolMu.Lock()
			p.launching--
			p.a.poolMu.Unlock()
			p.poke()
		})
	}
}

// miss counts a task of the runtime that starts cold.
func (p *pool) miss() {
	p.a.poolMu.Lock()
	p.misses++
	p.a.poolMu.Unlock()
}

// pokePools wakes every pool's refill (a task ended: memory is free).
func (a *Agent) pokePools() {
	for _, p := range a.pools {
		p.poke()
	}
}

// adoptPools takes the warm sandboxes an earlier agent left (List shows
// them Warm) into their runtime's pool when their attachment is still
// there and the pool wants them, and deletes the others with their
// attachments. It runs after the network's reconcile, which kept the
// attachments of the warm sandboxes listed (warmKept).
func (a *Agent) adoptPools(ctx context.Context, listed map[string]sandboxRef) {
	var ids []string
	for id, ref := range listed {
		if ref.info.Warm {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		ref := listed[id]
		// Its pool's name, from its label (one made before sized pools
		// has its runtime's name there).
		name := ref.info.Labels[LabelWarm]
		if PoolRuntime(name) != ref.rt.Name() {
			name = ref.rt.Name()
		}
		p := a.pools[name]
		why := ""
		var e warmEntry
		switch {
		case p == nil:
			why = "its pool " + name + " is not kept now"
		case !p.sim:
			att, ok := a.cfg.Network.Get(id)
			if !ok {
				why = "its network attachment is gone"
			} else if att.Subnet != a.cfg.WarmSubnet {
				why = "its subnet is not the pool's"
			} else {
				e = warmEntry{id: id, ip: att.IP.String()}
			}
		default:
			e = warmEntry{id: id}
		}
		if p != nil && p.primer != nil {
			// It may hold containers primed for a task this agent does
			// not know: a claim of other ones deletes them. What they hold
			// counts as a primed sandbox's does.
			e.primed = noPrime
			if len(ref.info.Primed) > 0 {
				spec := runtime.Spec{ID: id}
				for _, n := range ref.info.Primed {
					spec.Containers = append(spec.Containers, runtime.ContainerSpec{Name: n})
				}
				e.mem = p.primer.PrimedMemoryMiB(spec)
			}
		}
		if why == "" {
			a.poolMu.Lock()
			if len(p.ready) < p.target {
				p.ready = append(p.ready, e)
			} else {
				why = "the pool is full"
			}
			a.poolMu.Unlock()
		}
		if why == "" {
			a.log.Info("adopted warm sandbox", "pool", p.name, "warm_sandbox", id, "ip", e.ip)
			continue
		}
		a.log.Info("deleting a warm sandbox an earlier agent left", "runtime", ref.rt.Name(), "warm_sandbox", id, "why", why)
		err := ref.rt.Delete(ctx, id)
		if err != nil && !errdefs.IsNotFound(err) {
			a.log.Error("deleting a warm sandbox failed", "warm_sandbox", id, "err", err)
			continue
		}
		if a.cfg.Network != nil && !(p != nil && p.sim) {
			if s, ok := ref.rt.(runtime.Simulated); !ok || !s.Simulated() {
				if err := a.cfg.Network.Detach(ctx, id); err != nil {
					a.log.Error("detaching a warm sandbox failed", "warm_sandbox", id, "err", err)
				}
			}
		}
	}
}

// reportPools sends the pools to the control plane when they changed
// since the last report it took (force: send anyway, after a
// registration). It reports whether the control plane has them.
func (a *Agent) reportPools(ctx context.Context, last *[]agentproto.WarmPool, force bool) bool {
	r, ok := a.cfg.ControlPlane.(agentproto.WarmPoolReporter)
	if !ok || len(a.pools) == 0 {
		return true
	}
	cur := a.WarmPools()
	if !force && slices.Equal(cur, *last) {
		return true
	}
	if err := r.ReportWarmPools(ctx, a.cfg.Host.ID, cur); err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("reporting the warm pools failed", "err", err)
		}
		return false
	}
	*last = cur
	return true
}
