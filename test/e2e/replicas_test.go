package e2e

import (
	"context"
	"fmt"
	"os"
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
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
)

// TestAgentMovesBetweenReplicas: two `vessel server --no-agent` processes
// on one three-member etcd; a host agent process joins with both URLs. A
// task run through the first is described by the second at once and runs
// on the host. The first is killed with SIGKILL: the agent moves to the
// second; the task keeps running (on runc, the container's process is the
// one that started, reached through the second replica's exec relay), and,
// stopped through the second, stops on the host and is reported STOPPED
// there.
func TestAgentMovesBetweenReplicas(t *testing.T) {
	for _, rt := range []string{"sim", "runc"} {
		t.Run(rt, func(t *testing.T) { agentMovesBetweenReplicas(t, rt) })
	}
}

func agentMovesBetweenReplicas(t *testing.T, rt string) {
	agentArgs := []string{"--runtime", rt, "--runtimes", rt}
	agentDir := t.TempDir()
	if rt == "runc" {
		requireRoot(t)
		cidr := freeSubnet(t)
		t.Cleanup(func() { removeBridges(cidr) })
		t.Cleanup(func() {
			if err := network.RemoveFirewall(filepath.Join(agentDir, "network")); err != nil {
				t.Errorf("remove the agent's firewall tables: %v", err)
			}
		})
		agentArgs = append(agentArgs, "--subnet", "subnet-default="+cidr, "--listen", "127.0.0.1:0")
	}
	c := etcdtest.Start(t, 3)
	etcdFlag := strings.Join(c.Endpoints(), ",")
	// Heartbeats are kept in each replica's memory and every replica runs
	// the controllers: the one the agent does not talk to must not count
	// the host lost while the test runs.
	s1 := startServer(t, "--no-agent", "--etcd", etcdFlag, "--host-timeout", "10m")
	s2 := &server{t: t, dataDir: t.TempDir(), addr: freeAddr(t),
		extra: []string{"--no-agent", "--runtimes", "sim,runc", "--etcd", etcdFlag, "--host-timeout", "10m",
			"--encryption-key-file", filepath.Join(s1.dataDir, "master.key")}}
	s2.endpoint = "http://" + s2.addr
	s2.start()
	t.Cleanup(func() {
		s2.kill(syscall.SIGTERM)
		if os.Geteuid() == 0 {
			if err := network.RemoveFirewall(filepath.Join(s2.dataDir, "network")); err != nil {
				t.Errorf("remove the second replica's firewall tables: %v", err)
			}
		}
	})

	// Both replicas verify the one admin key (kept in etcd, sealed under
	// the master key both were given).
	id, secret := s1.keys()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	c1 := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s1.endpoint) })
	c2 := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s2.endpoint) })

	var log syncBuffer
	agent := exec.Command(vesselBin, append([]string{"agent", "--server", s1.endpoint + "," + s2.endpoint, "--data-dir", agentDir,
		"--host-id", "replicated-host", "--token", s1.joinToken()}, agentArgs...)...)
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})

	var arn string
	if rt == "runc" {
		img := newRegistry(t).push("busybox:1", nil, busyboxLayer(t))
		arn = runImage(t, c1, "replicated", img, "512", "sh", "-c", "cat /proc/self/stat > /started; trap 'exit 0' TERM; while true; do sleep 0.1; done")
	} else {
		registerDef(t, c1, "replicated", "256", "512", 0, "sleep", "3600")
		arn = runOne(t, c1, "replicated")
	}
	t.Cleanup(func() {
		// Whatever failed, the task stops before the agent does.
		c2.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("test cleanup")})
		testutil.Wait(60*time.Second, func() error { return stoppedOrGone(c2, arn) })
	})
	if got := describeOne(t, c2, arn); aws.ToString(got.TaskArn) != arn {
		t.Fatalf("the second replica describes %s, want %s", aws.ToString(got.TaskArn), arn)
	}
	running := waitFor(t, c1, arn, "RUNNING", 60*time.Second)
	started := ""
	if rt == "runc" {
		out, errOut, code := s1.vessel("exec", arn, "--", "cat", "/started")
		if code != 0 || out == "" {
			t.Fatalf("vessel exec through the first replica: code %d, %q %q", code, out, errOut)
		}
		started = out
	}

	s1.kill(syscall.SIGKILL)

	if rt == "runc" {
		// The same process, reached through the second replica's relay
		// (the agent's endpoint is called by any replica).
		var out, errOut string
		var code int
		testutil.Eventually(t, 30*time.Second, func() error {
			out, errOut, code = s2.vesselWith(s1.dataDir, "", "", "", "exec", arn, "--", "cat", "/started")
			if code != 0 {
				return fmt.Errorf("vessel exec through the second replica: exit %d: %s", code, errOut)
			}
			return nil
		})
		if out != started {
			t.Errorf("the container's first process after the move: %q, before: %q: it was started again", out, started)
		}
	}
	if _, err := c2.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("stopped through the second replica")}); err != nil {
		t.Fatalf("StopTask on the second replica: %v", err)
	}
	stopped := waitFor(t, c2, arn, "STOPPED", 60*time.Second)
	if !aws.ToTime(stopped.StartedAt).Equal(aws.ToTime(running.StartedAt)) {
		t.Errorf("the task started at %v, then at %v: it was started again", running.StartedAt, stopped.StartedAt)
	}
	if rt == "runc" {
		if code := stopped.Containers[0].ExitCode; code == nil || *code != 0 {
			t.Errorf("the container's exit code: %v, want 0 (its process ended by the stop's SIGTERM)", code)
		}
	}
	if !strings.Contains(log.String(), "moving to the next") {
		t.Errorf("the agent does not say it moved to the second replica:\n%s", log.String())
	}
	if strings.Contains(log.String(), "deleting sandbox") {
		t.Errorf("the agent tore a sandbox down while moving:\n%s", log.String())
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", log.String())
	}
}

// stoppedOrGone says whether the task is STOPPED, or the replica gone.
func stoppedOrGone(c *ecs.Client, arn string) error {
	out, err := c.DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Tasks: []string{arn}})
	if err != nil {
		return nil // the replica is gone: nothing to wait for
	}
	if len(out.Tasks) == 1 && aws.ToString(out.Tasks[0].LastStatus) != "STOPPED" {
		return fmt.Errorf("task %s is %s", arn, aws.ToString(out.Tasks[0].LastStatus))
	}
	return nil
}
