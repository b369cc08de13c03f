package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/testenv"
	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

var vesselBin, repoRoot string

func TestMain(m *testing.M) {
	flag.Parse()
	testenv.ShortMain("the built vessel binary, real clients and, most, root and real runtimes")
	dir, err := os.MkdirTemp("", "vessel-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vesselBin = filepath.Join(dir, "vessel")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("go", "build", "-o", vesselBin, "./cmd/vessel")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vessel:", err)
		os.Exit(1)
	}
	// The micro-VM guest agent, static, next to vessel where it looks.
	guest := exec.Command("go", "build", "-o", filepath.Join(dir, "vessel-guest"), "./cmd/vessel-guest")
	guest.Dir = root
	guest.Env = append(os.Environ(), "CGO_ENABLED=0")
	guest.Stdout, guest.Stderr = os.Stderr, os.Stderr
	if err := guest.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vessel-guest:", err)
		os.Exit(1)
	}
	repoRoot = root
	if os.Getenv("VESSEL_CACHE") == "" {
		os.Setenv("VESSEL_CACHE", filepath.Join(root, ".cache"))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `vessel server`.
type server struct {
	t        testing.TB
	dataDir  string
	endpoint string
	addr     string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	extra    []string
	// subnet is the task subnet of a server on a real runtime.
	subnet string
	// defaultPools keeps the host's default warm pools; otherwise a
	// server not given --warm-pool runs none (noWarmPools), so that a
	// test sees only its own sandboxes and addresses.
	defaultPools bool
}

// noWarmPools turns off every runtime's warm pool, which a host keeps by
// default.
var noWarmPools = []string{"--warm-pool", "microvm=0,gvisor=0,runc=0"}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts vessel server on a fresh data directory.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	if !slices.Contains(extra, "--runtimes") {
		// Probing micro-VMs and gVisor costs seconds: offer only what the
		// test uses unless it says otherwise.
		extra = append(extra, "--runtimes", "sim,runc")
	}
	s := &server{t: t, dataDir: t.TempDir(), addr: freeAddr(t), extra: extra}
	s.endpoint = "http://" + s.addr
	s.start()
	t.Cleanup(func() {
		s.kill(syscall.SIGTERM)
		s.removeFirewall()
	})
	return s
}

// removeFirewall removes the task firewall tables of the server's host,
// which outlive it as its sandboxes do: they go with the bridges the tests
// remove by hand.
func (s *server) removeFirewall() {
	if os.Geteuid() != 0 {
		return
	}
	if err := network.RemoveFirewall(filepath.Join(s.dataDir, "network")); err != nil {
		s.t.Errorf("remove the server's firewall tables: %v", err)
	}
}

func (s *server) start() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
	s.waitHealthy()
}

// launch starts the process and returns; it may be called from any
// goroutine.
func (s *server) launch() error {
	args := append([]string{"server", "--data-dir", s.dataDir, "--listen", s.addr}, s.extra...)
	if !s.defaultPools && !slices.Contains(s.extra, "--warm-pool") {
		args = append(args, noWarmPools...)
	}
	s.cmd = exec.Command(vesselBin, args...)
	s.log = &bytes.Buffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	return s.cmd.Start()
}

// waitHealthy waits until the launched server answers /healthz.
func (s *server) waitHealthy() {
	s.t.Helper()
	testutil.Eventually(s.t, 30*time.Second, func() error {
		resp, err := http.Get(s.endpoint + "/healthz")
		if err != nil {
			return fmt.Errorf("vessel server did not become healthy: %v\n%s", err, s.log)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("vessel server did not become healthy: /healthz answers %s\n%s", resp.Status, s.log)
		}
		return nil
	})
}

// Name names the server in messages: its endpoint.
func (s *server) Name() string { return s.endpoint }

// Role asks the server's /healthz whether it leads (fleet.Leader asks it).
func (s *server) Role() (string, error) { return fleet.Role(http.DefaultClient, s.endpoint) }

// kill stops the server with sig and waits for it.
func (s *server) kill(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// keys returns the admin key the server created, as `vessel credentials`
// prints it (the server never prints the secret).
func (s *server) keys() (string, string) {
	s.t.Helper()
	out, stderr, code := s.vessel("credentials")
	if code != 0 {
		s.t.Fatalf("vessel credentials: exit %d: %s", code, stderr)
	}
	id, secret := fleet.ExportValue(out, "AWS_ACCESS_KEY_ID"), fleet.ExportValue(out, "AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		s.t.Fatalf("vessel credentials printed no key:\n%s", out)
	}
	return id, secret
}

// awsEnv is a clean environment for the aws CLI signed with the server's key.
func (s *server) awsEnv(secretOverride string) []string {
	id, secret := s.keys()
	if secretOverride != "" {
		secret = secretOverride
	}
	home := s.t.TempDir()
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_PAGER=", "AWS_MAX_ATTEMPTS=1"}
}

// aws runs the aws CLI against the server and decodes its JSON output.
func (s *server) aws(out any, args ...string) {
	s.t.Helper()
	stdout, stderr, err := s.awsRaw("", args...)
	if err != nil {
		s.t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if out != nil {
		if err := json.Unmarshal(stdout, out); err != nil {
			s.t.Fatalf("aws %s: decoding %q: %v", strings.Join(args, " "), stdout, err)
		}
	}
}

func (s *server) awsRaw(secret string, args ...string) ([]byte, string, error) {
	s.t.Helper()
	awsPath, err := exec.LookPath("aws")
	if err != nil {
		s.t.Fatalf("the aws CLI is required (Debian package awscli; the README's test command installs it): %v", err)
	}
	cmd := exec.Command(awsPath, append(args, "--endpoint-url", s.endpoint, "--output", "json")...)
	cmd.Env = s.awsEnv(secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.Bytes(), stderr.String(), err
}

// vessel runs a vessel user command against the server.
func (s *server) vessel(args ...string) (string, string, int) {
	s.t.Helper()
	return s.vesselWith(s.dataDir, "", "", "", args...)
}

// vesselWith runs a vessel user command with this data directory, input on
// its stdin, and signed with the key id/secret (empty: the data
// directory's admin key). Global flags go right after the verb, before any
// "--" that starts a container's command.
func (s *server) vesselWith(dataDir, input, id, secret string, args ...string) (string, string, int) {
	s.t.Helper()
	full := append([]string{args[0], "--endpoint", s.endpoint, "--data-dir", dataDir}, args[1:]...)
	cmd := exec.Command(vesselBin, full...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret)
	cmd.Stdin = strings.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("vessel %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// ecsTask is the part of an ECS task the tests read.
type ecsTask struct {
	TaskArn       string `json:"taskArn"`
	LastStatus    string `json:"lastStatus"`
	DesiredStatus string `json:"desiredStatus"`
	StopCode      string `json:"stopCode"`
	StoppedReason string `json:"stoppedReason"`
	Containers    []struct {
		Name     string `json:"name"`
		ExitCode *int   `json:"exitCode"`
	} `json:"containers"`
}

func (s *server) describeTasks(arns ...string) []ecsTask {
	s.t.Helper()
	var out struct {
		Tasks []ecsTask `json:"tasks"`
	}
	s.aws(&out, append([]string{"ecs", "describe-tasks", "--tasks"}, arns...)...)
	return out.Tasks
}

// waitStatus polls with the aws CLI until the task reaches status.
func (s *server) waitStatus(arn, status string, timeout time.Duration) ecsTask {
	s.t.Helper()
	var ts []ecsTask
	testutil.Eventually(s.t, timeout, func() error {
		if ts = s.describeTasks(arn); len(ts) != 1 || ts[0].LastStatus != status {
			return fmt.Errorf("task %s: %+v, want %s\nserver log:\n%s", arn, ts, status, s.log)
		}
		return nil
	})
	return ts[0]
}

// joinToken creates a join token with `vessel host token create` and
// returns it (the server speaks plain HTTP on loopback: no CA hash).
func (s *server) joinToken() string {
	s.t.Helper()
	out, errOut, code := s.vessel("host", "token", "create", "--ttl", "1h")
	f := strings.Fields(out)
	i := slices.Index(f, "--token")
	if code != 0 || i < 0 || i+1 >= len(f) {
		s.t.Fatalf("vessel host token create: exit %d: %s %s", code, out, errOut)
	}
	return f[i+1]
}

// agentEnv is the environment of a host agent: no access key, so that it
// signs with the credential it receives when it joins.
func agentEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(e, "AWS_SECRET_ACCESS_KEY=") {
			env = append(env, e)
		}
	}
	return env
}
