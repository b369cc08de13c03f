package e2e

import (
	"context"
	"fmt"
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
)

// BenchmarkEtcdAPIThroughput measures RunTask+DescribeTasks pairs per
// second through one built `vessel server` on a three-member etcd, next to
// the same server on its embedded bbolt store in the same run. Both are
// laid out as a replicated deployment is: the server runs --no-agent and
// one `vessel agent` process offering the sim runtime joins it, so that
// only the store differs and every task is placed, reported and run as on
// a real host (no sandbox process). Each side is measured with 1 client,
// then with 16 concurrent clients (each its own SDK client and
// connections), for a fixed time each; the tasks stay RUNNING. It also
// prints this disk's fsync latency, which bounds both stores. Run it with
//
//	go test -run x -bench EtcdAPIThroughput -benchtime 1x ./test/e2e/
func BenchmarkEtcdAPIThroughput(b *testing.B) {
	const window = 10 * time.Second
	fsync := fsyncLatency(b, b.TempDir(), 200)

	bolt := startBenchReplica(b)
	boltRates := pairRates(b, bolt, nil, window)

	cluster := etcdtest.Start(b, 3)
	onEtcd := startBenchReplica(b, "--etcd", strings.Join(cluster.Endpoints(), ","))
	etcdRates := pairRates(b, onEtcd, memberPIDs(b, cluster.Endpoints()), window)

	fmt.Printf("disk fsync (4 KiB write + fdatasync) p50 %v  p99 %v\n", percentile(fsync, 50), percentile(fsync, 99))
	for i, n := range benchClients {
		e, o := etcdRates[i], boltRates[i]
		fmt.Printf("RunTask+DescribeTasks pairs/s, %2d client(s): etcd (3 members) %.1f   bbolt %.1f   bbolt ÷ etcd %.2f×   pair p50 etcd %v bbolt %v\n",
			n, e.perSecond, o.perSecond, o.perSecond/e.perSecond, e.p50.Round(100*time.Microsecond), o.p50.Round(100*time.Microsecond))
		fmt.Printf("  CPU per pair: etcd side: server %v agent %v etcd members %v (total %v)   bbolt side: server %v agent %v (total %v)\n",
			e.cpu.server, e.cpu.agent, e.cpu.store, e.cpu.total(), o.cpu.server, o.cpu.agent, o.cpu.total())
		b.ReportMetric(o.perSecond/e.perSecond, fmt.Sprintf("x-bbolt-%dclients", n))
		b.ReportMetric(e.perSecond, fmt.Sprintf("pairs/s-etcd-%dclients", n))
	}
}

// benchClients are the numbers of concurrent clients pairRates measures.
var benchClients = []int{1, 16}

// pairRate is what one pairRates measurement found.
type pairRate struct {
	perSecond float64
	p50       time.Duration
	cpu       pairCPU
}

// pairCPU is the CPU time (user and system) each process spent per pair.
type pairCPU struct{ server, agent, store time.Duration }

func (c pairCPU) total() time.Duration { return c.server + c.agent + c.store }

// pairRates joins a sim agent to s, warms it up with one task to RUNNING,
// and measures pairs per second for window with each of benchClients,
// and the CPU time s, the agent and the processes storePIDs spent.
func pairRates(b *testing.B, s *server, storePIDs []int, window time.Duration) []pairRate {
	agent := startSimAgent(b, []*server{s})
	id, secret := s.keys()
	c := ecsClientFor(s.endpoint, id, secret)
	registerDef(b, c, "pair", "256", "512", 0, "sleep", "3600")
	waitForB(b, c, runOneB(b, c, "pair"), "RUNNING")
	var out []pairRate
	for _, n := range benchClients {
		clients := make([]*ecs.Client, n)
		for i := range clients {
			clients[i] = ecsClientFor(s.endpoint, id, secret)
		}
		before := pairCPU{cpuTime(b, s.cmd.Process.Pid), cpuTime(b, agent.Process.Pid), cpuTime(b, storePIDs...)}
		r, pairs, last := measurePairs(b, clients, "pair", window)
		// The lifecycles the pairs started (placement, the agent's
		// reports up to RUNNING) are part of what a pair costs: let them
		// end before reading the CPU times.
		for _, arn := range last {
			waitForB(b, c, arn, "RUNNING")
		}
		per := func(d, before time.Duration) time.Duration {
			return ((d - before) / time.Duration(pairs)).Round(10 * time.Microsecond)
		}
		r.cpu = pairCPU{per(cpuTime(b, s.cmd.Process.Pid), before.server), per(cpuTime(b, agent.Process.Pid), before.agent),
			per(cpuTime(b, storePIDs...), before.store)}
		out = append(out, r)
	}
	return out
}

// measurePairs has each client run RunTask of family then DescribeTasks of
// the new task, one pair after another, until window has passed. It
// returns the pairs completed per second with the median pair, how many
// pairs there were, and the last task each client ran.
func measurePairs(b *testing.B, clients []*ecs.Client, family string, window time.Duration) (pairRate, int, []string) {
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
	elapsed := time.Since(start)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return pairRate{perSecond: float64(len(lat)) / elapsed.Seconds(), p50: percentile(lat, 50)}, len(lat), last
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
	leader := oneLeader(b, rs, 60*time.Second)
	c := ecsClientFor(leader.endpoint, id, secret)
	registerDef(b, c, "failover", "256", "512", 0, "sleep", "3600")
	waitForB(b, c, runOneB(b, c, "failover"), "RUNNING")

	var placed, elected []time.Duration
	for round := range rounds {
		// Keep-alives renew the lease every third of it: kill at a random
		// point of that cycle, as a real failure would.
		time.Sleep(rand.N(lease / 3))
		leader = oneLeader(b, rs, 60*time.Second)
		survivors := without(rs, leader)
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
	oneLeader(b, rs, 60*time.Second)
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
			if r, err := replicaRole(s); err == nil && r == "leader" {
				return time.Since(since)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return timeout
}

// without is rs without s.
func without(rs []*server, not *server) []*server {
	var out []*server
	for _, s := range rs {
		if s != not {
			out = append(out, s)
		}
	}
	return out
}

// Replica setup, kept small for the fleet harness to take over.

// startBenchReplica starts `vessel server --no-agent` for a benchmark on a
// fresh data directory, without API or launch rate limits, and stops it
// when the benchmark ends.
func startBenchReplica(b *testing.B, extra ...string) *server {
	t := &testing.T{}
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
// leaves RUNNING; it is stopped when the benchmark ends.
func startSimAgent(b *testing.B, servers []*server) *exec.Cmd {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.endpoint)
	}
	log := &syncBuffer{}
	agent := exec.Command(vesselBin, "agent", "--server", strings.Join(urls, ","), "--data-dir", b.TempDir(),
		"--token", servers[0].joinToken(), "--runtime", "sim", "--runtimes", "sim", "--listen", "127.0.0.1:0",
		"--cpu-allocation-ratio", "4096", "--memory-allocation-ratio", "512", "--log-level", "warn")
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
