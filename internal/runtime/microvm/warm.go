package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm/monitor"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// The warm class (runtime.Warmer): a warm VM is booted with 2 vCPUs and
// 4 GiB for its containers, which covers every Fargate size of 0.25 and
// 0.5 vCPU, 1 vCPU up to 4 GiB and the smallest of 2 vCPU: most tasks,
// at the cost of an idle VM a little larger than a small one's (guest
// memory is allocated on first touch). Larger tasks take a VM of a sized
// pool (SizedWarmClass) where the host keeps one, else start cold. A
// claimed VM keeps its vCPUs and memory; the task's size is enforced by
// the guest's cgroup of its containers, and its CPU also by the host's
// quota of QEMU.
const (
	warmMilliCPU  = 2000
	warmMemoryMiB = 4096
)

// warmIdleMiB is the host memory an idle warm VM of memoryMiB holds, with
// some margin: 409-414 MiB measured for 4 GiB under TCG, QEMU and monitor
// (docs/benchmarks.md, "Warm micro-VMs"), counted as 384 MiB plus 1/64 of
// the guest's memory, which its kernel's page structures take at boot.
func warmIdleMiB(memoryMiB int64) int64 { return 384 + memoryMiB/64 }

// Image slots: a warm VM boots with imageSlots empty read-only disks, as
// its task's image disks are unknown and virtio-mmio, the microvm
// machine's transport, has no hotplug. Claim writes each distinct image's erofs file into a slot
// (an in-kernel copy); the guest drops what it had cached of the slot
// (its partition scan at boot) before it mounts it. A task with more
// distinct images, or an image over slotBytes, starts cold.
const (
	imageSlots = 4
	slotBytes  = 32 << 30
)

var _ runtime.Warmer = (*Runtime)(nil)

var _ runtime.SizedWarmer = (*Runtime)(nil)

// WarmClass implements runtime.Warmer.
func (r *Runtime) WarmClass() runtime.WarmClass {
	return runtime.WarmClass{MilliCPU: warmMilliCPU, MemoryMiB: warmMemoryMiB, IdleMemoryMiB: warmIdleMiB(warmMemoryMiB)}
}

// SizedWarmClass implements runtime.SizedWarmer: a VM booted with the
// given size's vCPUs and memory (as Create sizes a VM) serves tasks up to
// it; its idle memory grows with the guest's (warmIdleMiB).
func (r *Runtime) SizedWarmClass(milliCPU, memoryMiB int64) (runtime.WarmClass, error) {
	if milliCPU <= 0 || memoryMiB <= 0 {
		return runtime.WarmClass{}, errdefs.InvalidArgument("microvm runtime: a warm class needs a positive size, not %d milli-CPU and %d MiB", milliCPU, memoryMiB)
	}
	return runtime.WarmClass{MilliCPU: milliCPU, MemoryMiB: memoryMiB, IdleMemoryMiB: warmIdleMiB(memoryMiB)}, nil
}

// slotPath is image slot i of a warm VM whose directory is dir.
func slotPath(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("slot%d.img", i)) }

// makeImageSlots makes a warm VM's empty image slots (sparse files) in
// its directory dir.
func makeImageSlots(dir string) ([]vmDisk, error) {
	var out []vmDisk
	for i := range imageSlots {
		p := slotPath(dir, i)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(slotBytes)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, vmDisk{Serial: imageSerial(i), Path: p, ReadOnly: true})
	}
	return out, nil
}

// fillSlot writes root image img at the start of slot path, after
// emptying it: nothing of an image an earlier, unfinished Claim wrote
// stays beyond the new one. The slot keeps its size, which the guest
// read at boot.
func fillSlot(path, img string) error {
	src, err := os.Open(img)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := dst.Truncate(0); err != nil {
		return err
	}
	if err := dst.Truncate(slotBytes); err != nil {
		return err
	}
	// io.Copy between files is copy_file_range: in the kernel, and a
	// reflink where the file system shares extents.
	// Not synced: the guest reads the slot through the host's page cache,
	// and a host that goes down takes the VM with it.
	_, err = io.Copy(dst, src)
	return err
}

// Warm implements runtime.Warmer: it boots a VM of spec's size (the warm
// class) in spec's network namespace, with its writable disk and empty
// image slots, to its guest agent, which sets up the network and the
// writable disk and waits for its task.
func (r *Runtime) Warm(ctx context.Context, spec runtime.Spec) error {
	if err := runtime.CheckName(spec.ID); err != nil {
		return errdefs.InvalidArgument("microvm runtime: warm sandbox ID %q is not valid: %v", spec.ID, err)
	}
	if len(spec.Containers) > 0 {
		return errdefs.InvalidArgument("microvm runtime: warm sandbox %s: a warm sandbox has no containers; a task adds them with Claim", spec.ID)
	}
	if spec.MilliCPU <= 0 || spec.MemoryMiB <= 0 {
		return errdefs.InvalidArgument("microvm runtime: warm sandbox %s: MilliCPU and MemoryMiB must be positive (the warm class's), got %d and %d",
			spec.ID, spec.MilliCPU, spec.MemoryMiB)
	}
	spec.LogDir = ""
	return r.create(ctx, spec, true)
}

// claimed reports whether warm sandbox w has been claimed: the task its
// ClaimedBy names has a record that names w's VM.
func (r *Runtime) claimed(w *record) bool {
	if w.ClaimedBy == "" {
		return false
	}
	task := &record{}
	return r.store.Load(w.ClaimedBy, task) == nil && task.VM == w.Spec.ID
}

// claimCrash, set by tests, makes Claim stop at the named step as if the
// process had died there (no clean-up): "committing" after the warm
// record names the task and before the task's record exists,
// "committed" right after.
var claimCrash string

var errClaimCrash = errors.New("microvm runtime: claim stopped for a test (claimCrash)")

// Claim implements runtime.Warmer. The task's images are written into
// the warm VM's slots; then the claim is committed by one rename, which
// makes the task's directory with its record, naming the warm VM (the
// record's VM): from then on the sandbox is the task's, found by its ID
// alone, and the VM's files keep their warm ID's directory. Last, the
// VM's monitor takes the task's configuration (its containers, log
// directory and the guest's part; reloadMonitor), and the guest, claimed
// by its new hello, sets the task up.
//
// A crash before the rename leaves the warm sandbox (an image in a slot
// is overwritten by the next Claim); after it, the task's sandbox, which
// Delete removes with its VM.
func (r *Runtime) Claim(ctx context.Context, warmID string, spec runtime.Spec) (err error) {
	if err := spec.Validate(); err != nil {
		return err
	}
	if warmID == spec.ID {
		return errdefs.AlreadyExists("microvm runtime: sandbox %s already exists (the warm sandbox itself)", spec.ID)
	}
	unlockWarm := r.store.Lock(warmID)
	defer unlockWarm()
	unlock := r.store.Lock(spec.ID)
	defer unlock()
	w, err := r.load(warmID, "")
	if errdefs.IsNotFound(err) || err == nil && (!w.Warm || !w.Ready) {
		return errdefs.NotFound("microvm runtime: no warm sandbox %s (never made, deleted, or claimed by a task)", warmID)
	}
	if err != nil {
		return err
	}
	if r.store.Exists(spec.ID) {
		return errdefs.AlreadyExists("microvm runtime: sandbox %s already exists", spec.ID)
	}
	toolkit.FillDefaults(&spec)
	if spec.LogDir == "" {
		spec.LogDir = filepath.Join(r.dir(spec.ID), "logs")
	}
	ws := w.Spec
	switch {
	case spec.MilliCPU > ws.MilliCPU || spec.MemoryMiB > ws.MemoryMiB:
		return errdefs.Conflict("microvm runtime: task %s of %d mCPU / %d MiB is larger than warm sandbox %s (%d mCPU / %d MiB); start it cold",
			spec.ID, spec.MilliCPU, spec.MemoryMiB, warmID, ws.MilliCPU, ws.MemoryMiB)
	case spec.EphemeralStorageGiB > ws.EphemeralStorageGiB:
		return errdefs.Conflict("microvm runtime: task %s wants %d GiB of ephemeral storage, warm sandbox %s has %d GiB; start it cold",
			spec.ID, spec.EphemeralStorageGiB, warmID, ws.EphemeralStorageGiB)
	case spec.NetNSPath != ws.NetNSPath:
		return errdefs.Conflict("microvm runtime: task %s's network namespace %q is not warm sandbox %s's (%q), which its VM is wired to",
			spec.ID, spec.NetNSPath, warmID, ws.NetNSPath)
	}
	distinct := map[string]bool{}
	for _, c := range spec.Containers {
		distinct[imageKey(c.Layers)] = true
	}
	if len(distinct) > imageSlots {
		return errdefs.Conflict("microvm runtime: task %s has %d distinct images, a warm VM has %d image slots; start it cold",
			spec.ID, len(distinct), imageSlots)
	}
	// From here on a failure other than a conflict deletes the warm
	// sandbox (the contract: after any other error neither ID holds
	// anything).
	committed := false
	task := &record{Record: toolkit.Record{Spec: spec, CreatedAt: time.Now(), Ready: true},
		Accel: w.Accel, Net: w.Net, Disks: w.Disks, VM: warmID}
	defer func() {
		switch {
		case err == nil || errors.Is(err, errClaimCrash):
		case committed:
			err = errors.Join(err, r.teardown(task))
		case !errdefs.IsConflict(err):
			err = errors.Join(err, r.teardown(w))
		}
	}()
	images, err := r.images(ctx, spec)
	if err != nil {
		return err
	}
	for _, img := range images {
		if st, err := os.Stat(img.path); err == nil && st.Size() > slotBytes {
			return errdefs.Conflict("microvm runtime: task %s's root image is %d MiB, over a warm VM's image slot (%d MiB); start it cold",
				spec.ID, st.Size()>>20, slotBytes>>20)
		}
	}
	gcfg, err := guestConfig(spec, images)
	if err != nil {
		return err
	}
	for i, img := range images {
		if err := fillSlot(slotPath(r.dir(warmID), i), img.path); err != nil {
			return fmt.Errorf("microvm runtime: image slot %d of warm sandbox %s: %w", i, warmID, err)
		}
	}
	w.ClaimedBy = spec.ID
	if err := r.save(w); err != nil {
		return err
	}
	if claimCrash == "committing" {
		return errClaimCrash
	}
	if err := r.commitClaim(task); err != nil {
		return err
	}
	committed = true
	r.mu.Lock()
	r.vms[spec.ID] = warmID
	if spec.NetNSPath != "" {
		r.netns[spec.ID] = spec.NetNSPath
	}
	r.mu.Unlock()
	if claimCrash == "committed" {
		return errClaimCrash
	}
	dir := r.dir(warmID)
	var mcfg monitor.Config
	data, err := os.ReadFile(filepath.Join(dir, "monitor.json"))
	if err == nil {
		err = json.Unmarshal(data, &mcfg)
	}
	if err != nil {
		return fmt.Errorf("microvm runtime: warm sandbox %s's monitor configuration: %w", warmID, err)
	}
	gcfg.Net = mcfg.Guest.Net
	mcfg.Guest = gcfg
	mcfg.LogDir, mcfg.LogMaxBytes = spec.LogDir, spec.LogMaxBytes
	if data, err = json.Marshal(mcfg); err != nil {
		return err
	}
	if err := fsutil.WriteFileDurable(filepath.Join(dir, "monitor.json"), data); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "ready")); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := r.reloadMonitor(ctx, dir); err != nil {
		return fmt.Errorf("microvm runtime: claim of warm sandbox %s: %w", warmID, err)
	}
	// Once the guest has set the task up, the host's CPU quota of the VM
	// becomes the task's, as at Create (memory stays the class's: the
	// guest's page cache may fill the VM's memory, which the guest's
	// cgroup does not count to the task). Not before: the claim's set-up
	// in the guest (its mounts, cgroups, containers) is the platform's
	// work, and a quota of one core on a VM of two vCPUs stalled it past
	// the boot timeout under emulation and load (a guest that logged its
	// claim received and never its set-up done, in a full run).
	quota := spec.MilliCPU
	if r.accel == AccelTCG {
		quota = (spec.MilliCPU + 999) / 1000 * 1000
	}
	if err := r.cg.setCPU(warmID, quota); err != nil {
		return fmt.Errorf("microvm runtime: claim of warm sandbox %s: the task's CPU quota: %w", warmID, err)
	}
	return nil
}

// reloadMonitor has the VM's running monitor take its rewritten
// configuration and send the guest a hello with it (SIGHUP, see
// monitor.Run), and waits for the guest's answer. The control channel's
// connection stays up through a claim: a monitor stopped and started
// anew, as claims were served before, now and then got no answer to the
// new connection's hello (twice in hundreds of claims; the dropped
// connection is the suspect, its cause in QEMU or the guest was not
// found). Only a monitor that is not
// running, or stops before the answer, is started anew (its hello claims
// the guest too, or gets the state of one already claimed).
func (r *Runtime) reloadMonitor(ctx context.Context, dir string) error {
	pidFile := filepath.Join(dir, "monitor.pid")
	if pid := toolkit.ReadPid(pidFile); alive(pid, dir+"/") && syscall.Kill(pid, syscall.SIGHUP) == nil {
		wctx, cancel := context.WithCancel(ctx)
		go r.helloAgain(wctx, pid, dir)
		err := r.waitReady(wctx, dir, watchProcess(wctx, pid, dir+"/"))
		cancel()
		if !errors.Is(err, errMonitorStopped) {
			return err
		}
	}
	if err := stopProcess(pidFile, dir+"/"); err != nil {
		return err
	}
	monDone, err := r.startMonitor(dir)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.helloAgain(wctx, toolkit.ReadPid(pidFile), dir)
	return r.waitReady(wctx, dir, monDone)
}

// helloRetry is how long a claim waits for the guest's answer before the
// monitor sends its hello again. A claim's hello, or its answer, was lost
// now and then under load, on a new connection and on the one the monitor
// held alike (cause not found); the guest answers a repeated hello with
// its state, which the monitor takes as the answer (a claim already done
// is not done twice). A claim takes well under a second at light load.
const helloRetry = 10 * time.Second

// helloAgain has monitor pid send its hello again (SIGHUP) every
// helloRetry until the guest has answered (dir's ready file) or ctx ends.
func (r *Runtime) helloAgain(ctx context.Context, pid int, dir string) {
	t := time.NewTicker(helloRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return
		}
		r.log.Warn("microvm: the guest has not answered a claim's hello; the monitor sends it again", "dir", dir, "after", helloRetry)
		syscall.Kill(pid, syscall.SIGHUP)
	}
}

// watchProcess reports on the returned channel when pid (with mark in its
// command line, see alive) is gone, checking until ctx ends.
func watchProcess(ctx context.Context, pid int, mark string) <-chan error {
	gone := make(chan error, 1)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for alive(pid, mark) {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		gone <- errors.New("exited")
	}()
	return gone
}

// commitClaim makes the task's directory with its record in one rename
// (from a hidden directory, which List skips): the claim's commit.
func (r *Runtime) commitClaim(task *record) error {
	tmp := filepath.Join(r.cfg.StateDir, ".claim-"+task.Spec.ID)
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(task, "", "  ")
	if err == nil {
		err = fsutil.WriteFileDurable(filepath.Join(tmp, "sandbox.json"), data)
	}
	if err == nil {
		err = os.Rename(tmp, r.dir(task.Spec.ID))
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("microvm runtime: commit the claim of %s: %w", task.Spec.ID, err)
	}
	return fsutil.SyncDir(r.cfg.StateDir)
}

// removeClaimLeftovers removes the hidden directories of claims that
// a crash stopped before their commit.
func (r *Runtime) removeClaimLeftovers() {
	entries, _ := os.ReadDir(r.cfg.StateDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".claim-") {
			os.RemoveAll(filepath.Join(r.cfg.StateDir, e.Name()))
		}
	}
}

// stopProcess kills the process of pid file (checked by mark in its
// command line) and waits until it is gone.
func stopProcess(pidFile, mark string) error {
	pid := toolkit.ReadPid(pidFile)
	if !alive(pid, mark) {
		return nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); alive(pid, mark); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %d did not stop", filepath.Base(pidFile), pid)
		}
	}
	return nil
}
