package server

import (
	"context"

	"fmt"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/scheduler"
	"vessel.dev/vessel/internal/service"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// ProfileDeletingMinimum is how long a deleted profile stays DELETING at
// least, so that clients see the state as on EKS.
const ProfileDeletingMinimum = 2 * time.Second

// controller runs a pass whenever something changes and at least every
// ControllerInterval, while ctx (a term of leadership) lasts. A write
// refused by the term's fence ends it.
func (s *Server) controller(ctx context.Context) {
	tick := time.NewTicker(s.cfg.ControllerInterval)
	defer tick.Stop()
	// The term's first pass, and each pass of the ticker, catch up with the
	// store's current revision; a pass on a change, with this replica's own
	// writes (see catchUp).
	fresh := true
	for {
		pulse := s.pulseChan()
		if err := s.reconcile(ctx, fresh); err != nil && ctx.Err() == nil {
			if store.IsFenced(err) {
				// A successor may lead: stop, and let Leadership end the term.
				s.log.Warn("controller pass refused by the store's fence: this replica no longer leads", "err", err)
				return
			}
			s.log.Error("controller pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-pulse:
			fresh = false
		case <-tick.C:
			fresh = true
		}
	}
}

// reconcile is one controller pass over every task, host and profile;
// fresh as catchUp's.
func (s *Server) reconcile(ctx context.Context, fresh bool) error {
	now := s.cfg.Now()
	if err := s.catchUp(ctx, fresh); err != nil {
		return err
	}
	ctx = withCachedReads(ctx)
	hosts, _, _, err := listJSON[hostRecord](ctx, s.reads(ctx), prefixHosts)
	if err != nil {
		return err
	}
	beats, err := s.storedHeartbeats(ctx)
	if err != nil {
		return err
	}
	drains, err := s.hostDrains(ctx)
	if err != nil {
		return err
	}
	if err := s.tasks.ready(ctx); err != nil {
		return err
	}
	if err := s.reconcileProfiles(ctx, now); err != nil {
		return err
	}
	if err := s.reconcileServices(ctx, drains, now); err != nil {
		return err
	}
	ready := map[string]bool{}
	known := map[string]bool{}
	for _, h := range hosts {
		known[h.ID] = true
		ready[h.ID] = s.hostAlive(h.ID, now, beats)
	}

	addresses, err := s.hostAddresses(ctx, hosts)
	if err != nil {
		return err
	}
	snap := scheduler.Snapshot{}
	for _, h := range hosts {
		_, draining := drains[h.ID]
		snap.Hosts = append(snap.Hosts, scheduler.Host{ID: h.ID,
			Capacity:           scheduler.Resources{MilliCPU: h.MilliCPU, MemoryMiB: h.MemoryMiB},
			CPUAllocationRatio: h.CPUAllocationRatio, MemoryAllocationRatio: h.MemoryAllocationRatio,
			// A draining host takes nothing new but keeps its tasks.
			Runtimes: h.Runtimes, Subnets: h.Subnets, Addresses: addresses[h.ID], Ready: ready[h.ID], Draining: draining})
	}
	// The pass reads the cache's index (passIndex): what waits, and the
	// hosts' summed use, not every task known.
	view := s.tasks.passView()
	if err := s.deleteExpired(ctx, now); err != nil {
		return err
	}
	for _, h := range view.hosts {
		d, draining := drains[h]
		if known[h] && ready[h] && (!draining || !d.StopTasks) {
			continue
		}
		for _, t := range s.tasks.hostTasks(h) {
			if !known[h] || !ready[h] {
				err = s.stopOnLostHost(ctx, t, now)
			} else {
				err = s.stopOnDrainingHost(ctx, t, now)
			}
			if err != nil {
				return err
			}
		}
	}
	var pending []*task.Task
	for _, t := range view.unplaced {
		t = t.Clone() // the cache's copy is shared
		if err := s.reconcileUnplaced(ctx, t, now); err != nil {
			return err
		}
		if !t.Stopped() && t.DesiredStatus == task.StatusRunning {
			pending = append(pending, t)
		}
	}
	snap.Placed = view.use
	s.metrics.setTaskCounts(view.counts)
	if len(pending) == 0 {
		return nil
	}
	// Oldest first.
	sort.SliceStable(pending, func(i, j int) bool { return pending[i].CreatedAt.Before(pending[j].CreatedAt) })
	byID := map[string]*task.Task{}
	for _, t := range pending {
		byID[t.ID] = t
		snap.Pending = append(snap.Pending, scheduler.Request{TaskID: t.ID,
			Size:    scheduler.Resources{MilliCPU: t.MilliCPU(), MemoryMiB: t.MemoryMiB},
			Runtime: t.Runtime, Subnets: t.Subnets, Spread: service.SpreadKey(t), NoAddress: t.Runtime == runtime.Sim})
	}
	start := time.Now()
	plan := scheduler.Schedule(snap)
	s.metrics.schedulerSeconds.Observe(time.Since(start).Seconds())
	// The placements are independent writes: made at once, a distributed
	// store commits them together instead of one round trip each.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(placementWrites)
	for _, p := range plan.Placements {
		g.Go(func() error { return s.applyPlacement(gctx, byID[p.TaskID], p, hosts, now) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.unplacedMu.Lock()
	for _, u := range plan.Unplaced {
		s.unplaced[u.TaskID] = u.Reason + ": " + u.Message
	}
	s.unplacedMu.Unlock()
	for _, u := range plan.Unplaced {
		if t := byID[u.TaskID]; t != nil && t.LastStatus == task.StatusProvisioning {
			if err := s.waitForCapacity(ctx, t.ID, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteExpired deletes the STOPPED tasks kept past StoppedTaskRetention;
// those it does not get to go back into the cache's retention order.
func (s *Server) deleteExpired(ctx context.Context, now time.Time) error {
	expired := s.tasks.takeExpired(now.Add(-s.cfg.StoppedTaskRetention))
	for i, t := range expired {
		if err := s.store.Delete(ctx, taskKey(t.ID), store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
			s.tasks.retainAgain(expired[i:])
			return err
		}
		s.forgetUnplaced(t.ID)
	}
	return nil
}

// placementWrites is how many placements a pass writes at once.
const placementWrites = 64

// waitForCapacity moves a task that no host can take yet from PROVISIONING
// to PENDING, where it waits for capacity.
func (s *Server) waitForCapacity(ctx context.Context, id string, now time.Time) error {
	_, err := s.updateTask(ctx, id, func(t *task.Task) (bool, error) {
		if t.HostID != "" || t.Stopped() || t.LastStatus != task.StatusProvisioning {
			return false, nil
		}
		return true, t.Advance(task.StatusPending, now)
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// catchUp waits until the task cache reflects every write this replica
// made, so that a pass never plans from a view without its own last
// placements and launches; fresh, every write made by anyone so far (a
// round trip to the store). Another replica's write missing from the
// cache only delays what follows from it: it arrives as a change, which
// runs a pass, and every decision is written with a revision check. A
// deletion has no revision to wait for: the pass after one is fresh.
func (s *Server) catchUp(ctx context.Context, fresh bool) error {
	rev := s.own.rev.Load()
	if s.own.deleted.Swap(false) || fresh {
		_, r, err := s.store.List(ctx, keyMetaVersion)
		if err != nil {
			return err
		}
		rev = max(rev, r)
	}
	for {
		pulse := s.pulseChan()
		if s.tasks.revision() >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pulse:
		case <-time.After(time.Second):
			// The watch may be re-listing; look again.
		}
	}
}

func (s *Server) forgetUnplaced(id string) {
	s.unplacedMu.Lock()
	delete(s.unplaced, id)
	s.unplacedMu.Unlock()
}

// reconcileUnplaced moves an unplaced task: a stop asked for before
// placement → STOPPED, and a task that waited too long → STOPPED with
// TaskFailedToStart. (PROVISIONING → PENDING is written with the placement,
// or by waitForCapacity when there is none.)
func (s *Server) reconcileUnplaced(ctx context.Context, t *task.Task, now time.Time) error {
	if t.DesiredStatus != task.StatusStopped && now.Sub(t.CreatedAt) <= s.cfg.PendingTimeout {
		// Nothing to change, as far as the cache tells: a store read for
		// each waiting task on every pass would cost more than the pass.
		return nil
	}
	updated, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
		if t.HostID != "" || t.Stopped() {
			return false, nil
		}
		if t.DesiredStatus == task.StatusStopped {
			return true, t.Advance(task.StatusStopped, now)
		}
		if now.Sub(t.CreatedAt) > s.cfg.PendingTimeout {
			s.unplacedMu.Lock()
			why := s.unplaced[t.ID]
			s.unplacedMu.Unlock()
			if why == "" {
				why = "no host could take it"
			}
			t.RequestStop(task.StopCodeTaskFailedToStart,
				fmt.Sprintf("%s: the task waited %s for capacity: %s", task.ReasonResourceInitialization, s.cfg.PendingTimeout, why), now)
			return true, t.Advance(task.StatusStopped, now)
		}
		return false, nil
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	*t = *updated
	if t.Stopped() {
		s.forgetUnplaced(t.ID)
	}
	return nil
}

// applyPlacement binds a pending task to a host, unless it changed
// meanwhile; a task still PROVISIONING becomes PENDING in the same write.
func (s *Server) applyPlacement(ctx context.Context, t *task.Task, p scheduler.Placement, hosts []hostRecord, now time.Time) error {
	var host *hostRecord
	for i := range hosts {
		if hosts[i].ID == p.HostID {
			host = &hosts[i]
		}
	}
	placed := false
	_, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
		placed = false
		if t.HostID != "" || t.DesiredStatus != task.StatusRunning || t.Stopped() {
			return false, nil
		}
		placed = true
		t.HostID = p.HostID
		t.Subnet = p.Subnet
		if t.Subnet == "" && len(t.Subnets) > 0 {
			t.Subnet = t.Subnets[0]
		}
		if t.Runtime == "" && host != nil {
			t.Runtime = host.DefaultRuntime
		}
		if t.LastStatus == task.StatusProvisioning {
			return true, t.Advance(task.StatusPending, now)
		}
		return true, nil
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err == nil && placed {
		s.metrics.placements.Inc()
		s.forgetUnplaced(t.ID)
		s.log.Debug("task placed", "task", t.ID, "host", p.HostID, "subnet", p.Subnet)
	}
	return err
}

// stopOnLostHost stops a task whose host is gone or silent for longer than
// HostTimeout: its sandbox is out of reach, so the task is STOPPED at once
// and a service (or a controller in Kubernetes) may replace it.
func (s *Server) stopOnLostHost(ctx context.Context, t *task.Task, now time.Time) error {
	_, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
		if t.Stopped() {
			return false, nil
		}
		t.RequestStop(task.StopCodeTerminationNotice,
			fmt.Sprintf("Host %s stopped sending heartbeats for more than %s; its tasks were stopped", t.HostID, s.cfg.HostTimeout), now)
		return true, t.Advance(task.StatusStopped, now)
	})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err == nil {
		s.log.Warn("task stopped: its host is lost", "task", t.ID, "host", t.HostID)
	}
	return err
}

// reconcileProfiles makes CREATING profiles ACTIVE and removes DELETING
// ones once the tasks they placed are stopped.
func (s *Server) reconcileProfiles(ctx context.Context, now time.Time) error {
	profiles, revs, _, err := listJSON[profileRecord](ctx, s.reads(ctx), prefixProfiles)
	if err != nil {
		return err
	}
	var tasks []*task.Task // read only while a profile is being deleted
	for i, p := range profiles {
		key := profileKey(p.Cluster, p.Name)
		switch p.Status {
		case api.FargateProfileStatusCreating:
			p.Status = api.FargateProfileStatusActive
			p.StatusChangedAt = now
			if _, err := putJSON(ctx, s.store, key, p, revs[i]); err != nil && !errdefs.IsConflict(err) {
				return err
			}
		case api.FargateProfileStatusDeleting:
			if tasks == nil {
				if tasks, _, err = s.tasks.snapshot(ctx); err != nil {
					return err
				}
			}
			busy := false
			for _, t := range tasks {
				if t.Cluster != p.Cluster || t.Stopped() || !hasTag(t.Tags, TagProfile, p.Name) {
					continue
				}
				busy = true
				if t.DesiredStatus != task.StatusStopped {
					_, err := s.updateTask(ctx, t.ID, func(t *task.Task) (bool, error) {
						return t.RequestStop(task.StopCodeUserInitiated,
							task.ProfileDeletedReason+p.Name, now), nil
					})
					if err != nil && !errdefs.IsNotFound(err) {
						return err
					}
				}
			}
			if !busy && now.Sub(p.StatusChangedAt) >= ProfileDeletingMinimum {
				if err := s.store.Delete(ctx, key, revs[i]); err != nil && !errdefs.IsConflict(err) && !errdefs.IsNotFound(err) {
					return err
				}
			}
		}
	}
	return nil
}

func hasTag(tags []task.Tag, key, value string) bool {
	for _, t := range tags {
		if t.Key == key && t.Value == value {
			return true
		}
	}
	return false
}
