package cgroupstat

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadCounters(t *testing.T) {
	v2 := write(t, t.TempDir(), map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\n",
		"memory.current": "4096\n", "memory.peak": "8192\n", "memory.max": "max\n",
		"memory.stat": "anon 1024\nfile 2048\n",
	})
	acct := write(t, t.TempDir(), map[string]string{"cpuacct.usage": "2000000\n", "cpuacct.stat": "user 3\nsystem 1\n"})
	mem := write(t, t.TempDir(), map[string]string{"memory.usage_in_bytes": "4096\n", "memory.max_usage_in_bytes": "8192\n",
		"memory.limit_in_bytes": "536870912\n", "memory.stat": "rss 1024\ncache 2048\n"})
	for _, c := range []struct {
		name               string
		read               func() (cpu, user, sys, mem, max, limit int64, stat map[string]int64, err error)
		cpu, user, sys     int64
		memory, max, limit int64
		statKey            string
	}{
		{"v2", func() (int64, int64, int64, int64, int64, int64, map[string]int64, error) {
			u, err := V2(v2)
			return u.CPUNanos, u.CPUUserNanos, u.CPUSystemNanos, u.MemoryBytes, u.MemoryMaxBytes, u.MemoryLimitBytes, u.MemoryStat, err
		}, 1_500_000, 1_000_000, 500_000, 4096, 8192, 0, "anon"},
		{"v1", func() (int64, int64, int64, int64, int64, int64, map[string]int64, error) {
			u, err := V1(acct, mem)
			return u.CPUNanos, u.CPUUserNanos, u.CPUSystemNanos, u.MemoryBytes, u.MemoryMaxBytes, u.MemoryLimitBytes, u.MemoryStat, err
		}, 2_000_000, 30_000_000, 10_000_000, 4096, 8192, 512 << 20, "rss"},
	} {
		cpu, user, sys, m, max, limit, stat, err := c.read()
		if err != nil || cpu != c.cpu || user != c.user || sys != c.sys || m != c.memory || max != c.max || limit != c.limit || stat[c.statKey] != 1024 {
			t.Errorf("%s: cpu %d user %d sys %d mem %d max %d limit %d stat %v err %v", c.name, cpu, user, sys, m, max, limit, stat, err)
		}
	}
	if _, err := V2(filepath.Join(t.TempDir(), "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing cgroup: %v, want fs.ErrNotExist", err)
	}
	bad := write(t, t.TempDir(), map[string]string{"cpu.stat": "usage_usec 1\n", "memory.current": "lots\n"})
	if _, err := V2(bad); err == nil || !strings.Contains(err.Error(), `holds "lots", not a number`) {
		t.Errorf("a file that holds no number: %v", err)
	}
}
