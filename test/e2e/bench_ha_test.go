package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/prometheus/procfs"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/test/fleet"
)

// BenchmarkEtcdAPIThroughput measures RunTask+DescribeTasks pairs per
// second through one built `vessel server` on a three-member etcd, next to
// the same server on its embedded bbolt store in the same run. Both are
// laid out as a replicated deployment is: the server runs --no-agent and
// one `vessel agent` process offering the sim runtime joins it, so that
// only the store differs and every task is placed, reported and run as on
// a real host (no sandbox process). With 1 client, then 16 concurrent
// clients (each its own SDK client and connections), the two sides are
// measured in turns of a few seconds each (so that the load of the shared
// machine falls on both alike); after each turn the lifecycles the pairs
// started are let finish, and their cost is counted with the pairs': the
// CPU time of each process and the store requests per pair (from the
// server's /metrics). A third side, the same server on a one-member etcd,
// tells the cost of etcd's requests from that of its replication. It also
// prints this disk's fsync latency. Run it with
//
//	go test -run x -bench EtcdAPIThroughput -benchtime 1x ./test/e2e/
func BenchmarkEtcdAPIThroughput(b *testing.B) {
	const turns, window = 3, 4 * time.Second
	fsync := fsyncLatency(b, b.TempDir(), 200)
	cluster, single := etcdtest.Start(b, 3), etcdtest.Start(b, 1)
	sides := []*pairSide{
		newPairSide(b, "bbolt", startBenchReplica(b), nil),
		newPairSide(b, "etcd", startBenchReplica(b, "--etcd", strings.Join(cluster.Endpoints(), ",")), memberPIDs(b, cluster.Endpoints())),
		newPairSide(b, "etcd1", startBenchReplica(b, "--etcd", single.Endpoints()[0]), memberPIDs(b, single.Endpoints())),
	}
	fmt.Printf("disk fsync (4 KiB write + fdatasync) p50 %v  p99 %v\n", percentile(fsync, 50), percentile(fsync, 99))
	for _, n := range []int{1, 16} {
		tallies := make([]pairTally, len(sides))
		for range turns {
			for i, side := range sides {
				tallies[i].add(side.measure(b, n, window))
			}
		}
		o, e, e1 := tallies[0], tallies[1], tallies[2]
		fmt.Printf("RunTask+DescribeTasks pairs/s, %2d client(s): etcd (3 members) %.1f   bbolt %.1f   bbolt ÷ etcd %.2f×   pair p50 etcd %v bbolt %v   (etcd of 1 member: %.1f, p50 %v)\n",
			n, e.rate(), o.rate(), o.rate()/e.rate(), percentile(e.lat, 50).Round(100*time.Microsecond), percentile(o.lat, 50).Round(100*time.Microsecond),
			e1.rate(), percentile(e1.lat, 50).Round(100*time.Microsecond))
		for i, t := range tallies {
			fmt.Printf("  %-5s per pair: CPU server %v agent %v store %v (total %v); store requests %s; lifecycles done %v after the windows (tasks RUNNING/s over both: %.1f)\n",
				sides[i].name, t.perPair(t.cpu.server), t.perPair(t.cpu.agent), t.perPair(t.cpu.store), t.perPair(t.cpu.total()),
				t.opsPerPair(), t.settle.Round(time.Millisecond), float64(t.pairs)/(t.elapsed+t.settle).Seconds())
		}
		b.ReportMetric(o.rate()/e.rate(), fmt.Sprintf("x-bbolt-%dclients", n))
		b.ReportMetric(e.rate(), fmt.Sprintf("pairs/s-etcd-%dclients", n))
	}
}

// pairSide is one server measured by BenchmarkEtcdAPIThroughput, with its
// agent and the processes of its store beyond the server (etcd members).
type pairSide struct {
	name      string
	s         *server
	agent     *exec.Cmd
	storePIDs []int
	id        string
	secret    string
	c         *ecs.Client
}

// newPairSide joins a sim agent to s, registers the task definition
// "pair" and runs one task to RUNNING.
func newPairSide(b *testing.B, name string, s *server, storePIDs []int) *pairSide {
	p := &pairSide{name: name, s: s, agent: startSimAgent(b, []*server{s}), storePIDs: storePIDs}
	p.id, p.secret = s.keys()
	p.c = ecsClientFor(s.endpoint, p.id, p.secret)
	registerDef(b, p.c, "pair", "256", "512", 0, "sleep", "3600")
	waitForB(b, p.c, runOneB(b, p.c, "pair"), "RUNNING")
	return p
}

// measure runs pairs with n clients for window, then waits until the last
// task of each client is RUNNING, and returns what that cost.
func (p *pairSide) measure(b *testing.B, n int, window time.Duration) pairTally {
	clients := make([]*ecs.Client, n)
	for i := range clients {
		clients[i] = ecsClientFor(p.s.endpoint, p.id, p.secret)
	}
	cpu := func() pairCPU {
		return pairCPU{cpuTime(b, p.s.cmd.Process.Pid), cpuTime(b, p.agent.Process.Pid), cpuTime(b, p.storePIDs...)}
	}
	cpu0, ops0 := cpu(), storeRequests(b, p.s)
	start := time.Now()
	lat, last := measurePairs(b, clients, "pair", window)
	elapsed := time.Since(start)
	// Tasks are placed oldest first: once the last ones run, all do.
	for _, arn := range last {
		waitForB(b, p.c, arn, "RUNNING")
	}
	t := pairTally{pairs: len(lat), elapsed: elapsed, settle: time.Since(start) - elapsed, lat: lat, ops: storeRequests(b, p.s)}
	cpu1 := cpu()
	t.cpu = pairCPU{cpu1.server - cpu0.server, cpu1.agent - cpu0.agent, cpu1.store - cpu0.store}
	for op, v := range ops0 {
		t.ops[op] -= v
	}
	return t
}

// pairTally adds up turns of pairs.
type pairTally struct {
	pairs   int
	elapsed time.Duration // running pairs
	settle  time.Duration // after, until their tasks ran
	lat     []time.Duration
	cpu     pairCPU
	ops     map[string]float64
}

// pairCPU is the CPU time (user and system) of each process.
type pairCPU struct{ server, agent, store time.Duration }

func (c pairCPU) total() time.Duration { return c.server + c.agent + c.store }

func (t *pairTally) add(u pairTally) {
	t.pairs += u.pairs
	t.elapsed += u.elapsed
	t.settle += u.settle
	t.lat = append(t.lat, u.lat...)
	t.cpu = pairCPU{t.cpu.server + u.cpu.server, t.cpu.agent + u.cpu.agent, t.cpu.store + u.cpu.store}
	if t.ops == nil {
		t.ops = map[string]float64{}
	}
	for op, v := range u.ops {
		t.ops[op] += v
	}
}

func (t pairTally) rate() float64 { return float64(t.pairs) / t.elapsed.Seconds() }

func (t pairTally) perPair(d time.Duration) time.Duration {
	return (d / time.Duration(max(1, t.pairs))).Round(10 * time.Microsecond)
}

// opsPerPair prints the store requests per pair by operation.
func (t pairTally) opsPerPair() string {
	var out []string
	for _, op := range slices.Sorted(maps.Keys(t.ops)) {
		if v := t.ops[op] / float64(max(1, t.pairs)); v >= 0.05 {
			out = append(out, fmt.Sprintf("%s %.1f", op, v))
		}
	}
	return strings.Join(out, ", ")
}

// storeRequests reads the server's store requests so far by operation
// from its /metrics.
func storeRequests(b *testing.B, s *server) map[string]float64 {
	f := metricFamilies(b, s)["vessel_store_request_duration_seconds"]
	if f == nil {
		b.Fatalf("%s/metrics has no vessel_store_request_duration_seconds", s.endpoint)
	}
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "operation" {
				out[l.GetValue()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// measurePairs has each client run RunTask of family then DescribeTasks of
// the new task, one pair after another, until window has passed. It
// returns how long each pair took and the last task each client ran.
func measurePairs(b *testing.B, clients []*ecs.Client, family string, window time.Duration) ([]time.Duration, []string) {
	ctx := context.Background()
	var mu sync.Mutex
	var lat []time.Duration
	var last []string
	var firstErr error
	start := time.Now()
	deadline := start.Add(window)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arn := ""
			for time.Now().Before(deadline) {
				t0 := time.Now()
				a, err := runAndDescribe(ctx, c, family)
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
				if err != nil {
					return
				}
				arn = a
			}
			mu.Lock()
			last = append(last, arn)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return lat, last
}

// runAndDescribe is one pair: RunTask, then DescribeTasks of that task.
func runAndDescribe(ctx context.Context, c *ecs.Client, family string) (string, error) {
	out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String(family)})
	if err != nil || len(out.Tasks) != 1 {
		return "", fmt.Errorf("RunTask: %v %+v", err, out)
	}
	arn := aws.ToString(out.Tasks[0].TaskArn)
	d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: []string{arn}})
	if err != nil || len(d.Tasks) != 1 || aws.ToString(d.Tasks[0].TaskArn) != arn {
		return "", fmt.Errorf("DescribeTasks of %s right after RunTask: %v %+v", arn, err, d)
	}
	return arn, nil
}

// BenchmarkEtcdFailover measures how long the control plane cannot place
// a task when its leader dies: three built `vessel server --no-agent`
// replicas on a three-member etcd with the default --leader-lease (10 s),
// one `vessel agent` offering the sim runtime and given all three URLs.
// Each round kill -9s the leader at a random point of its lease's renewal
// cycle, at once runs a task through a survivor, and times until that
// task is placed (DescribeTasks shows its vessel:host attribute: the
// leader's controller bound it to a host) and until a survivor's /healthz
// says it leads; then it restarts the killed replica on its data directory
// and waits for the three to agree on one leader. It prints p50, p99 and
// max over the rounds next to the lease. Run it with
//
//	go test -run x -bench EtcdFailover -benchtime 1x ./test/e2e/
func BenchmarkEtcdFailover(b *testing.B) {
	const rounds = 20
	lease := 10 * time.Second
	if v := os.Getenv("VESSEL_BENCH_LEASE"); v != "" {
		var err error
		if lease, err = time.ParseDuration(v); err != nil {
			b.Fatalf("VESSEL_BENCH_LEASE=%q: %v; give a duration such as 10s", v, err)
		}
	}
	cluster := etcdtest.Start(b, 3)
	rs := startBenchReplicas(b, strings.Join(cluster.Endpoints(), ","), 3, "--leader-lease", lease.String())
	startSimAgent(b, rs)
	id, secret := rs[0].keys()
	leader := fleet.Leader(b, rs, 60*time.Second)
	c := ecsClientFor(leader.endpoint, id, secret)
	registerDef(b, c, "failover", "256", "512", 0, "sleep", "3600")
	waitForB(b, c, runOneB(b, c, "failover"), "RUNNING")

	var placed, elected []time.Duration
	for round := range rounds {
		// Keep-alives renew the lease every third of it: kill at a random
		// point of that cycle, as a real failure would.
		time.Sleep(rand.N(lease / 3))
		leader = fleet.Leader(b, rs, 60*time.Second)
		survivors := fleet.Without(rs, leader)
		killed := time.Now()
		leader.kill(syscall.SIGKILL)
		electedc := make(chan time.Duration, 1)
		go func() { electedc <- waitLeads(survivors, killed, 2*time.Minute) }()
		sc := ecsClientFor(survivors[0].endpoint, id, secret)
		arn := runOneB(b, sc, "failover")
		p := waitPlaced(b, sc, arn, 2*time.Minute).Sub(killed)
		e := <-electedc
		placed, elected = append(placed, p), append(elected, e)
		fmt.Printf("round %2d: leader killed → placed %v, → a survivor's /healthz says leader %v\n", round+1, p.Round(time.Millisecond), e.Round(time.Millisecond))
		leader.start()
	}
	fleet.Leader(b, rs, 60*time.Second)
	fmt.Printf("failover over %d kills of the leader, --leader-lease %v: kill → first placement p50 %v  p99 %v  max %v   kill → /healthz leader p50 %v  p99 %v   target p99 ≤ lease + 5 s = %v\n",
		rounds, lease, percentile(placed, 50).Round(time.Millisecond), percentile(placed, 99).Round(time.Millisecond),
		percentile(placed, 100).Round(time.Millisecond), percentile(elected, 50).Round(time.Millisecond),
		percentile(elected, 99).Round(time.Millisecond), lease+5*time.Second)
	b.ReportMetric(percentile(placed, 50).Seconds(), "s-placed-p50")
	b.ReportMetric(percentile(placed, 99).Seconds(), "s-placed-p99")
	b.ReportMetric(percentile(placed, 99).Seconds()/lease.Seconds(), "x-lease-p99")
}

// waitPlaced polls DescribeTasks until the task is bound to a host and
// returns when it first saw that.
func waitPlaced(b *testing.B, c *ecs.Client, arn string, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Tasks: []string{arn}})
		now := time.Now()
		if err == nil && len(out.Tasks) == 1 {
			tk := out.Tasks[0]
			if taskHost(tk) != "" {
				return now
			}
			if aws.ToString(tk.LastStatus) == "STOPPED" {
				b.Fatalf("task %s stopped before it was placed: %s", arn, aws.ToString(tk.StoppedReason))
			}
		}
		if now.After(deadline) {
			b.Fatalf("task %s not placed within %v (last answer: %v)", arn, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// taskHost is the host a task is placed on, "" before placement.
func taskHost(tk ecstypes.Task) string {
	for _, a := range tk.Attributes {
		if aws.ToString(a.Name) == "vessel:host" {
			return aws.ToString(a.Value)
		}
	}
	return ""
}

// waitLeads polls the /healthz of rs until one says it leads and returns
// how long after since that was; timeout if none does.
func waitLeads(rs []*server, since time.Time, timeout time.Duration) time.Duration {
	for time.Since(since) < timeout {
		for _, s := range rs {
			if r, err := s.Role(); err == nil && r == "leader" {
				return time.Since(since)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return timeout
}

// Replica setup, kept small for the fleet harness to take over.

// startBenchReplica starts `vessel server --no-agent` for a benchmark on a
// fresh data directory, without API or launch rate limits, and stops it
// when the benchmark ends.
func startBenchReplica(b *testing.B, extra ...string) *server {
	t := b // temporary directories and processes go with the benchmark
	s := &server{t: t, dataDir: b.TempDir(), addr: freeAddr(t),
		extra: append([]string{"--no-agent", "--runtimes", "sim", "--log-level", "warn",
			"--api-rate", "0", "--launch-rate", "0"}, extra...)}
	s.endpoint = "http://" + s.addr
	s.start()
	b.Cleanup(func() { s.kill(syscall.SIGTERM) })
	return s
}

// startBenchReplicas starts n replicas on the etcd cluster at endpoints
// (comma-separated), all given the first one's master key.
func startBenchReplicas(b *testing.B, endpoints string, n int, extra ...string) []*server {
	args := append([]string{"--etcd", endpoints, "--log-level", "info"}, extra...)
	first := startBenchReplica(b, args...)
	rs := []*server{first}
	for range n - 1 {
		rs = append(rs, startBenchReplica(b, append(args, "--encryption-key-file", filepath.Join(first.dataDir, "master.key"))...))
	}
	return rs
}

// startSimAgent starts a `vessel agent` process offering only the sim
// runtime, joined through the first of servers and given all their URLs,
// with allocation ratios that fit the thousands of tasks a benchmark
// leaves RUNNING; it is stopped when the benchmark ends. extra goes to
// `vessel agent` (e.g. --host-id).
func startSimAgent(b *testing.B, servers []*server, extra ...string) *exec.Cmd {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.endpoint)
	}
	log := &syncBuffer{}
	agent := exec.Command(vesselBin, "agent", "--server", strings.Join(urls, ","), "--data-dir", b.TempDir(),
		"--token", servers[0].joinToken(), "--runtime", "sim", "--runtimes", "sim", "--listen", "127.0.0.1:0",
		"--cpu-allocation-ratio", "4096", "--memory-allocation-ratio", "512", "--log-level", "warn")
	agent.Args = append(agent.Args, extra...)
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = log, log
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
		if b.Failed() {
			b.Logf("agent log:\n%s", log)
		}
	})
	return agent
}

// ecsClientFor is an ECS client of its own (its own connections) for
// endpoint, signed with the key id/secret, without retries.
func ecsClientFor(endpoint, id, secret string) *ecs.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// fsyncLatency times n writes of 4 KiB each followed by fdatasync in a
// file in dir: the floor of a durable write on this disk.
func fsyncLatency(b *testing.B, dir string, n int) []time.Duration {
	f, err := os.Create(filepath.Join(dir, "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// cpuTime is the CPU time (user and system) the processes pids have used
// so far.
func cpuTime(b *testing.B, pids ...int) time.Duration {
	var sec float64
	for _, pid := range pids {
		p, err := procfs.NewProc(pid)
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Stat()
		if err != nil {
			b.Fatal(err)
		}
		sec += st.CPUTime()
	}
	return time.Duration(sec * float64(time.Second))
}

// memberPIDs are the process IDs of the etcd members serving endpoints
// (their client URLs).
func memberPIDs(b *testing.B, endpoints []string) []int {
	procs, err := procfs.AllProcs()
	if err != nil {
		b.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil {
			continue
		}
		if i := slices.Index(args, "--listen-client-urls"); i >= 0 && i+1 < len(args) && slices.Contains(endpoints, args[i+1]) {
			pids = append(pids, p.PID)
		}
	}
	if len(pids) != len(endpoints) {
		b.Fatalf("found %d etcd member processes serving %v, want %d", len(pids), endpoints, len(endpoints))
	}
	return pids
}
