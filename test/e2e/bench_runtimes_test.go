package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"golang.org/x/sys/unix"
)

// BenchmarkIsolatedRuntimes measures RunTask → RUNNING (startedAt −
// createdAt, p50/p99) on the gvisor and microvm runtimes through the built
// server, each next to its bare runtime measured in the same run: bare
// `runsc run --detach` of a bundle over the same root file system, and the
// server's own probe boot of the same kernel and initramfs to the guest
// agent (QEMU alone, no task). It also prints the host memory of an idle
// sandbox. Run it with
//
//	go test -run x -bench IsolatedRuntimes -benchtime 1x ./test/e2e/
func BenchmarkIsolatedRuntimes(b *testing.B) {
	t := b // temporary directories and processes go with the benchmark
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, script := range []string{"build-runsc", "build-guest-kernel"} {
		if out, err := exec.Command(repoRoot + "/scripts/" + script).CombinedOutput(); err != nil {
			b.Fatalf("scripts/%s: %v %s", script, err, out)
		}
	}
	s := startBenchServer(b, "--runtimes", "microvm,gvisor")
	for deadline := time.Now().Add(120 * time.Second); !strings.Contains(s.log.String(), "Runtimes on this host") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sleep", "3600"}, busyboxLayer(t))
	c := s.ecsClient()
	ctx := context.Background()
	p := func(d []time.Duration, q float64) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	runtimeLatency := func(rt string, n int) []time.Duration {
		family := "idle-" + rt
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("1024"), Memory: aws.String("2048"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img), StopTimeout: aws.Int32(1)}},
			Tags:                 []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String(rt)}}}); err != nil {
			b.Fatal(err)
		}
		warm := runOneB(b, c, family) // image cache and root image
		waitForB(b, c, warm, "RUNNING")
		stopAllB(c)
		var out []time.Duration
		for i := 0; i < n; i++ {
			tk := waitStampedB(b, c, runOneB(b, c, family), "RUNNING")
			out = append(out, tk.StartedAt.Sub(*tk.CreatedAt))
		}
		return out
	}

	// gVisor next to bare runsc.
	gv := runtimeLatency("gvisor", 20)
	gvMem := sandboxMemory(s.dataDir, []string{"runsc", "conmon"}, 20)
	stopAllB(c)
	bare := bareRunscRuns(b, 20)
	fmt.Printf("gvisor   RunTask→RUNNING p50 %v p99 %v   bare runsc run --detach p50 %v p99 %v   ratio p50 %.2f×   idle sandbox %.1f MiB RSS\n",
		p(gv, .5), p(gv, .99), p(bare, .5), p(bare, .99), float64(p(gv, .5))/float64(p(bare, .5)), gvMem)

	// The micro-VM next to the server's own probe boot of the same kernel
	// and initramfs.
	mv := runtimeLatency("microvm", 8)
	mvMem := sandboxMemory(s.dataDir, []string{"qemu-system", "vessel-guest"}, 8)
	boot := probeBoot(s.log.String())
	accel := "TCG (emulation)"
	if strings.Contains(s.log.String(), "under KVM") {
		accel = "KVM"
	}
	fmt.Printf("microvm  RunTask→RUNNING p50 %v p99 %v   bare QEMU boot to the guest agent %v   ratio p50 %.2f×   idle sandbox %.1f MiB RSS   [%s]\n",
		p(mv, .5), p(mv, .99), boot, float64(p(mv, .5))/float64(boot), mvMem, accel)
}

// bareRunscRuns times n bare `runsc run --detach` of a bundle over the
// same busybox root file system (no network, systrap as the runtime
// uses), deletes them, and returns the times.
func bareRunscRuns(b *testing.B, n int) []time.Duration {
	runsc := newestCached(repoRoot + "/.cache/runsc/*/runsc")
	bundle := bareBundle(b)
	var bare []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bare-gv-%03d", i) // fixed width: runsc takes an ID's prefix for the ID
		start := time.Now()
		cmd := exec.Command(runsc, "--root", filepath.Join(bundle, "runsc-state"), "--network=none", "--platform=systrap",
			"run", "--detach", "--bundle", bundle, id)
		if err := cmd.Run(); err != nil {
			b.Fatalf("runsc run %s: %v", id, err)
		}
		bare = append(bare, time.Since(start))
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bare-gv-%03d", i) // fixed width: runsc takes an ID's prefix for the ID
		// A delete right after the run may find the sandbox still
		// settling and fail: try again, then say so.
		var err error
		var out []byte
		for try := 0; try < 5; try++ {
			if out, err = exec.Command(runsc, "--root", filepath.Join(bundle, "runsc-state"), "delete", "--force", id).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			b.Logf("runsc delete %s: %v: %s (its processes are killed below)", id, err, out)
		}
	}
	// Whatever of them still runs goes (its state directory goes with
	// the benchmark's temporary directory); nothing may be left.
	exec.Command("pkill", "-9", "-f", "--", bundle).Run()
	deadline := time.Now().Add(5 * time.Second)
	for exec.Command("pgrep", "-f", "--", bundle).Run() == nil {
		if time.Now().After(deadline) {
			out, _ := exec.Command("pgrep", "-af", "--", bundle).Output()
			b.Errorf("bare runsc sandboxes still run after pkill -9: %s", out)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/bare-gv-*")
	for _, cg := range cgroups {
		os.Remove(cg)
	}
	// runsc leaves a mount of its gofers' network namespace in its root.
	unix.Unmount(filepath.Join(bundle, "runsc-state", "null-netns"), unix.MNT_DETACH)
	return bare
}

// probeBoot reads the boot time of the server's probe VM from its log.
func probeBoot(log string) time.Duration {
	m := regexp.MustCompile(`probe VM booted to the guest agent.*took=([0-9.]+[a-zµ]+)`).FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	d, _ := time.ParseDuration(m[1])
	return d
}

func newestCached(pattern string) string {
	m, _ := filepath.Glob(pattern)
	sort.Strings(m)
	if len(m) == 0 {
		return "runsc"
	}
	return m[len(m)-1]
}

// sandboxMemory is the RSS of the processes (by command name part) that
// belong to the server's data directory, per sandbox.
func sandboxMemory(dataDir string, names []string, n int) float64 {
	var kib int64
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmd), dataDir) {
			continue
		}
		match := false
		for _, name := range names {
			match = match || strings.Contains(strings.SplitN(string(cmd), "\x00", 2)[0], name)
		}
		if !match {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var k int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &k)
				kib += k
			}
		}
	}
	return float64(kib) / 1024 / float64(n)
}
