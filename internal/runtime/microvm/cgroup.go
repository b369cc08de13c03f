package microvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// The QEMU process of a sandbox runs in cgroup vessel-microvm/<id> of each
// hierarchy (a name of its own, apart from runc's vessel/<id>). The host's
// layout and the file writes are the toolkit's (toolkit.Cgroups and its
// helpers); the cgroup itself is made here, as a leaf QEMU writes itself
// into, with fewer limits than runc's (no swap limit, no controllers for
// children).
const cgroupRoot = toolkit.CgroupRoot

// cgroups is the host's layout as the toolkit detects it.
type cgroups struct{ host *toolkit.Cgroups }

func detectCgroups() (*cgroups, error) {
	cg, err := toolkit.DetectCgroups()
	if err != nil {
		return nil, err
	}
	return &cgroups{cg}, nil
}

func cgroupPath(id string) string { return filepath.Join("vessel-microvm", id) }

// create makes the sandbox's cgroups and returns the cgroup.procs files a
// process writes itself into.
func (cg *cgroups) create(id string, milliCPU, memBytes, pids int64) ([]string, error) {
	const period = 100_000
	quota := strconv.FormatInt(milliCPU*period/1000, 10)
	if cg.host.V2() {
		parent := filepath.Join(cgroupRoot, "vessel-microvm")
		dir := filepath.Join(parent, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for _, d := range []string{cgroupRoot, parent} {
			if err := toolkit.WriteCgroupFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
				return nil, err
			}
		}
		for _, f := range [][2]string{{"cpu.max", quota + " " + strconv.Itoa(period)},
			{"memory.max", strconv.FormatInt(memBytes, 10)}, {"pids.max", strconv.FormatInt(pids, 10)}} {
			if err := toolkit.WriteCgroupFile(filepath.Join(dir, f[0]), f[1]); err != nil {
				return nil, err
			}
		}
		return []string{filepath.Join(dir, "cgroup.procs")}, nil
	}
	var procs []string
	// cpuacct, when mounted, counts the VM's CPU time (Stats).
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		h := cg.host.Controller(c)
		if h == "" || c == "cpuacct" && h == cg.host.Controller("cpu") {
			continue
		}
		dir := filepath.Join(h, cgroupPath(id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	cpu, mem := filepath.Join(cg.host.Controller("cpu"), cgroupPath(id)), filepath.Join(cg.host.Controller("memory"), cgroupPath(id))
	for _, f := range [][2]string{
		{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.Itoa(period)},
		{filepath.Join(cpu, "cpu.cfs_quota_us"), quota},
		{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(memBytes, 10)},
		{filepath.Join(cg.host.Controller("pids"), cgroupPath(id), "pids.max"), strconv.FormatInt(pids, 10)},
	} {
		if err := toolkit.WriteCgroupFile(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

// setCPU sets the CPU quota of sandbox id's cgroup to milliCPU.
func (cg *cgroups) setCPU(id string, milliCPU int64) error {
	const period = 100_000
	quota := strconv.FormatInt(milliCPU*period/1000, 10)
	if cg.host.V2() {
		return toolkit.WriteCgroupFile(filepath.Join(cgroupRoot, "vessel-microvm", id, "cpu.max"), quota+" "+strconv.Itoa(period))
	}
	return toolkit.WriteCgroupFile(filepath.Join(cg.host.Controller("cpu"), cgroupPath(id), "cpu.cfs_quota_us"), quota)
}

func (cg *cgroups) dirs(id string) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range cg.host.Hierarchies() {
		if !seen[h] {
			seen[h] = true
			out = append(out, filepath.Join(h, cgroupPath(id)))
		}
	}
	return out
}

func (cg *cgroups) remove(id string) error {
	var errs []error
	for _, dir := range cg.dirs(id) {
		if err := toolkit.RemoveCgroupDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (cg *cgroups) leftovers(id string) []string {
	var out []string
	for _, dir := range cg.dirs(id) {
		if _, err := os.Stat(dir); err == nil {
			out = append(out, "cgroup "+dir)
		}
	}
	return out
}

var _ runtime.Statser = (*Runtime)(nil)

// Stats implements runtime.Statser. A container's counters come from its
// cgroup in the guest (guestproto.OpStats); the whole sandbox's from the
// host's cgroup of its QEMU process (the VM, guest and monitor together).
func (r *Runtime) Stats(ctx context.Context, id, container string) (runtime.Usage, bool, error) {
	if container != "" {
		rec, err := r.load(id, container)
		if err != nil {
			return runtime.Usage{}, false, err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := r.ask(ctx, rec, guestproto.Msg{Op: guestproto.OpStats, Container: container})
		if err != nil {
			return runtime.Usage{}, false, err
		}
		if u := resp.Usage; u != nil {
			return runtime.Usage{CPUNanos: u.CPU, CPUUserNanos: u.CPUUser, CPUSystemNanos: u.CPUSystem,
				MemoryBytes: u.Memory, MemoryMaxBytes: u.MemoryMax, MemoryLimitBytes: u.Limit, MemoryStat: u.MemStat}, false, nil
		}
		return runtime.Usage{}, false, fmt.Errorf("microvm runtime: sandbox %s: the guest answered stats of %s without counters", id, container)
	}
	vm := id
	if rec, err := r.load(id, ""); err == nil {
		vm = rec.vm()
	}
	u, err := r.cg.host.Usage(cgroupPath(vm))
	if errors.Is(err, fs.ErrNotExist) {
		return u, false, errdefs.NotFound("microvm runtime: sandbox %s has no counters (it does not exist): %v", id, err)
	}
	return u, false, err
}
