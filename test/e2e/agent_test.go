package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/testutil"
)

// TestRemoteAgent runs the control plane alone and a host agent as a second
// process that joins it with a join token over the SigV4-signed agent
// protocol, restarts without the token (its credential is kept), and is
// cut off by `vessel host revoke`; a wrong token is refused.
func TestRemoteAgent(t *testing.T) {
	s := startServer(t, "--no-agent")
	c := s.ecsClient()
	registerDef(t, c, "remote", "256", "512", 0, "sleep", "1000")
	arn := runOne(t, c, "remote")
	waitFor(t, c, arn, "PENDING", 10*time.Second) // no host yet

	agentDir := t.TempDir()
	var log syncBuffer
	startAgent := func(extra ...string) *exec.Cmd {
		agent := exec.Command(vesselBin, append([]string{"agent", "--server", s.endpoint, "--data-dir", agentDir,
			"--host-id", "far-away-host", "--runtime", "sim", "--runtimes", "sim"}, extra...)...)
		agent.Env = agentEnv()
		agent.Stdout, agent.Stderr = &log, &log
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			agent.Process.Signal(syscall.SIGTERM)
			agent.Wait()
		})
		return agent
	}
	agent := startAgent("--token", s.joinToken())

	running := waitFor(t, c, arn, "RUNNING", 20*time.Second)
	host := ""
	for _, a := range running.Attributes {
		if aws.ToString(a.Name) == "vessel:host" {
			host = aws.ToString(a.Value)
		}
	}
	if host != "far-away-host" {
		t.Fatalf("the task runs on host %q, want far-away-host; agent log:\n%s", host, log.String())
	}
	if !strings.Contains(log.String(), "Joined the control plane as host far-away-host") {
		t.Fatalf("the agent did not join with its token:\n%s", log.String())
	}

	// The agent's endpoint speaks TLS and accepts the control plane only
	// (its calls are signed with this host's own credential): the admin
	// key is refused, and so is plain HTTP.
	m := regexp.MustCompile(`control plane on https://(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("the agent does not say where it serves:\n%s", log.String())
	}
	id, secret := s.keys()
	req, _ := http.NewRequest(http.MethodGet, "https://"+m[1]+"/agent/v1/logs/"+strings.TrimPrefix(arn[strings.LastIndex(arn, "/"):], "/"), nil)
	if err := auth.SignRequest(context.Background(), req, auth.Key{AccessKeyID: id, SecretAccessKey: secret}, "us-east-1", "vessel", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := insecure.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "UnrecognizedClient") {
		t.Errorf("the admin key at the agent's endpoint: HTTP %d %s, want 400 UnrecognizedClient", resp.StatusCode, body)
	}
	if resp, err := http.Get("http://" + m[1] + "/agent/v1/logs/x"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
			t.Errorf("plain HTTP at the agent's endpoint: HTTP %d %s", resp.StatusCode, b)
		}
	}
	// The control plane reaches it (pinned TLS, the host's credential):
	// the answer to vessel logs comes from the agent, which holds no logs
	// of a simulated task.
	if out, errOut, _ := s.vessel("logs", arn); !strings.Contains(errOut, "on host far-away-host (it ran on a simulated runtime") {
		t.Errorf("vessel logs did not reach the agent's endpoint: %s %s", out, errOut)
	}

	// Restarted without the token, it signs with the credential it kept
	// and adopts its task.
	agent.Process.Signal(syscall.SIGTERM)
	agent.Wait()
	startAgent()
	if _, err := c.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	stopped := waitFor(t, c, arn, "STOPPED", 20*time.Second)
	if code := stopped.Containers[0].ExitCode; code == nil || *code != 143 || stopped.StopCode != ecstypes.TaskStopCodeUserInitiated {
		t.Fatalf("stopped remotely after the agent's restart: exit %v stopCode %s; agent log:\n%s", code, stopped.StopCode, log.String())
	}

	// Revoked: its next call is refused, its tasks stop as a lost host's.
	arn2 := runOne(t, c, "remote")
	waitFor(t, c, arn2, "RUNNING", 20*time.Second)
	if out, errOut, code := s.vessel("host", "revoke", "far-away-host"); code != 0 {
		t.Fatalf("vessel host revoke: %s %s", out, errOut)
	}
	if st := waitFor(t, c, arn2, "STOPPED", 20*time.Second); st.StopCode != ecstypes.TaskStopCodeTerminationNotice {
		t.Errorf("the revoked host's task stopped with %s, want TerminationNotice", st.StopCode)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		if l := log.String(); !strings.Contains(l, "UnrecognizedClient") {
			return fmt.Errorf("the revoked host's calls were not refused as UnrecognizedClient:\n%s", l)
		}
		return nil
	})
	if out, _, _ := s.vessel("host", "ls"); !strings.Contains(out, "revoked") {
		t.Errorf("vessel host ls does not show the revocation:\n%s", out)
	}

	// A wrong token is refused: the agent cannot join.
	tok := s.joinToken()
	bad := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", t.TempDir(), "--runtime", "sim", "--runtimes", "sim",
		"--token", tok[:7]+strings.Repeat("0", 16))
	bad.Env = agentEnv()
	out, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "secret is wrong") {
		t.Fatalf("an agent with a wrong token must be refused: %v\n%s", err, out)
	}
}
