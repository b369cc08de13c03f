package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testutil"
)

// tlsNetns is a network namespace of the test's own holding a
// non-loopback address, so that a server can listen
// on "anything but loopback" without any traffic leaving the namespace.
type tlsNetns struct {
	t    *testing.T
	name string
	addr string
}

func newTLSNetns(t *testing.T) *tlsNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	n := &tlsNetns{t: t, name: fmt.Sprintf("vessel-tls-%d", os.Getpid()), addr: "198.18.0.1"}
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"-n", n.name, "link", "set", "lo", "up"},
		// A non-loopback address (198.18.0.0/15 is for tests) on the
		// namespace's own lo: nothing reaches it from outside.
		{"-n", n.name, "addr", "add", n.addr + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "netns", "del", n.name).Run()
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("removing netns %s: %v: %s", n.name, err, out)
		}
	})
	return n
}

// command runs name inside the namespace.
func (n *tlsNetns) command(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.Env = env
	return cmd
}

// start starts a long-running process in the namespace and waits until
// its output matches ready; it is stopped with SIGTERM at cleanup.
func (n *tlsNetns) start(env []string, ready *regexp.Regexp, name string, args ...string) *syncBuffer {
	n.t.Helper()
	cmd := n.command(env, name, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	testutil.Eventually(n.t, 30*time.Second, func() error {
		if o := out.String(); !ready.MatchString(o) {
			return fmt.Errorf("%s %v did not get ready:\n%s", name, args, o)
		}
		return nil
	})
	return out
}

// TestTLSByDefaultAndJoin: a server listening on a non-loopback address
// speaks TLS with a CA of its own; `vessel credentials` prints
// AWS_CA_BUNDLE and the real aws CLI uses it; plain HTTP on that port is
// refused; a host joins with a join token and the CA hash over TLS (a wrong
// hash is refused) and runs a task; `vessel host ls` shows it ready.
func TestTLSByDefaultAndJoin(t *testing.T) {
	n := newTLSNetns(t)
	dataDir := t.TempDir()
	endpoint := "https://" + n.addr + ":8600"
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1",
		"VESSEL_CACHE=" + os.Getenv("VESSEL_CACHE")}
	srvLog := n.start(base, regexp.MustCompile("Vessel is listening"), vesselBin, "server", "--data-dir", dataDir,
		"--listen", n.addr+":8600", "--no-agent", "--runtimes", "sim")
	if !strings.Contains(srvLog.String(), "Vessel is listening on "+endpoint) || !strings.Contains(srvLog.String(), "CA fingerprint (SHA-256): ") {
		t.Fatalf("the server does not say it speaks TLS with its CA's fingerprint:\n%s", srvLog.String())
	}
	for _, f := range []string{"tls/ca.key", "tls/tls.key"} {
		if st, err := os.Stat(filepath.Join(dataDir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v; keys must be 0600", f, err)
		}
	}

	out, err := exec.Command(vesselBin, "credentials", "--data-dir", dataDir, "--endpoint", endpoint).Output()
	if err != nil {
		t.Fatalf("vessel credentials: %v", err)
	}
	env := append([]string{}, base...)
	bundle := ""
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, v)
			if b, ok := strings.CutPrefix(v, "AWS_CA_BUNDLE="); ok {
				bundle = b
			}
		}
	}
	if bundle != filepath.Join(dataDir, "tls", "ca.crt") {
		t.Fatalf("vessel credentials prints no AWS_CA_BUNDLE of the server's CA:\n%s", out)
	}

	awsCLI := func(env []string, url string) (string, error) {
		cmd := n.command(env, "aws", "ecs", "list-clusters", "--endpoint-url", url, "--output", "json")
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		return b.String(), err
	}
	if got, err := awsCLI(env, endpoint); err != nil || !strings.Contains(got, "cluster/default") {
		t.Fatalf("aws ecs list-clusters over TLS with AWS_CA_BUNDLE: %v\n%s", err, got)
	}
	var noBundle []string
	for _, e := range env {
		if !strings.HasPrefix(e, "AWS_CA_BUNDLE=") {
			noBundle = append(noBundle, e)
		}
	}
	if got, err := awsCLI(noBundle, endpoint); err == nil || !strings.Contains(strings.ToLower(got), "certificate") {
		t.Errorf("aws without AWS_CA_BUNDLE must refuse the server's certificate: %v\n%s", err, got)
	}
	// Plain HTTP is refused on the TLS port.
	got, err := awsCLI(env, "http://"+n.addr+":8600")
	if err == nil || strings.Contains(got, "cluster/default") {
		t.Errorf("plain HTTP on the TLS port was served: %v\n%s", err, got)
	}
	curl := n.command(base, "curl", "-s", "-o", "-", "-w", " %{http_code}", "http://"+n.addr+":8600/healthz")
	if b, _ := curl.CombinedOutput(); !strings.Contains(string(b), "HTTP request to an HTTPS server") || !strings.HasSuffix(string(b), " 400") {
		t.Errorf("plain HTTP on the TLS port: %q, want Go's 400 \"Client sent an HTTP request to an HTTPS server\"", b)
	}

	// A join token, printed as kubeadm does.
	cmdEnv := append(append([]string{}, env...), "VESSEL_DATA_DIR="+dataDir)
	tokOut, err := n.command(cmdEnv, vesselBin, "host", "token", "create", "--ttl", "1h", "--endpoint", endpoint).Output()
	if err != nil {
		t.Fatalf("vessel host token create: %v", err)
	}
	m := regexp.MustCompile(`^vessel agent --server (\S+) --token (\S+) --ca-cert-hash (sha256:[0-9a-f]{64})\n$`).FindStringSubmatch(string(tokOut))
	if m == nil || m[1] != endpoint {
		t.Fatalf("vessel host token create printed %q", tokOut)
	}
	token, hash := m[2], m[3]

	// A wrong CA hash: the agent refuses the control plane.
	agentDir := t.TempDir()
	wrong := "sha256:" + strings.Repeat("0", 64)
	bad, err := n.command(base, vesselBin, "agent", "--server", endpoint, "--token", token, "--ca-cert-hash", wrong,
		"--data-dir", agentDir, "--runtimes", "sim").CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "not the control plane the token was made for") {
		t.Fatalf("joining with a wrong CA hash: %v\n%s", err, bad)
	}
	if _, err := os.Stat(filepath.Join(agentDir, "agent-credentials.json")); err == nil {
		t.Fatal("a refused join left a credential behind")
	}

	// The right hash: the host joins over TLS and runs a task.
	agentArgs := []string{"agent", "--server", endpoint, "--data-dir", agentDir, "--runtime", "sim", "--runtimes", "sim", "--host-id", "tls-host"}
	agentLog := n.start(base, regexp.MustCompile("Serving task logs"), vesselBin, append(agentArgs, "--token", token, "--ca-cert-hash", hash)...)
	if !strings.Contains(agentLog.String(), "Joined the control plane as host tls-host") {
		t.Fatalf("the agent did not join:\n%s", agentLog.String())
	}
	st, err := os.Stat(filepath.Join(agentDir, "agent-credentials.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the host's credential: %v (must be kept 0600)", err)
	}
	// vessel run --detach returns once the task is RUNNING on the host.
	run := n.command(cmdEnv, vesselBin, "run", "--endpoint", endpoint, "--detach", "busybox", "--", "sleep", "1000")
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("vessel run: %v\n%s\nagent:\n%s", err, b, agentLog.String())
	}
	hosts, err := n.command(cmdEnv, vesselBin, "host", "ls", "--endpoint", endpoint).CombinedOutput()
	if err != nil || !regexp.MustCompile(`tls-host\s+\S+\s+ready\s`).Match(hosts) {
		t.Errorf("vessel host ls: %v\n%s", err, hosts)
	}
	// Key management goes over the same TLS, trusting the same CA.
	keys, err := n.command(cmdEnv, vesselBin, "credentials", "list", "--endpoint", endpoint).CombinedOutput()
	if err != nil || !strings.Contains(string(keys), "admin") {
		t.Errorf("vessel credentials list over TLS: %v\n%s", err, keys)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and the test
// reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
