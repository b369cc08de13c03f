package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
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

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
)

// ServerPort is the port every server listens on, on its machine's address.
const ServerPort = "8600"

// AgentPort is the port of every agent's endpoint for logs and execs.
const AgentPort = "8700"

// noWarmPools turns off every runtime's warm pool, which a host keeps by
// default: a fleet test sees only its own sandboxes and addresses.
var noWarmPools = []string{"--warm-pool", "microvm=0,gvisor=0,runc=0"}

// Etcd starts an n-member etcd cluster, each member on a machine of its own
// (etcd0, etcd1, ...), listening on 2379 and 2380 of the machine's address.
// The fleet's servers and agents are stopped (and their tasks first) before
// the members are, when the test ends.
func (f *Fleet) Etcd(n int) *etcdtest.Cluster {
	f.t.Helper()
	var ms []*Machine
	var hosts []string
	for i := range n {
		m := f.Machine(fmt.Sprintf("etcd%d", i))
		ms, hosts = append(ms, m), append(hosts, m.Addr.String())
	}
	c := etcdtest.StartWith(f.t, etcdtest.Options{Members: n, Hosts: hosts,
		Command: func(i int, name string, args ...string) *exec.Cmd { return ms[i].Command(name, args...) }})
	// Registered after the members' cleanup, so it runs before it.
	f.t.Cleanup(f.stopVessel)
	return c
}

// ServerConfig says how to run a vessel server replica.
type ServerConfig struct {
	// Etcd is the store; nil: the server's own bbolt file (one replica).
	Etcd *etcdtest.Cluster
	// LeaderLease is --leader-lease; zero: the server's default.
	LeaderLease time.Duration
	// WithAgent runs the server's in-process agent (default: --no-agent).
	WithAgent bool
	// Args are more flags. Without --runtimes, the server offers sim and
	// runc.
	Args []string
}

// Server is a `vessel server` on a machine of its own.
type Server struct {
	*Process
	f *Fleet
	// DataDir is its data directory; CAFile the CA its clients trust.
	DataDir, CAFile string
	// Endpoint is its URL: https://ADDR:8600.
	Endpoint string

	clientOnce sync.Once
	client     *http.Client
	credsMu    sync.Mutex
	creds      [2]string // access key ID and secret, once asked
}

// Servers starts n replicas one after the other (Server each).
func (f *Fleet) Servers(n int, cfg ServerConfig) []*Server {
	f.t.Helper()
	var out []*Server
	for range n {
		out = append(out, f.Server(cfg))
	}
	return out
}

// Server starts one more replica on a machine of its own (vs0, vs1, ...)
// and waits until it answers /healthz. Every replica after the fleet's
// first is given the first one's CA and encryption key (tls/ca.crt,
// tls/ca.key and master.key copied into its data directory, where
// `vessel server` and `vessel credentials` look for them), as an operator
// sets up a replica on another machine.
func (f *Fleet) Server(cfg ServerConfig) *Server {
	f.t.Helper()
	f.mu.Lock()
	i := len(f.servers)
	var first *Server
	if i > 0 {
		first = f.servers[0]
	}
	f.mu.Unlock()
	m := f.Machine(fmt.Sprintf("vs%d", i))
	dir := f.dataDir()
	s := &Server{f: f, DataDir: dir, CAFile: filepath.Join(dir, "tls", "ca.crt"),
		Endpoint: "https://" + m.Addr.String() + ":" + ServerPort}
	argv := []string{f.cfg.Vessel, "server", "--data-dir", dir, "--listen", m.Addr.String() + ":" + ServerPort}
	if !cfg.WithAgent {
		argv = append(argv, "--no-agent")
	}
	if cfg.Etcd != nil {
		argv = append(argv, "--etcd", strings.Join(cfg.Etcd.Endpoints(), ","))
	}
	if cfg.LeaderLease > 0 {
		argv = append(argv, "--leader-lease", cfg.LeaderLease.String())
	}
	if !slices.Contains(cfg.Args, "--runtimes") {
		argv = append(argv, "--runtimes", "sim,runc")
	}
	if cfg.WithAgent && !slices.Contains(cfg.Args, "--warm-pool") {
		argv = append(argv, noWarmPools...)
	}
	if first != nil {
		for _, name := range []string{"tls/ca.crt", "tls/ca.key", "master.key"} {
			copyFile(f.t, filepath.Join(first.DataDir, name), filepath.Join(dir, name))
		}
	}
	argv = append(argv, cfg.Args...)
	s.Process = m.Start(fmt.Sprintf("server %d", i), withoutKeys(), argv...)
	f.mu.Lock()
	f.servers = append(f.servers, s)
	f.mu.Unlock()
	s.WaitHealthy(60 * time.Second)
	return s
}

// copyFile copies src to dst (0600), making dst's directory (0700).
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("fleet: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatalf("fleet: %v", err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatalf("fleet: %v", err)
	}
}

// withoutKeys is the test's environment without an access key, so that a
// process signs only with what it is given.
func withoutKeys() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(e, "AWS_SECRET_ACCESS_KEY=") {
			env = append(env, e)
		}
	}
	return env
}

// WaitHealthy waits until the server answers /healthz with 200 (after a
// start or a restart).
func (s *Server) WaitHealthy(timeout time.Duration) {
	s.f.t.Helper()
	testutil.Eventually(s.f.t, timeout, func() error {
		if !s.Running() {
			return (fmt.Errorf("%s exited:\n%s", s.Name(), tail(s.Log(), 6000)))
		}
		if _, err := os.Stat(s.CAFile); err != nil {
			return fmt.Errorf("%s has no CA yet: %v", s.Name(), err)
		}
		resp, err := s.HTTPClient().Get(s.Endpoint + "/healthz")
		if err != nil {
			return fmt.Errorf("%s: %v", s.Name(), err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: /healthz answers %s", s.Name(), resp.Status)
		}
		return nil
	})
}

// HTTPClient trusts the server's CA (the fleet's: every replica has it).
func (s *Server) HTTPClient() *http.Client {
	s.clientOnce.Do(func() {
		s.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.caPool(), MinVersion: tls.VersionTLS12}}}
	})
	return s.client
}

func (s *Server) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(s.CAFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	return pool
}

// Role asks /healthz whether the server leads: "leader" or "follower". A
// paused or dead server answers nothing within 2 s.
func (s *Server) Role() (string, error) { return Role(s.HTTPClient(), s.Endpoint) }

// Role asks the /healthz of the server at endpoint, through hc, whether it
// leads: "leader" or "follower". It waits 2 s at most.
func Role(hc *http.Client, endpoint string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if r, ok := strings.CutPrefix(line, "role: "); ok {
			return r, nil
		}
	}
	return "", fmt.Errorf("/healthz %s says no role: %q", resp.Status, body)
}

// Replica is a server Leader can ask: the fleet's, or one a test started
// otherwise.
type Replica interface {
	comparable
	Name() string
	Role() (string, error)
}

// Leader waits until exactly one of servers says it leads and every other
// that it follows (all must answer), and returns the leader.
func Leader[R Replica](t testing.TB, servers []R, timeout time.Duration) R {
	t.Helper()
	var leader R
	testutil.Eventually(t, timeout, func() error {
		var zero R
		leader = zero
		for _, s := range servers {
			r, err := s.Role()
			if err != nil {
				return fmt.Errorf("%s: %v", s.Name(), err)
			}
			if r == "leader" {
				if leader != zero {
					return fmt.Errorf("%s and %s both say they lead", leader.Name(), s.Name())
				}
				leader = s
			}
		}
		if leader == zero {
			return errors.New("no replica leads")
		}
		return nil
	})
	return leader
}

// Without is servers without drop, in order.
func Without[R comparable](servers []R, drop ...R) []R {
	var out []R
	for _, s := range servers {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

// Vessel runs a vessel command against the server with its data directory
// (so signed with its local admin key) and returns stdout and stderr.
// Global flags go right after the verb.
func (s *Server) Vessel(args ...string) (string, string, error) {
	full := append([]string{args[0], "--endpoint", s.Endpoint, "--data-dir", s.DataDir}, args[1:]...)
	cmd := exec.Command(s.f.cfg.Vessel, full...)
	cmd.Env = append(withoutKeys(), "AWS_CA_BUNDLE="+s.CAFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("vessel %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// Credentials returns the admin key as `vessel credentials` prints it on
// the server's machine (asked once, then remembered).
func (s *Server) Credentials() (id, secret string) {
	s.f.t.Helper()
	s.credsMu.Lock()
	defer s.credsMu.Unlock()
	if s.creds[0] != "" {
		return s.creds[0], s.creds[1]
	}
	out, _, err := s.Vessel("credentials")
	if err != nil {
		s.f.t.Fatalf("fleet: %v", err)
	}
	id, secret = ExportValue(out, "AWS_ACCESS_KEY_ID"), ExportValue(out, "AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		s.f.t.Fatalf("fleet: vessel credentials printed no key:\n%s", out)
	}
	s.creds = [2]string{id, secret}
	return id, secret
}

// ExportValue finds "export NAME=value" in out, as `vessel credentials`
// prints it.
func ExportValue(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "export "+name+"="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// AWSConfig is an AWS SDK configuration for the server: its admin key,
// its CA, one attempt per call.
func (s *Server) AWSConfig() aws.Config {
	id, secret := s.Credentials()
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		RetryMaxAttempts: 1, HTTPClient: awsclient.HTTPClient(s.HTTPClient())}
}

// ECS is an ECS client of the server.
func (s *Server) ECS() *ecs.Client {
	return ecs.NewFromConfig(s.AWSConfig(), func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.Endpoint) })
}

// AWSEnv is a clean environment for the aws CLI against the server: its
// admin key and AWS_CA_BUNDLE, a home of its own, no pager, one attempt.
func (s *Server) AWSEnv() []string {
	s.f.t.Helper()
	id, secret := s.Credentials()
	home := s.f.t.TempDir()
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CA_BUNDLE=" + s.CAFile, "AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1"}
}

// AWS runs the aws CLI against the server (from the test's namespace,
// through the bridge) and returns its JSON output.
func (s *Server) AWS(args ...string) ([]byte, error) {
	s.f.t.Helper()
	cmd := exec.Command("aws", append(args, "--endpoint-url", s.Endpoint, "--output", "json")...)
	cmd.Env = s.AWSEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("aws %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// JoinToken makes a join token and returns it with the CA's hash, as
// `vessel host token create` prints them for `vessel agent`.
func (s *Server) JoinToken() (token, caHash string) {
	s.f.t.Helper()
	out, _, err := s.Vessel("host", "token", "create", "--ttl", "1h")
	if err != nil {
		s.f.t.Fatalf("fleet: %v", err)
	}
	f := strings.Fields(out)
	if i := slices.Index(f, "--token"); i >= 0 && i+1 < len(f) {
		token = f[i+1]
	}
	if i := slices.Index(f, "--ca-cert-hash"); i >= 0 && i+1 < len(f) {
		caHash = f[i+1]
	}
	if token == "" || caHash == "" {
		s.f.t.Fatalf("fleet: vessel host token create printed no token and CA hash: %q", out)
	}
	return token, caHash
}

// AgentConfig says how to run a host agent.
type AgentConfig struct {
	// Runtime is the host's one runtime; default sim.
	Runtime string
	// HostID is --host-id; default the machine's name.
	HostID string
	// Subnet is --subnet subnet-default=Subnet, which must be the
	// servers' definition of subnet-default; default: none given, the
	// agent serves the servers' subnets as they define them (each host's
	// bridge lives in its own namespace, so the servers' default
	// 10.89.0.0/16 is free there).
	Subnet string
	// Args are more flags.
	Args []string
}

// Agent is a `vessel agent` host on a machine of its own.
type Agent struct {
	*Process
	DataDir, HostID string
}

// Agent joins a host on a machine of its own (host0, host1, ...) to
// servers (all their URLs, in order; the token from the first) and waits
// until it has registered.
func (f *Fleet) Agent(servers []*Server, cfg AgentConfig) *Agent {
	f.t.Helper()
	f.mu.Lock()
	i := len(f.agents)
	f.mu.Unlock()
	m := f.Machine(fmt.Sprintf("host%d", i))
	rt := cfg.Runtime
	if rt == "" {
		rt = "sim"
	}
	a := &Agent{DataDir: f.dataDir(), HostID: cfg.HostID}
	if a.HostID == "" {
		a.HostID = m.Name
	}
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.Endpoint)
	}
	token, hash := servers[0].JoinToken()
	argv := []string{f.cfg.Vessel, "agent", "--server", strings.Join(urls, ","), "--data-dir", a.DataDir,
		"--host-id", a.HostID, "--token", token, "--ca-cert-hash", hash,
		"--listen", m.Addr.String() + ":" + AgentPort, "--runtime", rt, "--runtimes", rt}
	if cfg.Subnet != "" {
		argv = append(argv, "--subnet", "subnet-default="+cfg.Subnet)
	}
	if !slices.Contains(cfg.Args, "--warm-pool") {
		argv = append(argv, noWarmPools...)
	}
	argv = append(argv, cfg.Args...)
	a.Process = m.Start(fmt.Sprintf("agent %s", a.HostID), withoutKeys(), argv...)
	f.mu.Lock()
	f.agents = append(f.agents, a)
	f.mu.Unlock()
	testutil.Eventually(f.t, 60*time.Second, func() error {
		if !a.Running() {
			return (fmt.Errorf("%s exited:\n%s", a.Name(), tail(a.Log(), 6000)))
		}
		if !strings.Contains(a.Log(), "host registered") {
			return fmt.Errorf("%s has not registered:\n%s", a.Name(), tail(a.Log(), 3000))
		}
		return nil
	})
	return a
}

// stopVessel stops what the fleet's servers run (stopTasks), then the
// agents, then the servers. It runs once, whichever cleanup comes first.
func (f *Fleet) stopVessel() {
	f.mu.Lock()
	if f.vesselStopped {
		f.mu.Unlock()
		return
	}
	f.vesselStopped = true
	agents := append([]*Agent(nil), f.agents...)
	servers := append([]*Server(nil), f.servers...)
	f.mu.Unlock()
	if len(agents) > 0 {
		f.stopTasks(servers)
	}
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); a.Stop() }()
	}
	wg.Wait()
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Stop() }()
	}
	wg.Wait()
}

// stopTasks scales every service to zero and deletes it, stops every task
// and waits until all are STOPPED, through the first server that answers:
// sandboxes outlive their agents, so they go first.
func (f *Fleet) stopTasks(servers []*Server) {
	t := f.t
	var c *ecs.Client
	for _, s := range servers {
		if !s.Running() {
			continue
		}
		s.Signal(syscall.SIGCONT)
		if _, err := s.Role(); err == nil {
			c = s.ECS()
			break
		}
	}
	if c == nil {
		t.Logf("fleet: no server answers: the tasks are not stopped before the agents")
		return
	}
	ctx := context.Background()
	clusters, err := c.ListClusters(ctx, &ecs.ListClustersInput{})
	if err != nil {
		t.Errorf("fleet: stopping the tasks: %v", err)
		return
	}
	for _, cl := range clusters.ClusterArns {
		svcs, err := c.ListServices(ctx, &ecs.ListServicesInput{Cluster: aws.String(cl)})
		if err == nil {
			for _, arn := range svcs.ServiceArns {
				c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cl), Service: aws.String(arn), DesiredCount: aws.Int32(0)})
				c.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: aws.String(cl), Service: aws.String(arn), Force: aws.Bool(true)})
			}
		}
	}
	err = testutil.Wait(120*time.Second, func() error {
		var running []string
		for _, cl := range clusters.ClusterArns {
			p := ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{Cluster: aws.String(cl), DesiredStatus: ecstypes.DesiredStatusRunning})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					return err
				}
				for _, arn := range page.TaskArns {
					c.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cl), Task: aws.String(arn), Reason: aws.String("the test's fleet is removed")})
				}
				running = append(running, page.TaskArns...)
			}
			p = ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{Cluster: aws.String(cl), DesiredStatus: ecstypes.DesiredStatusStopped})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					return err
				}
				for chunk := range slices.Chunk(page.TaskArns, 100) {
					out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cl), Tasks: chunk})
					if err != nil {
						return err
					}
					for _, tk := range out.Tasks {
						if aws.ToString(tk.LastStatus) != "STOPPED" {
							running = append(running, aws.ToString(tk.TaskArn)+" ("+aws.ToString(tk.LastStatus)+")")
						}
					}
				}
			}
		}
		if len(running) > 0 {
			return fmt.Errorf("not stopped yet: %v", running)
		}
		return nil
	})
	if err != nil {
		t.Errorf("fleet: stopping the tasks before the agents: %v", err)
	}
}

// Containers lists the runc containers of the agent's sandboxes (IDs
// <task ID>-<container name>), from runc's own state.
func (a *Agent) Containers() ([]string, error) {
	out, err := exec.Command("runc", "--root", filepath.Join(a.DataDir, "sandboxes", "runc", "runc-root"), "list", "-q").Output()
	if err != nil {
		return nil, fmt.Errorf("runc list: %w", err)
	}
	return strings.Fields(string(out)), nil
}
