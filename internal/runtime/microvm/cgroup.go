package microvm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The QEMU process of a sandbox runs in cgroup vessel-microvm/<id> of each
// hierarchy (a name of its own, apart from runc's vessel/<id>). The writes
// are the few runc's cgroup.go does; copied rather than shared because runc
// exports none.
const cgroupRoot = "/sys/fs/cgroup"

type cgroups struct {
	v2  bool
	v1  map[string]string // controller → mount point
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
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	cg := &cgroups{v1: map[string]string{}}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 || !strings.HasPrefix(f[4], cgroupRoot+"/") {
			continue
		}
		switch pf[0] {
		case "cgroup":
			for _, o := range strings.Split(pf[2], ",") {
				switch o {
				case "cpu", "memory", "pids":
					cg.v1[o] = f[4]
					cg.all = append(cg.all, f[4])
				}
			}
		}
	}
	for _, c := range []string{"cpu", "memory", "pids"} {
		if cg.v1[c] == "" {
			return nil, fmt.Errorf("cgroups: v1 controller %s is not mounted", c)
		}
	}
	return cg, nil
}

func cgroupPath(id string) string { return filepath.Join("vessel-microvm", id) }

// create makes the sandbox's cgroups and returns the cgroup.procs files a
// process writes itself into.
func (cg *cgroups) create(id string, milliCPU, memBytes, pids int64) ([]string, error) {
	const period = 100_000
	quota := strconv.FormatInt(milliCPU*period/1000, 10)
	if cg.v2 {
		parent := filepath.Join(cgroupRoot, "vessel-microvm")
		dir := filepath.Join(parent, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for _, d := range []string{cgroupRoot, parent} {
			if err := writeFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu +memory +pids"); err != nil {
				return nil, err
			}
		}
		for _, f := range [][2]string{{"cpu.max", quota + " " + strconv.Itoa(period)},
			{"memory.max", strconv.FormatInt(memBytes, 10)}, {"pids.max", strconv.FormatInt(pids, 10)}} {
			if err := writeFile(filepath.Join(dir, f[0]), f[1]); err != nil {
				return nil, err
			}
		}
		return []string{filepath.Join(dir, "cgroup.procs")}, nil
	}
	var procs []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		dir := filepath.Join(cg.v1[c], cgroupPath(id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	cpu, mem := filepath.Join(cg.v1["cpu"], cgroupPath(id)), filepath.Join(cg.v1["memory"], cgroupPath(id))
	for _, f := range [][2]string{
		{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.Itoa(period)},
		{filepath.Join(cpu, "cpu.cfs_quota_us"), quota},
		{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(memBytes, 10)},
		{filepath.Join(cg.v1["pids"], cgroupPath(id), "pids.max"), strconv.FormatInt(pids, 10)},
	} {
		if err := writeFile(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

func writeFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, path, err)
	}
	return nil
}

func (cg *cgroups) dirs(id string) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range cg.all {
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
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("cgroups: remove %s: %w", dir, err))
				break
			}
			time.Sleep(20 * time.Millisecond)
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
