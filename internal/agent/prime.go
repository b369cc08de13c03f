package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// Primed warm sandboxes: a pool whose runtime can create containers
// ahead of their task (runtime.Primer: runc) primes its warm sandboxes
// with the containers of the last tasks of the pool that could be
// (learn, one recipe per task definition): the refill attaches a new
// warm sandbox as such a task was (its DNS settings) and primes it, so
// the same task definition run again finds its containers created, and
// its start only lets them run. The runtime's Claim keeps primed
// containers only when they are exactly the task's (the same
// specs, hostname, /etc files and log cap), else deletes them first, so
// a recipe that no longer fits (an image tag that moved, settings the
// key does not see) costs time, never correctness. A task of another
// definition does not take a sandbox primed for one (takeWarm: deleting
// the primed containers in its claim would take longer than its cold
// start): it starts cold and teaches the pool its own definition. A
// pool primes all its sandboxes but one (maxPrimed), which stays for the
// tasks of other definitions, spread over the last maxPrimed definitions
// it learnt (the fewest primed first); the refill replaces the sandboxes
// primed for a definition it no longer keeps, one at a time. Each primed
// sandbox is still used once, by the one task that claims it.

// primeRecipe is what a pool primes its warm sandboxes with.
type primeRecipe struct {
	key string
	t   *task.Task
}

// primeKey is what the containers of a sandbox primed for t depend on
// beyond the sandbox itself (its address and ID): t's container
// definitions (without their status), fsGroup, restart policy and DNS
// settings (the /etc files they bind). "" when the pool does not
// prime.
func (p *pool) primeKey(t *task.Task) string {
	if p == nil || p.primer == nil {
		return ""
	}
	cs := make([]task.Container, len(t.Containers))
	for i, c := range t.Containers {
		c.ResetStatus()
		cs[i] = c
	}
	data, err := json.Marshal(struct {
		Containers    []task.Container
		FSGroup       *uint32
		RestartPolicy string
		DNS           *task.DNSConfig
	}{cs, t.FSGroup, t.RestartPolicy, t.DNS})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}

// learn makes t, which has just been given its sandbox, the pool's latest
// recipe (dropping the oldest beyond maxPrimed), if its containers can be
// created ahead of it: it takes the pool's warm sandboxes (its subnet),
// and needs neither volumes, secrets nor a hostname of its own (those
// are a task's own; its DNS settings are the cluster's, and the warm
// sandboxes to be primed are attached with them).
func (p *pool) learn(t *task.Task, secrets agentproto.TaskSecrets, mounts map[string][]runtime.Mount) {
	if p == nil || p.primer == nil {
		return
	}
	if t.Subnet != p.a.cfg.WarmSubnet || t.Hostname != "" || len(t.Volumes) > 0 ||
		len(secrets.Env) > 0 || len(secrets.RegistryAuth) > 0 {
		return
	}
	for _, m := range mounts {
		if len(m) > 0 {
			return
		}
	}
	key := p.primeKey(t)
	p.a.poolMu.Lock()
	i := slices.IndexFunc(p.recipes, func(r *primeRecipe) bool { return r.key == key })
	changed := i != 0
	if changed {
		r := &primeRecipe{key: key, t: t.Clone()}
		if i > 0 {
			p.recipes = slices.Delete(p.recipes, i, i+1)
		}
		p.recipes = slices.Insert(p.recipes, 0, r)
		if len(p.recipes) > p.maxPrimed() {
			p.recipes = p.recipes[:p.maxPrimed()]
		}
	}
	p.a.poolMu.Unlock()
	if changed {
		p.a.log.Debug("warm pool primes its sandboxes for the task's definition", "pool", p.name, "task", t.ID, "key", key)
		p.poke()
	}
}

// forget drops recipe r from the pool's (priming with it failed: it is
// not tried again until a task teaches it anew).
func (p *pool) forget(r *primeRecipe) {
	p.a.poolMu.Lock()
	p.recipes = slices.DeleteFunc(p.recipes, func(x *primeRecipe) bool { return x == r })
	p.a.poolMu.Unlock()
}

// prime creates r's containers in warm sandbox e. It returns e with what
// it holds now, and false when nothing is left of it (the runtime
// deleted it, its attachment is released here). A failure is logged and
// drops the recipe; e stays as it was when the runtime left it.
func (p *pool) prime(ctx context.Context, e warmEntry, r *primeRecipe) (warmEntry, bool) {
	a := p.a
	began := time.Now()
	spec, err := p.primedSpec(ctx, e, r)
	if err == nil {
		err = p.primer.Prime(ctx, spec)
	}
	if err == nil {
		e.primed, e.mem = r.key, p.primer.PrimedMemoryMiB(spec)
		a.log.Debug("warm sandbox primed", "pool", p.name, "warm_sandbox", e.id, "took", time.Since(began))
		return e, true
	}
	p.forget(r)
	if ctx.Err() != nil {
		// Stopping: whatever is left goes with the pool.
		return e, true
	}
	if spec.Containers == nil || errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
		a.log.Warn("priming a warm sandbox failed; it stays warm, not primed", "pool", p.name, "warm_sandbox", e.id, "err", err)
		e.primed = noPrime
		return e, true
	}
	a.log.Warn("priming a warm sandbox failed; it is deleted", "pool", p.name, "warm_sandbox", e.id, "err", err)
	p.destroyWith(context.WithoutCancel(ctx), e.id)
	return e, false
}

// primedSpec is the spec warm sandbox e is primed with for r: its own
// ID, namespace, /etc files and hostname, r's containers as a task of
// r's would have them in it (its address, its ID in their metadata URIs,
// images pulled as the task's start pulls them), and the log cap the
// task's claim gives.
func (p *pool) primedSpec(ctx context.Context, e warmEntry, r *primeRecipe) (runtime.Spec, error) {
	a := p.a
	att, ok := a.cfg.Network.Get(e.id)
	if !ok {
		return runtime.Spec{}, errdefs.NotFound("warm sandbox %s has no network attachment", e.id)
	}
	spec := runtime.Spec{ID: e.id, NetNSPath: att.NetNSPath, EtcDir: att.EtcDir, Hostname: att.Hostname,
		LogMaxBytes: a.cfg.LogMaxBytes / int64(max(len(r.t.Containers), 1))}
	spec.MilliCPU, spec.MemoryMiB = p.warmSize()
	cs, _, err := a.containerSpecs(ctx, r.t, e.ip, e.id, agentproto.TaskSecrets{}, nil, false,
		func(ctx context.Context, c *task.Container) (*image.Image, error) {
			return a.cfg.Images.Pull(ctx, c.Image, a.pullOptions(c))
		})
	spec.Containers = cs
	return spec, err
}

// maxPrimed is how many of the pool's warm sandboxes are primed: all but
// one, which stays unprimed for the tasks of other definitions (a task
// never takes a sandbox primed for another definition), or the one of a
// pool of one.
func (p *pool) maxPrimed() int { return max(p.target-1, 1) }

// primedLocked counts the ready entries primed with key. a.poolMu is
// held.
func (p *pool) primedLocked(key string) int {
	n := 0
	for _, e := range p.ready {
		if e.primed == key {
			n++
		}
	}
	return n
}

// nextRecipeLocked is the recipe a new warm sandbox is primed with: while
// fewer than maxPrimed ready ones are primed with the pool's recipes, the
// one with the fewest (the latest first among equals); else nil.
// a.poolMu is held.
func (p *pool) nextRecipeLocked() *primeRecipe {
	var next *primeRecipe
	total, fewest := 0, 0
	for _, r := range p.recipes {
		n := p.primedLocked(r.key)
		total += n
		if next == nil || n < fewest {
			next, fewest = r, n
		}
	}
	if total >= p.maxPrimed() {
		return nil
	}
	return next
}

// takeStaleLocked takes the oldest ready entry primed for a task
// definition none of the pool's recipes is out of the pool. a.poolMu is
// held.
func (p *pool) takeStaleLocked() (warmEntry, bool) {
	for i, e := range p.ready {
		if e.primed == "" || e.primed == noPrime {
			continue
		}
		if !slices.ContainsFunc(p.recipes, func(r *primeRecipe) bool { return r.key == e.primed }) {
			p.ready = append(p.ready[:i:i], p.ready[i+1:]...)
			return e, true
		}
	}
	return warmEntry{}, false
}
