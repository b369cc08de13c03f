package toolkit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/fsutil"
)

// CgroupRoot is where the cgroup file systems are mounted (on a v2-only
// host, the unified hierarchy itself).
const CgroupRoot = "/sys/fs/cgroup"

// Cgroups knows the host's cgroup layout: the unified (v2) hierarchy alone,
// or v1 hierarchies, one per mounted controller set (possibly with a unified
// hierarchy beside them, the "hybrid" layout).
type Cgroups struct {
	v2 bool
	// v1 maps a controller ("cpu", "memory", "pids", ...) to the mount point
	// of the hierarchy that carries it.
	v1 map[string]string
	// all lists every hierarchy's mount point (v1 ones, named ones such as
	// name=systemd, and the unified one), where runc may create directories
	// and from which Delete removes the sandbox's.
	all []string
}

// DetectCgroups finds the host's cgroup hierarchies (v2, v1 or hybrid).
func DetectCgroups() (*Cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(CgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &Cgroups{v2: true, all: []string{CgroupRoot}}, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	defer f.Close()
	cg := &Cgroups{v1: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, pfields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(pfields) < 3 {
			continue
		}
		mnt := fsutil.UnescapeMountPath(fields[4])
		if !strings.HasPrefix(mnt, CgroupRoot+"/") {
			continue
		}
		switch pfields[0] {
		case "cgroup2":
			cg.all = append(cg.all, mnt)
		case "cgroup":
			cg.all = append(cg.all, mnt)
			for _, o := range strings.Split(pfields[2], ",") {
				switch o {
				case "cpu", "cpuacct", "memory", "pids":
					cg.v1[o] = mnt
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	for _, c := range []string{"cpu", "memory", "pids"} {
		if cg.v1[c] == "" {
			return nil, fmt.Errorf("cgroups: v1 controller %s is not mounted under %s", c, CgroupRoot)
		}
	}
	return cg, nil
}

// V2 reports whether the host uses the unified hierarchy only.
func (cg *Cgroups) V2() bool { return cg.v2 }

// Controller returns the mount point of the v1 hierarchy that carries
// controller ("cpu", "cpuacct", "memory" or "pids"); "" on a v2-only host
// or when it is not mounted.
func (cg *Cgroups) Controller(controller string) string { return cg.v1[controller] }

// Hierarchies lists every hierarchy's mount point.
func (cg *Cgroups) Hierarchies() []string { return append([]string(nil), cg.all...) }

// SandboxCgroup is the cgroup path of sandbox id, relative to a
// hierarchy's root; ContainerCgroup the one of its container name, nested
// under it so that the sandbox's limits bind all its containers together.
func SandboxCgroup(id string) string         { return filepath.Join("vessel", id) }
func ContainerCgroup(id, name string) string { return filepath.Join("vessel", id, name) }

// Limits is a sandbox's provisioned size as written to its cgroup.
type Limits struct {
	// MilliCPU is the CPU quota; 0 means none yet (SetCPU writes it
	// later: a back end lets its runtime set a container up at full
	// speed, and bounds it before its process runs).
	MilliCPU    int64
	MemoryBytes int64
	Pids        int64
	// CPUPeriodMicros is the CFS period the quota applies to; 100 ms
	// (runc's, defaultCPUPeriodMicros) by default.
	CPUPeriodMicros int64
}

// defaultCPUPeriodMicros is the CFS period of a sandbox's CPU quota unless
// Limits says otherwise.
const defaultCPUPeriodMicros = 100_000

// cpuQuota is what the CPU quota's files take for l: the quota and the
// period in microseconds; a quota of -1 is none.
func (l Limits) cpuQuota() (quota, period int64) {
	period = l.CPUPeriodMicros
	if period == 0 {
		period = defaultCPUPeriodMicros
	}
	if l.MilliCPU <= 0 {
		return -1, period
	}
	return l.MilliCPU * period / 1000, period
}

// cpuMax is cgroup v2's cpu.max value for l.
func (l Limits) cpuMax() string {
	quota, period := l.cpuQuota()
	if quota < 0 {
		return fmt.Sprintf("max %d", period)
	}
	return fmt.Sprintf("%d %d", quota, period)
}

// SetCPU writes only the CPU quota of sandbox id's cgroup (made by
// Create): l.MilliCPU of each l.CPUPeriodMicros.
func (cg *Cgroups) SetCPU(id string, l Limits) error {
	if cg.v2 {
		return WriteCgroupFile(filepath.Join(CgroupRoot, SandboxCgroup(id), "cpu.max"), l.cpuMax())
	}
	quota, period := l.cpuQuota()
	cpu := filepath.Join(cg.v1["cpu"], SandboxCgroup(id))
	if err := WriteCgroupFile(filepath.Join(cpu, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)); err != nil {
		return err
	}
	return WriteCgroupFile(filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10))
}

// Create makes the sandbox's cgroup vessel/<id> (id may name a child, as
// "<id>/<child>") and writes its limits; on an existing cgroup, it
// changes them.
func (cg *Cgroups) Create(id string, l Limits) error {
	quota, period := l.cpuQuota()
	if cg.v2 {
		dir := filepath.Join(CgroupRoot, SandboxCgroup(id))
		// Enable the controllers for the children on the way down.
		parent := filepath.Join(CgroupRoot, "vessel")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		for _, d := range []string{CgroupRoot, parent} {
			if err := WriteCgroupFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
				return err
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if err := WriteCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
			return err
		}
		files := [][2]string{
			{"cpu.max", l.cpuMax()},
			{"memory.max", strconv.FormatInt(l.MemoryBytes, 10)},
			{"pids.max", strconv.FormatInt(l.Pids, 10)},
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			files = append(files, [2]string{"memory.swap.max", "0"})
		}
		for _, f := range files {
			if err := WriteCgroupFile(filepath.Join(dir, f[0]), f[1]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if cg.v1[c] == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(cg.v1[c], SandboxCgroup(id)), 0o755); err != nil {
			return err
		}
	}
	cpu := filepath.Join(cg.v1["cpu"], SandboxCgroup(id))
	mem := filepath.Join(cg.v1["memory"], SandboxCgroup(id))
	files := [][2]string{
		{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)},
		{filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)},
		// The memory limit first: memsw may not go below it.
		{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(l.MemoryBytes, 10)},
		{filepath.Join(cg.v1["pids"], SandboxCgroup(id), "pids.max"), strconv.FormatInt(l.Pids, 10)},
	}
	if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
		// Swap accounting is on: memory+swap equal to memory means no swap.
		memsw := [2]string{filepath.Join(mem, "memory.memsw.limit_in_bytes"), strconv.FormatInt(l.MemoryBytes, 10)}
		files = append(files, memsw)
		// A limit raised on an existing cgroup (a claimed warm sandbox's):
		// memory+swap first, as memory may not go above it.
		if data, err := os.ReadFile(memsw[0]); err == nil {
			if cur, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil && cur < l.MemoryBytes {
				files = append([][2]string{memsw}, files...)
			}
		}
	}
	for _, f := range files {
		if err := WriteCgroupFile(f[0], f[1]); err != nil {
			return err
		}
	}
	return nil
}

// WriteCgroupFile writes value to a cgroup control file; the error names
// both.
func WriteCgroupFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, path, err)
	}
	return nil
}

// OOMKills returns the kernel's count of OOM kills in the cgroup at rel (a
// path relative to the memory hierarchy); a missing cgroup counts 0.
func (cg *Cgroups) OOMKills(rel string) int64 {
	var path, key string
	if cg.v2 {
		path, key = filepath.Join(CgroupRoot, rel, "memory.events"), "oom_kill"
	} else {
		path, key = filepath.Join(cg.v1["memory"], rel, "memory.oom_control"), "oom_kill"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// Remove deletes the sandbox's cgroups (those of the named children of
// vessel/<id> first, then vessel/<id>) from every hierarchy, retrying briefly while the kernel frees
// cgroups whose last process has just exited.
func (cg *Cgroups) Remove(id string, containers []string) error {
	var errs []error
	for _, h := range cg.all {
		for _, name := range containers {
			if err := RemoveCgroupDir(filepath.Join(h, ContainerCgroup(id, name))); err != nil {
				errs = append(errs, err)
			}
		}
		if err := RemoveCgroupDir(filepath.Join(h, SandboxCgroup(id))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveCgroupDir removes one cgroup directory, retrying for up to 3 s
// while the kernel still holds it busy; a missing one is no error.
func RemoveCgroupDir(dir string) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("cgroups: remove %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Leftovers lists the sandbox's cgroup directories that still exist.
func (cg *Cgroups) Leftovers(id string) []string {
	var out []string
	for _, h := range cg.all {
		if _, err := os.Stat(filepath.Join(h, SandboxCgroup(id))); err == nil {
			out = append(out, "cgroup "+filepath.Join(h, SandboxCgroup(id)))
		}
	}
	return out
}

// Processes lists the processes still in the sandbox's cgroups.
func (cg *Cgroups) Processes(id string) []string {
	var out []string
	for _, h := range cg.all {
		filepath.WalkDir(filepath.Join(h, SandboxCgroup(id)), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "cgroup.procs" {
				if data, _ := os.ReadFile(path); len(strings.TrimSpace(string(data))) > 0 {
					out = append(out, "processes in "+path+": "+strings.Join(strings.Fields(string(data)), " "))
				}
			}
			return nil
		})
	}
	return out
}
