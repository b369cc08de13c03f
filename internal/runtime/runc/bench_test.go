package runc_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// BenchmarkCreateStart measures Create+Start of a one-container sandbox
// (cgroups, a 20 GiB sparse ext4 loop file system, overlay, bundle, conmon,
// runc create, runc start) against a bare "runc run -d" of a bundle with the
// same busybox root file system (runc spec's defaults, no conmon, no overlay,
// no loop file system), in the same run; and Claim+Start of a warm sandbox
// (Warm, outside the timed part, made its cgroup and mounted its ext4
// storage) for the same spec, and of a primed one (Prime, also outside,
// created its container: the claim keeps it and the start lets it run). It also reports the resident memory of one
// idle conmon, and the memory an idle warm sandbox holds (warmIdleKiB).
//
//	sudo go test -run '^$' -bench CreateStart -benchtime 20x ./internal/runtime/runc/
func BenchmarkCreateStart(b *testing.B) {
	needRunc(b)
	layer := runtimetest.BusyboxLayer(b)
	rt := newRuntime(b, b.TempDir())
	ctx := context.Background()

	bare := b.TempDir()
	bundle := filepath.Join(bare, "bundle")
	if out, err := exec.Command("runc", "spec", "-b", bare).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v: %s", err, out)
	}
	os.Mkdir(bundle, 0o755)
	if err := os.Rename(filepath.Join(bare, "config.json"), filepath.Join(bundle, "config.json")); err != nil {
		b.Fatal(err)
	}
	runtimetest.BareBundle(b, filepath.Join(bundle, "config.json"), layer)
	runcRoot := filepath.Join(bare, "root")

	var vessel, baseline, warm, primed time.Duration
	var rss []int
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-%d", i)
		spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 512, LogDir: filepath.Join(bare, "logs"),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}}
		t0 := time.Now()
		if err := rt.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, id, "app"); err != nil {
			b.Fatal(err)
		}
		vessel += time.Since(t0)
		rss = append(rss, conmonRSS(b, rt, id))
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}

		wspec := runtime.Spec{ID: "bench-w" + strconv.Itoa(i), MilliCPU: 1000, MemoryMiB: 1024}
		if err := rt.Warm(ctx, wspec); err != nil {
			b.Fatal(err)
		}
		spec.ID = "bench-t" + strconv.Itoa(i)
		t0 = time.Now()
		if err := rt.Claim(ctx, wspec.ID, spec); err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, spec.ID, "app"); err != nil {
			b.Fatal(err)
		}
		warm += time.Since(t0)
		if err := rt.Delete(ctx, spec.ID); err != nil {
			b.Fatal(err)
		}

		// Primed: the warm sandbox's container was created ahead (Prime,
		// outside the timed part) with the task's spec.
		wspec.ID = "bench-p" + strconv.Itoa(i)
		if err := rt.Warm(ctx, wspec); err != nil {
			b.Fatal(err)
		}
		pspec := wspec
		pspec.Containers, pspec.Hostname = spec.Containers, "bench-q"+strconv.Itoa(i)
		if err := rt.Prime(ctx, pspec); err != nil {
			b.Fatal(err)
		}
		spec.ID = pspec.Hostname
		// A task's log directory is its own.
		spec.LogDir = filepath.Join(bare, "logs-"+spec.ID)
		t0 = time.Now()
		if err := rt.Claim(ctx, wspec.ID, spec); err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, spec.ID, "app"); err != nil {
			b.Fatal(err)
		}
		primed += time.Since(t0)
		if err := rt.Delete(ctx, spec.ID); err != nil {
			b.Fatal(err)
		}

		t0 = time.Now()
		// The detached container inherits runc's stdio: /dev/null, so that
		// nothing waits on it.
		if err := exec.Command("runc", "--root", runcRoot, "run", "-d", "--bundle", bundle, id).Run(); err != nil {
			b.Fatalf("runc run: %v", err)
		}
		baseline += time.Since(t0)
		if out, err := exec.Command("runc", "--root", runcRoot, "delete", "-f", id).CombinedOutput(); err != nil {
			b.Fatalf("runc delete: %v: %s", err, out)
		}
	}
	b.ReportMetric(float64(vessel.Microseconds())/1000/float64(b.N), "create+start-ms/op")
	b.ReportMetric(float64(baseline.Microseconds())/1000/float64(b.N), "bare-runc-run-ms/op")
	b.ReportMetric(float64(vessel)/float64(baseline), "ratio")
	b.ReportMetric(float64(warm.Microseconds())/1000/float64(b.N), "warm-claim+start-ms/op")
	b.ReportMetric(float64(warm)/float64(baseline), "warm-ratio")
	b.ReportMetric(float64(primed.Microseconds())/1000/float64(b.N), "primed-claim+start-ms/op")
	b.ReportMetric(float64(primed)/float64(baseline), "primed-ratio")
	held, cache := warmIdleKiB(b, rt, 10)
	b.ReportMetric(float64(held), "warm-idle-held-KiB")
	b.ReportMetric(float64(cache), "warm-idle-cache-KiB")
	sum := 0
	for _, r := range rss {
		sum += r
	}
	b.ReportMetric(float64(sum)/float64(len(rss)), "conmon-rss-KiB")
	b.ReportMetric(0, "ns/op")
}

// conmonRSS returns the resident set of the sandbox's conmon, in KiB.
func conmonRSS(b *testing.B, rt interface{ Leftovers(string) []string }, id string) int {
	for _, pid := range runtimetest.LeftoverProcesses(rt.Leftovers(id), "conmon") {
		if kib, ok := runtimetest.ResidentKiB(pid); ok {
			return int(kib)
		}
	}
	b.Fatalf("no conmon found for %s", id)
	return 0
}

// warmIdleKiB warms n sandboxes with the benchmark's process in a memory
// cgroup of its own (cgroup v1), and returns what that cgroup's charges
// grew by per sandbox once they are idle, in KiB: held (anonymous and
// kernel memory: cgroups, mounts, loop device, inodes; the benchmark's
// own heap growth too) and cache (page cache: the ext4 file system's
// metadata read at mount and the image pool's refills, reclaimable).
// Nothing runs in a warm runc sandbox. It deletes them; -1 means no
// measure (not cgroup v1).
func warmIdleKiB(b *testing.B, rt *runc.Runtime, n int) (held, cache int64) {
	ctx := context.Background()
	orig := ""
	data, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
			orig = filepath.Join("/sys/fs/cgroup/memory", f[2])
		}
	}
	if orig == "" {
		return -1, -1
	}
	cg := filepath.Join("/sys/fs/cgroup/memory", "vessel-bench-idle-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(cg)
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), pid, 0o644); err != nil {
		b.Fatal(err)
	}
	defer os.WriteFile(filepath.Join(orig, "cgroup.procs"), pid, 0o644)
	charges := func() (held, cache int64) {
		data, _ := os.ReadFile(filepath.Join(cg, "memory.stat"))
		f := strings.Fields(string(data))
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "rss":
				held += v
			case "cache":
				cache += v
			}
		}
		data, _ = os.ReadFile(filepath.Join(cg, "memory.kmem.usage_in_bytes"))
		kmem, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		return held + kmem, cache
	}
	held0, cache0 := charges()
	for i := 0; i < n; i++ {
		id := "bench-idle" + strconv.Itoa(i)
		if err := rt.Warm(ctx, runtime.Spec{ID: id, MilliCPU: 1000, MemoryMiB: 1024}); err != nil {
			b.Fatal(err)
		}
		defer rt.Delete(ctx, id)
	}
	time.Sleep(time.Second)
	held1, cache1 := charges()
	return (held1 - held0) / 1024 / int64(n), (cache1 - cache0) / 1024 / int64(n)
}
