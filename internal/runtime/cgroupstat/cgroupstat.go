// Package cgroupstat reads a cgroup's CPU and memory counters into a
// runtime.Usage: the host's cgroups (toolkit, for runc, gVisor and the
// micro-VM's QEMU) and the guest's own (internal/guest, for each
// container of a micro-VM). It imports only the runtime's types.
package cgroupstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"vessel.dev/vessel/internal/runtime"
)

// V2 reads the cgroup v2 directory dir: cpu.stat, memory.current,
// memory.peak, memory.max and memory.stat. A missing directory is an
// error that wraps fs.ErrNotExist.
func V2(dir string) (runtime.Usage, error) {
	var u runtime.Usage
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

// V1 reads the cgroup v1 directories of the cpuacct and memory
// controllers: cpuacct.usage and cpuacct.stat, memory.usage_in_bytes,
// memory.max_usage_in_bytes, memory.limit_in_bytes and memory.stat.
func V1(cpuacct, memory string) (runtime.Usage, error) {
	var u runtime.Usage
	var err error
	if u.CPUNanos, err = readInt(filepath.Join(cpuacct, "cpuacct.usage")); err != nil {
		return u, err
	}
	// cpuacct.stat counts USER_HZ ticks (100 a second on Linux).
	if st, err := readKeyed(filepath.Join(cpuacct, "cpuacct.stat")); err == nil {
		u.CPUUserNanos, u.CPUSystemNanos = st["user"]*10_000_000, st["system"]*10_000_000
	}
	if u.MemoryBytes, err = readInt(filepath.Join(memory, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	u.MemoryMaxBytes, _ = readInt(filepath.Join(memory, "memory.max_usage_in_bytes"))
	u.MemoryLimitBytes, _ = readInt(filepath.Join(memory, "memory.limit_in_bytes"))
	u.MemoryStat, _ = readKeyed(filepath.Join(memory, "memory.stat"))
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
