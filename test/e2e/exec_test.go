package e2e

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"vessel.dev/vessel/internal/network"
)

// execService runs until SIGTERM.
var execService = []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}

// TestExecRunc runs `vessel exec` in a runc task of the server's
// in-process agent.
func TestExecRunc(t *testing.T) {
	s := startRuncServer(t)
	img := newRegistry(t).push("busybox:1", nil, busyboxLayer(t))
	c := s.ecsClient()
	arn := runImage(t, c, "exec-local", img, "512", execService...)
	waitFor(t, c, arn, "RUNNING", 60*time.Second)
	checkExec(t, s, arn)
}

// TestExecRemoteAgent runs `vessel exec` in a runc task of a `vessel
// agent` in a process of its own: the server relays the exec to the
// agent's endpoint.
func TestExecRemoteAgent(t *testing.T) {
	requireRoot(t)
	cidr := freeSubnet(t)
	t.Cleanup(func() { removeBridges(cidr) })
	s := startServer(t, "--no-agent", "--subnet", "subnet-default="+cidr)
	var log bytes.Buffer
	agentDir := t.TempDir()
	t.Cleanup(func() {
		if err := network.RemoveFirewall(filepath.Join(agentDir, "network")); err != nil {
			t.Errorf("remove the agent's firewall tables: %v", err)
		}
	})
	agent := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", agentDir,
		"--host-id", "exec-host", "--runtime", "runc", "--runtimes", "runc",
		"--subnet", "subnet-default="+cidr, "--listen", "127.0.0.1:0", "--token", s.joinToken())
	agent.Args = append(agent.Args, noWarmPools...)
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})
	t.Cleanup(func() { stopAll(t, s) })

	img := newRegistry(t).push("busybox:1", nil, busyboxLayer(t))
	c := s.ecsClient()
	arn := runImage(t, c, "exec-remote", img, "512", execService...)
	running := waitFor(t, c, arn, "RUNNING", 60*time.Second)
	for _, a := range running.Attributes {
		if aws.ToString(a.Name) == "vessel:host" && aws.ToString(a.Value) != "exec-host" {
			t.Fatalf("the task runs on host %s, want exec-host", aws.ToString(a.Value))
		}
	}
	checkExec(t, s, arn)
	if t.Failed() {
		t.Logf("agent log:\n%s", log.String())
	}
}

// checkExec runs the exec cases against a running task whose container
// is "app".
func checkExec(t *testing.T, s *server, arn string) {
	t.Helper()
	if out, errOut, code := s.vessel("exec", arn, "--", "echo", "hi"); code != 0 || out != "hi\n" {
		t.Errorf("vessel exec echo hi: code %d, stdout %q, stderr %q; want 0 and \"hi\\n\"\nserver log:\n%s", code, out, errOut, s.log)
	}
	out, errOut, code := s.vessel("exec", "--container", "app", arn, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Errorf("vessel exec exit 3: code %d, stdout %q, stderr %q; want 3, \"out\\n\", \"err\\n\"", code, out, errOut)
	}
	out, errOut, code = s.vesselInput("first line\nsecond line\n", "exec", "-i", arn, "--", "sh", "-c", "cat; echo input ended")
	if code != 0 || out != "first line\nsecond line\ninput ended\n" {
		t.Errorf("vessel exec -i cat: code %d, stdout %q, stderr %q; want the input back and its end", code, out, errOut)
	}
	out, errOut, code = s.vessel("exec", "-t", arn, "--", "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty")
	if code != 0 || strings.ReplaceAll(out, "\r\n", "\n") != "on-a-tty\n" {
		t.Errorf("vessel exec -t: code %d, stdout %q, stderr %q; want on-a-tty", code, out, errOut)
	}
	_, errOut, code = s.vessel("exec", "--container", "nope", arn, "--", "true")
	if code != 1 || !strings.Contains(errOut, `no container "nope"`) || !strings.Contains(errOut, "containers: app") {
		t.Errorf("vessel exec in a missing container: code %d, stderr %q; want 1 and the task's containers", code, errOut)
	}
}

// vesselInput is vessel with input on its stdin.
func (s *server) vesselInput(input string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.vesselWith(s.dataDir, input, "", "", args...)
}
