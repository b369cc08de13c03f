package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// TestAgentMovesBetweenReplicas: two replicas on one three-member etcd and
// a host joined with both URLs, each on a machine of its own. A task run
// through the first is described by the second at once and runs on the
// host. The first is killed with SIGKILL: the agent moves to the second;
// the task keeps running (on runc, the container's process is the one that
// started, reached through the second replica's exec relay), and, stopped
// through the second, stops on the host and is reported STOPPED there.
func TestAgentMovesBetweenReplicas(t *testing.T) {
	for _, rt := range []string{"sim", "runc"} {
		t.Run(rt, func(t *testing.T) { agentMovesBetweenReplicas(t, rt) })
	}
}

func agentMovesBetweenReplicas(t *testing.T, rt string) {
	f := newFleet(t)
	rs := f.Servers(2, fleet.ServerConfig{Etcd: f.Etcd(3)})
	s1, s2 := rs[0], rs[1]
	c1, c2 := s1.ECS(), s2.ECS()
	agentArgs := []string{}
	var reg *testRegistry
	if rt == "runc" {
		reg = newRegistryAt(t, f.Gateway().String(), nil)
		agentArgs = append(agentArgs, "--insecure-registry", reg.host)
	}
	host := f.Agent(rs, fleet.AgentConfig{Runtime: rt, HostID: "replicated-host", Args: agentArgs})

	var arn string
	if rt == "runc" {
		img := reg.push("busybox:1", nil, busyboxLayer(t))
		arn = runImage(t, c1, "replicated", img, "512", "sh", "-c", "cat /proc/self/stat > /started; trap 'exit 0' TERM; while true; do sleep 0.1; done")
	} else {
		registerDef(t, c1, "replicated", "256", "512", 0, "sleep", "3600")
		arn = runOne(t, c1, "replicated")
	}
	if got := describeOne(t, c2, arn); aws.ToString(got.TaskArn) != arn {
		t.Fatalf("the second replica describes %s, want %s", aws.ToString(got.TaskArn), arn)
	}
	running := waitFor(t, c1, arn, "RUNNING", 60*time.Second)
	started := ""
	if rt == "runc" {
		out, _, err := s1.Vessel("exec", arn, "--", "cat", "/started")
		if err != nil || out == "" {
			t.Fatalf("vessel exec through the first replica: %v %q", err, out)
		}
		started = out
	}

	s1.Kill()

	if rt == "runc" {
		// The same process, reached through the second replica's relay
		// (the agent's endpoint is called by any replica).
		var out string
		testutil.Eventually(t, 30*time.Second, func() error {
			var err error
			out, _, err = s2.Vessel("exec", arn, "--", "cat", "/started")
			return err
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
	if !strings.Contains(host.Log(), "moving to the next") {
		t.Errorf("the agent does not say it moved to the second replica:\n%s", host.Log())
	}
	if strings.Contains(host.Log(), "deleting sandbox") {
		t.Errorf("the agent tore a sandbox down while moving:\n%s", host.Log())
	}
}
