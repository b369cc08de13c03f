package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// TestRemoteAgent runs the control plane alone and a host agent as a second
// process that joins it over the SigV4-signed agent protocol.
func TestRemoteAgent(t *testing.T) {
	s := startServer(t, "--no-agent")
	c := s.ecsClient()
	registerDef(t, c, "remote", "256", "512", 0, "sleep", "1000")
	arn := runOne(t, c, "remote")
	waitFor(t, c, arn, "PENDING", 10*time.Second) // no host yet

	id, secret := s.keys()
	var log bytes.Buffer
	agent := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", t.TempDir(),
		"--host-id", "far-away-host", "--runtime", "sim", "--runtimes", "sim")
	agent.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret)
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})

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
	if _, err := c.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	stopped := waitFor(t, c, arn, "STOPPED", 20*time.Second)
	if code := stopped.Containers[0].ExitCode; code == nil || *code != 143 || stopped.StopCode != ecstypes.TaskStopCodeUserInitiated {
		t.Fatalf("stopped remotely: exit %v stopCode %s", code, stopped.StopCode)
	}

	// A wrong key is refused: the agent cannot join.
	bad := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", t.TempDir(), "--runtime", "sim", "--runtimes", "sim")
	bad.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY=not-the-secret-not-the-secret-not-the-se")
	var badLog bytes.Buffer
	bad.Stdout, bad.Stderr = &badLog, &badLog
	if err := bad.Start(); err != nil {
		t.Fatal(err)
	}
	refused := func() bool {
		return bytes.Contains(badLog.Bytes(), []byte("InvalidSignatureException")) || bytes.Contains(badLog.Bytes(), []byte("signature"))
	}
	for deadline := time.Now().Add(15 * time.Second); !refused() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	bad.Process.Signal(syscall.SIGTERM)
	bad.Wait()
	if !refused() {
		t.Fatalf("an agent with a wrong secret must be refused; its log:\n%s", badLog.String())
	}
}
