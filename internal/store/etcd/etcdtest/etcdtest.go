package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ReadyTimeout bounds how long a member may take to start serving.
var ReadyTimeout = 60 * time.Second

// Binary returns the etcd binary to run, or "" if there is none.
func Binary() string {
	if p := os.Getenv("VESSEL_ETCD"); p != "" {
		return p
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		p := filepath.Join(dir, "etcd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Cluster is a running etcd cluster of real members.
type Cluster struct {
	t       testing.TB
	bin     string
	members []*member
	client  *tls.Config // for the members' client URLs; nil: plain HTTP
	command func(i int, name string, args ...string) *exec.Cmd
}

// TLS makes the members' client URLs speak TLS and require a client
// certificate signed by CAFile (peers still speak plain HTTP on loopback).
type TLS struct {
	// CertFile and KeyFile are the members' serving certificate, for
	// 127.0.0.1; CAFile is the CA bundle that client certificates must
	// chain to.
	CertFile, KeyFile, CAFile string
	// Client is what the harness itself connects with.
	Client *tls.Config
}

type member struct {
	name      string
	dir       string
	clientURL string
	peerURL   string
	args      []string
	log       string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts an n-member cluster and waits until every member serves.
// The test is skipped if there is no etcd binary (set KUBEBUILDER_ASSETS
// to the output of scripts/build-k8s). Every member is killed when t ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, Options{Members: n})
}

// StartTLS is Start with TLS on the client URLs when tlsFiles is not nil.
func StartTLS(t testing.TB, n int, tlsFiles *TLS) *Cluster {
	t.Helper()
	return StartWith(t, Options{Members: n, TLS: tlsFiles})
}

// Options says how to run a cluster's members.
type Options struct {
	// Members is the number of members.
	Members int
	// TLS, if set, makes the client URLs speak TLS.
	TLS *TLS
	// Hosts, if set, gives each member the address it listens on (one per
	// member, e.g. each in a network namespace of its own): the member then
	// listens on the well-known ports 2379 (clients) and 2380 (peers) of
	// it. Default: free ports on 127.0.0.1.
	Hosts []string
	// Command, if set, makes the command that runs member i's etcd (name
	// and args are the etcd binary and its flags), e.g. to enter the
	// member's network namespace first. The process it starts must be
	// etcd itself (exec, no fork), as signals go to it.
	Command func(i int, name string, args ...string) *exec.Cmd
}

// StartWith starts a cluster as opts says and waits until every member
// serves. Every member is killed when t ends.
func StartWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	n, tlsFiles := opts.Members, opts.TLS
	if opts.Hosts != nil && len(opts.Hosts) != n {
		t.Fatalf("etcdtest: %d hosts for %d members", len(opts.Hosts), n)
	}
	bin := Binary()
	if bin == "" {
		t.Skip("no etcd binary: set KUBEBUILDER_ASSETS=$(scripts/build-k8s) (or VESSEL_ETCD)")
	}
	c := &Cluster{t: t, bin: bin, command: opts.Command}
	scheme := "http"
	if tlsFiles != nil {
		scheme, c.client = "https", tlsFiles.Client
	}
	addr := func(i int) (client, peer string) {
		if opts.Hosts != nil {
			h := opts.Hosts[i]
			return net.JoinHostPort(h, "2379"), net.JoinHostPort(h, "2380")
		}
		return "", ""
	}
	var ports []int
	if opts.Hosts == nil {
		ports = freePorts(t, 2*n)
	}
	var initial []string
	root := t.TempDir()
	for i := range n {
		client, peer := addr(i)
		if opts.Hosts == nil {
			client, peer = fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		}
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
			clientURL: scheme + "://" + client,
			peerURL:   "http://" + peer,
		}
		m.log = m.dir + ".log"
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = []string{
			"--name", m.name,
			"--data-dir", m.dir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "vessel-test",
			"--log-level", "warn",
			// Test machines are shared and loaded: slower beats than etcd's
			// defaults (100 ms, 1 s) keep a loaded cluster from electing
			// new leaders when nothing failed.
			"--heartbeat-interval", "250",
			"--election-timeout", "2500",
		}
		if tlsFiles != nil {
			m.args = append(m.args, "--cert-file", tlsFiles.CertFile, "--key-file", tlsFiles.KeyFile,
				"--trusted-ca-file", tlsFiles.CAFile, "--client-cert-auth")
		}
	}
	t.Cleanup(c.stopAll)
	if os.Getenv("VESSEL_ETCD_LOGS") != "" {
		t.Cleanup(func() {
			for _, m := range c.members {
				t.Logf("%s log:\n%s", m.name, tail(m.log))
			}
		})
	}
	for i := range c.members {
		c.start(i)
	}
	for i := range c.members {
		c.WaitReady(i)
	}
	c.WaitLeader()
	return c
}

// WaitLeader waits until every running member names the same leader, which
// is running: after a member is killed, writes sent before the others agree
// may be lost with the old leader and time out.
func (c *Cluster) WaitLeader() {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for time.Now().Before(deadline) {
		if c.agreedLeader() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("the running etcd members do not agree on a running leader within %v", ReadyTimeout)
}

func (c *Cluster) agreedLeader() bool {
	running := map[uint64]bool{}
	var leaders []uint64
	for _, m := range c.members {
		m.mu.Lock()
		up := m.cmd != nil
		m.mu.Unlock()
		if !up {
			continue
		}
		st, err := c.status(m.clientURL)
		if err != nil {
			return false
		}
		running[st.Header.MemberId] = true
		leaders = append(leaders, st.Leader)
	}
	if len(leaders) == 0 {
		return false
	}
	for _, l := range leaders {
		if l != leaders[0] || l == 0 {
			return false
		}
	}
	return running[leaders[0]]
}

// LeaderIndex returns the index of the member that leads.
func (c *Cluster) LeaderIndex() int {
	c.t.Helper()
	c.WaitLeader()
	for i, m := range c.members {
		st, err := c.status(m.clientURL)
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	c.t.Fatal("no etcd member says it leads")
	return -1
}

func (c *Cluster) status(endpoint string) (*clientv3.StatusResponse, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: c.client, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cli.Status(ctx, endpoint)
}

// Endpoints returns the client URLs of every member, in order.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// Client returns a client of the cluster (every member's endpoint, as the
// harness connects), closed when the test ends: for a test that reads
// etcd itself, e.g. its History.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: c.client, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("etcdtest: client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Revision is the cluster's current revision: that of its latest write.
func Revision(ctx context.Context, cli *clientv3.Client) (int64, error) {
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// History returns every change made under prefix at revisions from to to
// (both included; to at most the current revision), oldest first, from
// etcd's own history (a watch from revision from): what was written, and
// deleted, in that span, by anyone. It fails if the span was compacted.
func History(ctx context.Context, cli *clientv3.Client, prefix string, from, to int64) ([]*clientv3.Event, error) {
	if from > to {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every revision is some write's, so a watch of the whole key space
	// from from sees one at to at the latest; the prefix is filtered here.
	var out []*clientv3.Event
	for resp := range cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("etcd history from revision %d: %w", from, err)
		}
		last := int64(0)
		for _, ev := range resp.Events {
			last = ev.Kv.ModRevision
			if last <= to && strings.HasPrefix(string(ev.Kv.Key), prefix) {
				out = append(out, ev)
			}
		}
		if last >= to {
			return out, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("etcd history from revision %d to %d: %w", from, to, err)
	}
	return nil, fmt.Errorf("etcd history from revision %d to %d: the watch ended", from, to)
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL }

// PID returns the process ID of member i, or 0 if it is not running.
func (c *Cluster) PID(i int) int {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	select {
	case <-m.done:
		return 0
	default:
		return m.cmd.Process.Pid
	}
}

// Kill sends SIGKILL to member i and waits for it to exit.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop sends SIGTERM to member i and waits for it to exit.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

// Start starts member i again on its data directory and waits until it
// serves. It blocks while the member cannot join a quorum; use StartAll to
// bring back several.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	c.start(i)
	c.WaitReady(i)
}

// StartAll starts the given members and then waits for each to serve.
func (c *Cluster) StartAll(members ...int) {
	c.t.Helper()
	for _, i := range members {
		c.start(i)
	}
	for _, i := range members {
		c.WaitReady(i)
	}
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		c.t.Fatalf("etcd member %s is already running", m.name)
	}
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	var cmd *exec.Cmd
	if c.command != nil {
		cmd = c.command(i, c.bin, m.args...)
	} else {
		cmd = exec.Command(c.bin, m.args...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("starting etcd member %s: %v", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done = cmd, done
}

// WaitReady waits until member i answers its /health with a leader.
func (c *Cluster) WaitReady(i int) {
	c.t.Helper()
	m := c.members[i]
	deadline := time.Now().Add(ReadyTimeout)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			c.t.Fatalf("etcd member %s exited while starting; its log:\n%s", m.name, tail(m.log))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.clientURL+"/health", nil)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.client}}
		resp, err := hc.Do(req)
		hc.CloseIdleConnections()
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if err == nil && resp.StatusCode == http.StatusOK {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("etcd member %s not healthy within %v; its log:\n%s", m.name, ReadyTimeout, tail(m.log))
}

func (c *Cluster) signal(i int, sig syscall.Signal) {
	c.t.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		c.t.Fatalf("etcd member %s is not running", m.name)
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd, m.done = nil, nil
}

// stopAll kills every member still running.
func (c *Cluster) stopAll() {
	for _, m := range c.members {
		m.mu.Lock()
		if m.cmd != nil {
			m.cmd.Process.Kill()
			<-m.done
			m.cmd, m.done = nil, nil
		}
		m.mu.Unlock()
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
