package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/testutil"
)

// warmMetric reads the server's /metrics value of name for runtime rt (any
// host and class: the test's server has one host); -1 when it has none.
func warmMetric(t testing.TB, s *server, name, rt string) float64 {
	t.Helper()
	return metricOf(t, s, name, `runtime="`+rt+`"`)
}

// warmClassMetric is warmMetric of the pool of runtime rt and class
// (VCPU/GB).
func warmClassMetric(t testing.TB, s *server, name, rt, class string) float64 {
	t.Helper()
	return metricOf(t, s, name, fmt.Sprintf("class=%q", class), `runtime="`+rt+`"`)
}

// metricOf reads the value of the first line of metric name on the
// server's /metrics that has every label of labels (label="value"); -1
// when none has.
func metricOf(t testing.TB, s *server, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(s.endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		return v
	}
	return -1
}

func waitWarmClassMetric(t *testing.T, s *server, name, rt, class string, want float64) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		if got := warmClassMetric(t, s, name, rt, class); got != want {
			return fmt.Errorf("%s{runtime=%q,class=%q} is %v; want %v; the server's warm pool log:\n%s", name, rt, class, got, want, logLinesOf(s, []string{"warm"}))
		}
		return nil
	})
}

func waitWarmMetric(t *testing.T, s *server, name, rt string, want float64) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		if got := warmMetric(t, s, name, rt); got != want {
			return fmt.Errorf("%s{runtime=%q} is %v; want %v; the server's warm pool log:\n%s", name, rt, got, want, logLinesOf(s, []string{"warm"}))
		}
		return nil
	})
}

// warmLeases returns the IDs of the warm sandboxes' leases and every
// leased address of the server's host.
func warmLeases(t testing.TB, s *server) (warm []string, ips []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir, "network", "leases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Leases map[string]struct {
			IP string `json:"ip"`
		} `json:"leases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for id, l := range f.Leases {
		if strings.HasPrefix(id, "warm-") {
			warm = append(warm, id)
		}
		ips = append(ips, l.IP)
	}
	slices.Sort(warm)
	return warm, ips
}

// TestWarmPoolRunc runs `vessel server --warm-pool runc=2`: tasks take warm
// sandboxes (the metrics count the hits), nothing of a task (a file, a
// process, a listening socket, its address) is visible to the task of the
// next warm sandbox, a kill -9 of the server leaves the pool to the next
// start, which adopts it, and a start without the pool deletes it: then
// nothing is left on the host.
func TestWarmPoolRunc(t *testing.T) {
	if _, ok := any(&runc.Runtime{}).(runtime.Warmer); !ok {
		t.Skip("runc has no warm sandboxes in this build (runtime.Warmer): the runtime's part of the pools is not merged")
	}
	warmPoolTest(t, "runc")
}

// TestWarmPoolGVisor is TestWarmPoolRunc through `vessel server --runtime
// gvisor --warm-pool gvisor=2`: a warm gVisor sandbox is booted, its
// root container started, before its task comes.
func TestWarmPoolGVisor(t *testing.T) {
	warmPoolTest(t, "gvisor")
}

func warmPoolTest(t *testing.T, rt string) {
	pool := rt + "=2"
	s := startRuncServer(t, "--runtime", rt, "--runtimes", "sim,"+rt, "--warm-pool", pool)
	warmIDRE := regexp.MustCompile(`warm-` + rt + `-[0-9a-f]{8}`)
	finished := false
	t.Cleanup(func() {
		// A test that failed half way: a start without the pool deletes
		// the warm sandboxes (they outlive the server, as tasks do).
		if finished {
			return
		}
		s.kill(syscall.SIGTERM)
		s.extra = slices.DeleteFunc(slices.Clone(s.extra), func(a string) bool { return a == "--warm-pool" || a == pool })
		if s.launch() == nil {
			testutil.Wait(60*time.Second, func() error {
				if _, ips := warmLeases(t, s); len(ips) > 0 {
					return fmt.Errorf("leases left")
				}
				return nil
			})
		}
	})
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	before := snapshotHost(t, s.dataDir, s.subnet)
	// Every warm sandbox the server made or adopted, claimed or not: none
	// may leave a cgroup.
	seen := map[string]bool{}
	note := func() {
		for _, id := range warmIDRE.FindAllString(s.log.String(), -1) {
			seen[id] = true
		}
	}
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	// runc's pool serves every size; gVisor's its own class, 4 vCPU 8 GB.
	shown := map[string]string{"runc": "runc 2/2", "gvisor": "gvisor:4/8 2/2"}[rt]
	if out, _, _ := s.vessel("host", "ls"); !strings.Contains(out, shown) {
		t.Errorf("vessel host ls does not show the pool (%s):\n%s", shown, out)
	}

	sh := func(arn, script string) string {
		t.Helper()
		out, errOut, _ := s.vessel("exec", arn, "--", "sh", "-c", script)
		return strings.TrimSpace(out + errOut)
	}
	// The first task leaves a file, a process and a listener.
	a := runImage(t, c, "warm-first", img, "512", "sh", "-c",
		"echo secret > /tmp/secret; sleep 4242 & mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www")
	ta := waitFor(t, c, a, "RUNNING", 60*time.Second)
	ipA := taskIP(ta)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", rt, 1)
	b := runImage(t, c, "warm-second", img, "512", "sleep", "1000")
	tb := waitFor(t, c, b, "RUNNING", 60*time.Second)
	ipB := taskIP(tb)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", rt, 2)
	if ipA == "" || ipA == ipB {
		t.Fatalf("two tasks of warm sandboxes hold addresses %q and %q; want two", ipA, ipB)
	}
	// The probes see what they look for while the first task runs.
	if got := sh(b, "nc -w 2 "+ipA+" 8080 </dev/null && echo connected"); !strings.Contains(got, "connected") {
		t.Fatalf("the second task cannot reach the first's listener at %s:8080 (the probe is broken): %q", ipA, got)
	}
	if got := sh(a, "cat /tmp/secret; ps | grep -c 'sleep 424[2]'"); got != "secret\n1" {
		t.Fatalf("the first task's own file and process: %q", got)
	}
	clean := "test ! -e /tmp/secret && echo nofile; ps | grep -q 'sleep 424[2]' || echo noproc"
	if got := sh(b, clean); got != "nofile\nnoproc" {
		t.Errorf("the second task sees the first's file or process: %q", got)
	}

	c.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(a)})
	waitFor(t, c, a, "STOPPED", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	if _, ips := warmLeases(t, s); slices.Contains(ips, ipA) {
		t.Errorf("the stopped task's address %s is still leased", ipA)
	}
	// The next warm sandbox's task: nothing of the first.
	cc := runImage(t, c, "warm-third", img, "512", "sleep", "1000")
	tc := waitFor(t, c, cc, "RUNNING", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", rt, 3)
	if ipC := taskIP(tc); ipC == ipB || ipC == "" {
		t.Errorf("the third task's address %q; want one of its own (the second holds %s)", ipC, ipB)
	}
	if got := sh(cc, clean+"; nc -w 2 "+ipA+" 8080 </dev/null 2>/dev/null && echo connected || echo unreachable"); got != "nofile\nnoproc\nunreachable" {
		t.Errorf("the third task sees something of the first (file, process, listener at %s:8080): %q", ipA, got)
	}
	if m := warmMetric(t, s, "vessel_warm_pool_misses_total", rt); m != 0 {
		t.Errorf("%v misses; want none", m)
	}

	// kill -9 with two warm sandboxes: the next start adopts them.
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	warm, _ := warmLeases(t, s)
	if len(warm) != 2 {
		t.Fatalf("warm sandboxes' leases %v; want 2", warm)
	}
	note()
	s.kill(syscall.SIGKILL)
	s.start()
	testutil.Eventually(t, 60*time.Second, func() error {
		if n := strings.Count(s.log.String(), "adopted warm sandbox"); n != 2 {
			return fmt.Errorf("the restarted server adopted %d warm sandboxes; want 2:\n%s", n, logLinesOf(s, []string{"warm"}))
		}
		return nil
	})
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	if again, _ := warmLeases(t, s); !slices.Equal(again, warm) {
		t.Errorf("warm sandboxes after the restart %v; want the adopted %v:\n%s", again, warm, logLinesOf(s, []string{"warm"}))
	}
	// The adopted sandboxes serve.
	d := runImage(t, c, "warm-fourth", img, "512", "sleep", "1000")
	waitFor(t, c, d, "RUNNING", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", rt, 1) // counted since this start

	// Everything stopped and the server killed (the pool stays), then a
	// start without the pool deletes it.
	stopAll(t, s)
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	note()
	s.kill(syscall.SIGKILL)
	s.extra = slices.DeleteFunc(slices.Clone(s.extra), func(a string) bool { return a == "--warm-pool" || a == pool })
	s.start()
	testutil.Eventually(t, 60*time.Second, func() error {
		if warm, ips := warmLeases(t, s); len(ips) > 0 {
			return fmt.Errorf("leases left after a start without the pool: %v (warm %v)", ips, warm)
		}
		return nil
	})
	note()

	// A graceful stop (SIGTERM) deletes the pool itself.
	s.kill(syscall.SIGTERM)
	s.extra = append(s.extra, "--warm-pool", pool)
	s.start()
	waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	note()
	s.kill(syscall.SIGTERM)
	finished = true
	poolLeftNothing(t, s, before, seen, 5)
}

// poolLeftNothing checks, once server s stopped gracefully, that its
// pools left nothing on the host: no lease, nothing of snapshotHost's
// beyond before, no cgroup of a warm sandbox the logs named (seen, at
// least the made the test made).
func poolLeftNothing(t *testing.T, s *server, before hostState, seen map[string]bool, made int) {
	t.Helper()
	if warm, ips := warmLeases(t, s); len(ips) > 0 {
		t.Errorf("leases left after a graceful stop: %v (warm %v):\n%s", ips, warm, logLinesOf(s, []string{"warm"}))
	}
	after := snapshotHost(t, s.dataDir, s.subnet)
	var warmCgroups []string
	for _, root := range []string{"/sys/fs/cgroup/memory/vessel", "/sys/fs/cgroup/pids/vessel", "/sys/fs/cgroup/cpu,cpuacct/vessel", "/sys/fs/cgroup/vessel"} {
		for id := range seen {
			if _, err := os.Stat(filepath.Join(root, id)); err == nil {
				warmCgroups = append(warmCgroups, filepath.Join(root, id))
			}
		}
	}
	if len(after.processes) > 0 || len(after.mounts) > 0 || len(after.cgroups) > 0 || len(after.netns) > 0 ||
		len(after.veths) > 0 || after.leases > 0 || len(warmCgroups) > 0 {
		t.Fatalf("left behind by the pools:\nbefore:\n%s\nafter:\n%s\nwarm cgroups %v", before, after, warmCgroups)
	}
	if len(seen) < made {
		t.Errorf("the servers' logs name %d warm sandboxes (%v); want at least the %d made", len(seen), seen, made)
	}
}

// startPoolServer starts vessel server with args on a subnet of its own
// (with the host's default pools if defaultPools, as the README's server
// has them), after a snapshot of the host for poolLeftNothing; the test's
// end stops its tasks, the server (gracefully: its pools go), and removes
// its bridge and firewall.
func startPoolServer(t *testing.T, defaultPools bool, args ...string) (*server, hostState) {
	t.Helper()
	requireRoot(t)
	cidr := freeSubnet(t)
	s := &server{t: t, dataDir: t.TempDir(), addr: freeAddr(t), subnet: cidr, defaultPools: defaultPools,
		extra: append([]string{"--subnet", "subnet-default=" + cidr}, args...)}
	s.endpoint = "http://" + s.addr
	before := snapshotHost(t, s.dataDir, cidr)
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			stopAll(t, s)
			s.kill(syscall.SIGTERM)
		}
		removeBridges(cidr)
		s.removeFirewall()
	})
	return s, before
}

// TestWarmPoolDefaults runs `vessel server` as the README does, without
// --warm-pool, offering runc and gVisor: the host keeps two warm
// sandboxes of each (they fit in 1/16 of any test machine's memory),
// `vessel host ls` shows them, a task takes one, and a graceful stop
// deletes them all: nothing of the pools is left on the host.
func TestWarmPoolDefaults(t *testing.T) {
	s, before := startPoolServer(t, true, "--runtime", "runc", "--runtimes", "sim,runc,gvisor")
	warmIDRE := regexp.MustCompile(`warm-(runc|gvisor)-[0-9a-f]{8}`)
	for _, rt := range []string{"runc", "gvisor"} {
		waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	}
	if out, stderr, code := s.vessel("host", "ls"); code != 0 || !strings.Contains(out, "gvisor:4/8 2/2,runc 2/2") {
		t.Errorf("vessel host ls (exit %d) does not show the default pools gvisor:4/8 2/2,runc 2/2:\n%s%s", code, out, stderr)
	}
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	arn := runImage(t, c, "default-pool", img, "512", "sleep", "1000")
	waitFor(t, c, arn, "RUNNING", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", "runc", 1)
	stopAll(t, s)
	for _, rt := range []string{"runc", "gvisor"} {
		waitWarmMetric(t, s, "vessel_warm_pool_size", rt, 2)
	}
	seen := map[string]bool{}
	for _, id := range warmIDRE.FindAllString(s.log.String(), -1) {
		seen[id] = true
	}
	s.kill(syscall.SIGTERM)
	if !regexp.MustCompile(`msg="warm sandboxes deleted" .*count=4\b`).MatchString(s.log.String()) {
		t.Errorf("the server's stop does not say it deleted its 4 warm sandboxes:\n%s", logLinesOf(s, []string{"warm"}))
	}
	poolLeftNothing(t, s, before, seen, 5)
}

// TestWarmPoolSizeClasses runs `vessel server --warm-pool
// gvisor=1,gvisor:8/16=1`: beside gVisor's own class (up to 4 vCPU, 8 GB)
// the host keeps a sandbox booted at 8 vCPU and 16 GB; a task of that
// size, which the own class cannot serve, takes it (the host's 2 cores
// are allocated 8 times over, for both tasks), a small task takes
// the own class's, each pool counts its own hit on /metrics and in `vessel
// host ls`, and a graceful stop deletes both pools, leaving nothing.
func TestWarmPoolSizeClasses(t *testing.T) {
	s, before := startPoolServer(t, false, "--runtime", "gvisor", "--runtimes", "sim,gvisor",
		"--warm-pool", "gvisor=1,gvisor:8/16=1", "--cpu-allocation-ratio", "8")
	waitWarmClassMetric(t, s, "vessel_warm_pool_size", "gvisor", "4/8", 1)
	waitWarmClassMetric(t, s, "vessel_warm_pool_size", "gvisor", "8/16", 1)
	if out, stderr, code := s.vessel("host", "ls"); code != 0 || !strings.Contains(out, "gvisor:4/8 1/1,gvisor:8/16 1/1") {
		t.Errorf("vessel host ls (exit %d) does not show the pools gvisor:4/8 1/1,gvisor:8/16 1/1:\n%s%s", code, out, stderr)
	}
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String("large"),
		Cpu: aws.String("8192"), Memory: aws.String("16384"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sleep", "1000"}, StopTimeout: aws.Int32(2)}}})
	if err != nil {
		t.Fatal(err)
	}
	large := runOne(t, c, "large")
	waitFor(t, c, large, "RUNNING", 60*time.Second)
	waitWarmClassMetric(t, s, "vessel_warm_pool_hits_total", "gvisor", "8/16", 1)
	small := runImage(t, c, "small", img, "512", "sleep", "1000")
	waitFor(t, c, small, "RUNNING", 60*time.Second)
	waitWarmClassMetric(t, s, "vessel_warm_pool_hits_total", "gvisor", "4/8", 1)
	for _, class := range []string{"4/8", "8/16"} {
		if m := warmClassMetric(t, s, "vessel_warm_pool_misses_total", "gvisor", class); m != 0 {
			t.Errorf("pool gvisor:%s counted %v misses; want none", class, m)
		}
	}
	stopAll(t, s)
	waitWarmClassMetric(t, s, "vessel_warm_pool_size", "gvisor", "4/8", 1)
	waitWarmClassMetric(t, s, "vessel_warm_pool_size", "gvisor", "8/16", 1)
	seen := map[string]bool{}
	for _, id := range regexp.MustCompile(`warm-gvisor-[0-9a-f]{8}`).FindAllString(s.log.String(), -1) {
		seen[id] = true
	}
	s.kill(syscall.SIGTERM)
	if !regexp.MustCompile(`msg="warm sandboxes deleted" .*count=2\b`).MatchString(s.log.String()) {
		t.Errorf("the server's stop does not say it deleted its 2 warm sandboxes:\n%s", logLinesOf(s, []string{"warm"}))
	}
	poolLeftNothing(t, s, before, seen, 4) // 2, and a refill after each hit
}

// TestWarmPoolPrimedRunc runs `vessel server --warm-pool runc=2`: the
// first task of a task definition takes a warm sandbox, and the pool
// primes a warm sandbox with its containers (runc's container created
// ahead, under the warm sandbox's ID). The next task of the definition
// takes that one: the agent logs a primed hit, its RuntimeId and its
// metadata URI are the warm sandbox's container's, it reads its own task
// from the metadata endpoint and its output reaches `vessel logs`. A
// graceful stop deletes the pool, primed containers included, leaving
// nothing.
func TestWarmPoolPrimedRunc(t *testing.T) {
	s, before := startPoolServer(t, false, "--runtime", "runc", "--runtimes", "sim,runc", "--warm-pool", "runc=2")
	waitWarmMetric(t, s, "vessel_warm_pool_size", "runc", 2)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	if _, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String("primed"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img), StopTimeout: aws.Int32(2),
			Command: []string{"sh", "-c", `echo "uri=$ECS_CONTAINER_METADATA_URI_V4"; wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task; echo; echo END; exec sleep 1000`}}}}); err != nil {
		t.Fatal(err)
	}
	first := runOne(t, c, "primed")
	waitFor(t, c, first, "RUNNING", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", "runc", 1)
	// The refill made a sandbox primed for the definition.
	waitWarmMetric(t, s, "vessel_warm_pool_size", "runc", 2)
	second := runOne(t, c, "primed")
	tk := waitFor(t, c, second, "RUNNING", 60*time.Second)
	waitWarmMetric(t, s, "vessel_warm_pool_hits_total", "runc", 2)
	hit := regexp.MustCompile(`msg="warm pool hit[^"]*" .*task=` + taskID(second) + ` .*warm_sandbox=(warm-runc-[0-9a-f]{8}) primed=true`).FindStringSubmatch(s.log.String())
	if hit == nil {
		t.Fatalf("the second task's hit is not a primed one:\n%s", logLinesOf(s, []string{"warm"}))
	}
	warmID := hit[1]
	if got := aws.ToString(tk.Containers[0].RuntimeId); got != warmID+"-app" {
		t.Errorf("RuntimeId %q; want the primed container's %q", got, warmID+"-app")
	}
	var log string
	testutil.Eventually(t, 60*time.Second, func() error {
		log, _, _ = s.vessel("logs", second)
		if !strings.Contains(log, "END") {
			return fmt.Errorf("the task has not read its metadata yet; its log:\n%s", log)
		}
		return nil
	})
	if !strings.Contains(log, "uri=http://169.254.170.2/v4/"+warmID+"-app") || !strings.Contains(log, `"TaskARN":"`+second+`"`) {
		t.Errorf("the primed task did not read its own metadata by its container's URI; its log:\n%s", log)
	}
	if m := warmMetric(t, s, "vessel_warm_pool_misses_total", "runc"); m != 0 {
		t.Errorf("%v misses; want none", m)
	}
	// One primed hit of two; the refill primes one of the two ready.
	waitWarmMetric(t, s, "vessel_warm_pool_primed_hits_total", "runc", 1)
	waitWarmMetric(t, s, "vessel_warm_pool_primed", "runc", 1)
	host := regexp.MustCompile(`msg="host registered" host=(\S+)`).FindStringSubmatch(s.log.String())
	if host == nil {
		t.Fatalf("the server's log does not say which host registered:\n%s", s.log.String())
	}
	if out, _, _ := s.vessel("host", "describe", host[1]); !strings.Contains(out, "(1 primed, 1 primed hits)") {
		t.Errorf("vessel host describe does not show the primed sandbox and hit:\n%s", out)
	}
	stopAll(t, s)
	waitWarmMetric(t, s, "vessel_warm_pool_size", "runc", 2)
	seen := map[string]bool{}
	for _, id := range regexp.MustCompile(`warm-runc-[0-9a-f]{8}`).FindAllString(s.log.String(), -1) {
		seen[id] = true
	}
	s.kill(syscall.SIGTERM)
	poolLeftNothing(t, s, before, seen, 4) // 2, and a refill after each hit
}
