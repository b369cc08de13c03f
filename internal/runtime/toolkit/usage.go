package toolkit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// SandboxUsage is runtime.Statser's answer for runtimes whose sandboxes
// and containers have cgroups of their own (SandboxCgroup,
// ContainerCgroup): the container's cgroup, or the sandbox's when
// container is "". A missing cgroup is errdefs.ErrNotFound.
func (cg *Cgroups) SandboxUsage(id, container string) (runtime.Usage, error) {
	rel := SandboxCgroup(id)
	if container != "" {
		rel = ContainerCgroup(id, container)
	}
	u, err := cg.Usage(rel)
	if errors.Is(err, fs.ErrNotExist) {
		if container != "" {
			return u, errdefs.NotFound("sandbox %s has no container %s with counters (not started, or gone): %v", id, container, err)
		}
		return u, errdefs.NotFound("sandbox %s has no counters (it does not exist): %v", id, err)
	}
	return u, err
}

// Usage reads the CPU and memory counters of the cgroup at rel (a path
// relative to each hierarchy's root, e.g. SandboxCgroup(id)): cpuacct and
// memory on v1, cpu.stat and memory.* on v2. A cgroup that does not exist
// is an error that names it.
func (cg *Cgroups) Usage(rel string) (runtime.Usage, error) {
	var u runtime.Usage
	if cg.v2 {
		dir := filepath.Join(CgroupRoot, rel)
		st, err := readKeyed(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return u, err
		}
		u.CPUNanos = st["usage_usec"] * 1000
		u.CPUUserNanos = st["user_usec"] * 1000
		u.CPUSystemNanos = st["system_usec"] * 1000
		if u.MemoryBytes, err = readInt(filepath.Join(dir, "memory.current")); err != nil {
			return u, err
		}
		u.MemoryMaxBytes, _ = readInt(filepath.Join(dir, "memory.peak"))
		u.MemoryLimitBytes, _ = readInt(filepath.Join(dir, "memory.max")) // "max" reads as 0: no limit
		u.MemoryStat, _ = readKeyed(filepath.Join(dir, "memory.stat"))
		return u, nil
	}
	acct := filepath.Join(cg.v1["cpuacct"], rel)
	if cg.v1["cpuacct"] == "" {
		return u, fmt.Errorf("cgroups: the v1 cpuacct controller is not mounted under %s", CgroupRoot)
	}
	var err error
	if u.CPUNanos, err = readInt(filepath.Join(acct, "cpuacct.usage")); err != nil {
		return u, err
	}
	// cpuacct.stat counts USER_HZ ticks (100 a second on Linux).
	if st, err := readKeyed(filepath.Join(acct, "cpuacct.stat")); err == nil {
		u.CPUUserNanos, u.CPUSystemNanos = st["user"]*10_000_000, st["system"]*10_000_000
	}
	mem := filepath.Join(cg.v1["memory"], rel)
	if u.MemoryBytes, err = readInt(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	u.MemoryMaxBytes, _ = readInt(filepath.Join(mem, "memory.max_usage_in_bytes"))
	u.MemoryLimitBytes, _ = readInt(filepath.Join(mem, "memory.limit_in_bytes"))
	u.MemoryStat, _ = readKeyed(filepath.Join(mem, "memory.stat"))
	return u, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cgroups: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroups: %s holds %q, not a number", path, s)
	}
	return n, nil
}

// readKeyed reads a flat keyed file ("key value" lines).
func readKeyed(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}
