package runc

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

// cgroupRoot is where cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups knows the host's cgroup layout: the unified (v2) hierarchy alone,
// or v1 hierarchies, one per mounted controller set (possibly with a unified
// hierarchy beside them, the "hybrid" layout).
type cgroups struct {
	v2 bool
	// v1 maps a controller ("cpu", "memory", "pids", ...) to the mount point
	// of the hierarchy that carries it.
	v1 map[string]string
	// all lists every hierarchy's mount point (v1 ones, named ones such as
	// name=systemd, and the unified one), where runc may create directories
	// and from which Delete removes the sandbox's.
	all []string
}

func detectCgroups() (*cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &cgroups{v2: true, all: []string{cgroupRoot}}, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	defer f.Close()
	cg := &cgroups{v1: map[string]string{}}
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
		if !strings.HasPrefix(mnt, cgroupRoot+"/") {
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
			return nil, fmt.Errorf("cgroups: v1 controller %s is not mounted under %s", c, cgroupRoot)
		}
	}
	return cg, nil
}

// taskPath is the cgroup path of a sandbox, relative to a hierarchy's root;
// containerPath the one of a container, nested under it so that the
// sandbox's limits bind all its containers together.
func taskPath(id string) string            { return filepath.Join("vessel", id) }
func containerPath(id, name string) string { return filepath.Join("vessel", id, name) }

// limits is what the sandbox's parent cgroup is set to.
type limits struct {
	milliCPU  int64
	memory    int64 // bytes
	pids      int64
	cpuPeriod int64 // microseconds
}

// create makes the sandbox's parent cgroup and writes its limits.
func (cg *cgroups) create(id string, l limits) error {
	quota := l.milliCPU * l.cpuPeriod / 1000
	if cg.v2 {
		dir := filepath.Join(cgroupRoot, taskPath(id))
		// Enable the controllers for the children on the way down.
		parent := filepath.Join(cgroupRoot, "vessel")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		for _, d := range []string{cgroupRoot, parent} {
			if err := writeFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
				return err
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
			return err
		}
		files := [][2]string{
			{"cpu.max", fmt.Sprintf("%d %d", quota, l.cpuPeriod)},
			{"memory.max", strconv.FormatInt(l.memory, 10)},
			{"pids.max", strconv.FormatInt(l.pids, 10)},
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			files = append(files, [2]string{"memory.swap.max", "0"})
		}
		for _, f := range files {
			if err := writeFile(filepath.Join(dir, f[0]), f[1]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		if cg.v1[c] == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(cg.v1[c], taskPath(id)), 0o755); err != nil {
			return err
		}
	}
	cpu := filepath.Join(cg.v1["cpu"], taskPath(id))
	mem := filepath.Join(cg.v1["memory"], taskPath(id))
	files := [][2]string{
		{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.FormatInt(l.cpuPeriod, 10)},
		{filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)},
		// The memory limit first: memsw may not go below it.
		{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(l.memory, 10)},
		{filepath.Join(cg.v1["pids"], taskPath(id), "pids.max"), strconv.FormatInt(l.pids, 10)},
	}
	if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
		// Swap accounting is on: memory+swap equal to memory means no swap.
		files = append(files, [2]string{filepath.Join(mem, "memory.memsw.limit_in_bytes"), strconv.FormatInt(l.memory, 10)})
	}
	for _, f := range files {
		if err := writeFile(f[0], f[1]); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, path, err)
	}
	return nil
}

// oomKills returns the kernel's count of OOM kills in the cgroup at rel (a
// path relative to the memory hierarchy); a missing cgroup counts 0.
func (cg *cgroups) oomKills(rel string) int64 {
	var path, key string
	if cg.v2 {
		path, key = filepath.Join(cgroupRoot, rel, "memory.events"), "oom_kill"
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

// remove deletes the sandbox's cgroups (containers' first, then the
// sandbox's) from every hierarchy, retrying briefly while the kernel frees
// cgroups whose last process has just exited.
func (cg *cgroups) remove(id string, containers []string) error {
	var errs []error
	for _, h := range cg.all {
		for _, name := range containers {
			if err := rmdirRetry(filepath.Join(h, containerPath(id, name))); err != nil {
				errs = append(errs, err)
			}
		}
		if err := rmdirRetry(filepath.Join(h, taskPath(id))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
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

// leftovers lists the sandbox's cgroup directories that still exist.
func (cg *cgroups) leftovers(id string) []string {
	var out []string
	for _, h := range cg.all {
		if _, err := os.Stat(filepath.Join(h, taskPath(id))); err == nil {
			out = append(out, "cgroup "+filepath.Join(h, taskPath(id)))
		}
	}
	return out
}

// processes lists the processes still in the sandbox's cgroups.
func (cg *cgroups) processes(id string) []string {
	var out []string
	for _, h := range cg.all {
		filepath.WalkDir(filepath.Join(h, taskPath(id)), func(path string, d os.DirEntry, err error) error {
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
