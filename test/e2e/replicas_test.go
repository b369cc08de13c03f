package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

// TestAgentMovesBetweenReplicas: two `vessel server --no-agent` processes
// on one three-member etcd; a host agent process joins with both URLs. A
// task run through the first is described by the second at once and runs
// on the host. The first is killed with SIGKILL: the agent moves to the
// second, and the task, stopped through the second, stops on the host and
// is reported STOPPED there.
func TestAgentMovesBetweenReplicas(t *testing.T) {
	c := etcdtest.Start(t, 3)
	etcdFlag := strings.Join(c.Endpoints(), ",")
	s1 := startServer(t, "--no-agent", "--runtimes", "sim", "--etcd", etcdFlag)
	s2 := &server{t: t, dataDir: t.TempDir(), addr: freeAddr(t),
		extra: []string{"--no-agent", "--runtimes", "sim", "--etcd", etcdFlag, "--encryption-key-file", filepath.Join(s1.dataDir, "master.key")}}
	s2.endpoint = "http://" + s2.addr
	s2.start()
	t.Cleanup(func() { s2.kill(syscall.SIGTERM) })

	// Both replicas verify the one admin key (kept in etcd, sealed under
	// the master key both were given).
	id, secret := s1.keys()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	c1 := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s1.endpoint) })
	c2 := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s2.endpoint) })

	var log syncBuffer
	agent := exec.Command(vesselBin, "agent", "--server", s1.endpoint+","+s2.endpoint, "--data-dir", t.TempDir(),
		"--host-id", "replicated-host", "--runtime", "sim", "--runtimes", "sim", "--token", s1.joinToken())
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})

	registerDef(t, c1, "replicated", "256", "512", 0, "sleep", "3600")
	arn := runOne(t, c1, "replicated")
	if got := describeOne(t, c2, arn); aws.ToString(got.TaskArn) != arn {
		t.Fatalf("the second replica describes %s, want %s", aws.ToString(got.TaskArn), arn)
	}
	running := waitFor(t, c1, arn, "RUNNING", 30*time.Second)

	s1.kill(syscall.SIGKILL)

	if _, err := c2.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("stopped through the second replica")}); err != nil {
		t.Fatalf("StopTask on the second replica: %v", err)
	}
	stopped := waitFor(t, c2, arn, "STOPPED", 60*time.Second)
	if !aws.ToTime(stopped.StartedAt).Equal(aws.ToTime(running.StartedAt)) {
		t.Errorf("the task started at %v, then at %v: it was started again", running.StartedAt, stopped.StartedAt)
	}
	if !strings.Contains(log.String(), "moving to the next") {
		t.Errorf("the agent does not say it moved to the second replica:\n%s", log.String())
	}
	if strings.Contains(log.String(), "deleting sandbox") {
		t.Errorf("the agent tore a sandbox down while moving:\n%s", log.String())
	}
	t.Logf("agent log:\n%s", log.String())
}
