package runc_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
)

// BenchmarkCreateStart measures Create+Start of a one-container sandbox
// (cgroups, a 20 GiB sparse ext4 loop file system, overlay, bundle, conmon,
// runc create, runc start) against a bare "runc run -d" of a bundle with the
// same busybox root file system (runc spec's defaults, no conmon, no overlay,
// no loop file system), in the same run. It also reports the resident memory
// of one idle conmon.
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

	var vessel, baseline time.Duration
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
