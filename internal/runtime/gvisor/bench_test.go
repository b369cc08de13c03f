package gvisor_test

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
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// BenchmarkCreateStart measures Create+Start of a one-container sandbox
// (cgroups, a sparse ext4 loop file system, overlay, bundles, the gVisor
// sandbox with its pause root container, conmon, the sub-container's runsc
// create and start) against a bare "runsc run -d" of a bundle with the
// same busybox root file system (no conmon, no overlay, no loop file
// system, no cgroup, no network), in the same run. It also reports the
// host memory of the idle sandbox: resident and proportional set sizes of
// the processes in its cgroup (runsc-sandbox, runsc-gofer, systrap stubs)
// and of its conmon and monitor. It runs at two sizes: the sandbox's CPU
// quota also binds its own boot (the sentry's start-up work), so a 0.25
// vCPU sandbox starts slower than a 2 vCPU one.
//
// The warm row is Claim+Start of a warm sandbox (booted by Warm, outside
// the timed part, at the warm class's size) for the same spec; the
// warm-idle rows are the host memory of the idle warm sandbox before its
// claim: the processes in its cgroups (sentry, gofer, stubs: RSS, PSS)
// and its memory cgroup's usage (which counts the page cache it caused
// too).
//
//	sudo go test -run '^$' -bench CreateStart -benchtime 10x ./internal/runtime/gvisor/
func BenchmarkCreateStart(b *testing.B) {
	for _, milli := range []int64{250, 2000} {
		b.Run(fmt.Sprintf("vcpu=%g", float64(milli)/1000), func(b *testing.B) { benchCreateStart(b, milli) })
	}
}

func benchCreateStart(b *testing.B, milliCPU int64) {
	runsc := runscPath(b)
	layer := runtimetest.BusyboxLayer(b)
	rt := newRuntime(b, runsc, b.TempDir())
	ctx := context.Background()

	bare := b.TempDir()
	bundle := filepath.Join(bare, "bundle")
	os.Mkdir(bundle, 0o755)
	if out, err := exec.Command(runsc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runsc spec: %v: %s", err, out)
	}
	runtimetest.BareBundle(b, filepath.Join(bundle, "config.json"), layer)
	bareFlags := []string{"--root=" + filepath.Join(bare, "root"), "--platform=systrap", "--network=none",
		"--gofer-network-namespace=new"}

	var vessel, baseline, warm time.Duration
	var sbRSS, sbPSS, monRSS, monPSS, idleRSS, idlePSS int
	var idleCgroup int64
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-%d", i)
		spec := runtime.Spec{ID: id, MilliCPU: milliCPU, MemoryMiB: 512, LogDir: filepath.Join(bare, "logs"),
			Containers: []runtime.ContainerSpec{{Name: "app", Layers: []string{layer}, Args: []string{"sleep", "1000"}}}}
		t0 := time.Now()
		if err := rt.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(ctx, id, "app"); err != nil {
			b.Fatal(err)
		}
		vessel += time.Since(t0)
		time.Sleep(300 * time.Millisecond) // idle
		r, p := memOf(cgroupProcs(id))
		sbRSS, sbPSS = sbRSS+r, sbPSS+p
		r, p = memOf(runtimetest.LeftoverProcesses(rt.Leftovers(id), "conmon", "/monitor"))
		monRSS, monPSS = monRSS+r, monPSS+p
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}

		class := rt.WarmClass()
		wspec := runtime.Spec{ID: "bench-w" + strconv.Itoa(i), MilliCPU: class.MilliCPU, MemoryMiB: class.MemoryMiB}
		if err := rt.Warm(ctx, wspec); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // idle
		r, p = memOf(cgroupProcs(wspec.ID))
		idleRSS, idlePSS = idleRSS+r, idlePSS+p
		idleCgroup += cgroupMemory(b, wspec.ID)
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

		t0 = time.Now()
		cmd := exec.Command(runsc, append(bareFlags, "run", "--detach", "--bundle", bundle, id)...)
		if err := cmd.Run(); err != nil { // stdio: /dev/null
			b.Fatalf("runsc run: %v", err)
		}
		baseline += time.Since(t0)
		if out, err := exec.Command(runsc, append(bareFlags, "delete", "--force", id)...).CombinedOutput(); err != nil {
			b.Fatalf("runsc delete: %v: %s", err, out)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(vessel.Microseconds())/1000/n, "create+start-ms/op")
	b.ReportMetric(float64(baseline.Microseconds())/1000/n, "bare-runsc-run-ms/op")
	b.ReportMetric(float64(vessel)/float64(baseline), "ratio")
	b.ReportMetric(float64(warm.Microseconds())/1000/n, "warm-claim+start-ms/op")
	b.ReportMetric(float64(warm)/float64(baseline), "warm-ratio")
	b.ReportMetric(float64(idleRSS)/n, "warm-idle-rss-KiB")
	b.ReportMetric(float64(idlePSS)/n, "warm-idle-pss-KiB")
	b.ReportMetric(float64(idleCgroup)/1024/n, "warm-idle-cgroup-KiB")
	b.ReportMetric(float64(sbRSS)/n, "sandbox-rss-KiB")
	b.ReportMetric(float64(sbPSS)/n, "sandbox-pss-KiB")
	b.ReportMetric(float64(monRSS)/n, "conmon+monitor-rss-KiB")
	b.ReportMetric(float64(monPSS)/n, "conmon+monitor-pss-KiB")
	b.ReportMetric(0, "ns/op")
}

// cgroupProcs lists the processes in the sandbox's cgroup (v1 pids
// hierarchy).
func cgroupProcs(id string) []int {
	var pids []int
	filepath.WalkDir("/sys/fs/cgroup/pids/vessel/"+id, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			data, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		return nil
	})
	return pids
}

// memOf sums the resident and proportional set sizes of pids, in KiB.
func memOf(pids []int) (rss, pss int) {
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "Rss:":
				rss += n
			case "Pss:":
				pss += n
			}
		}
	}
	return rss, pss
}

// cgroupMemory is the memory usage of the sandbox's memory cgroup (v1),
// in bytes.
func cgroupMemory(b *testing.B, id string) int64 {
	data, err := os.ReadFile("/sys/fs/cgroup/memory/vessel/" + id + "/memory.usage_in_bytes")
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return n
}
