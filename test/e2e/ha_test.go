package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// newFleet is a fleet of machines running the vessel binary of this test
// run (package fleet).
func newFleet(t *testing.T) *fleet.Fleet {
	t.Helper()
	requireRoot(t)
	return fleet.New(t, fleet.Config{Vessel: vesselBin})
}

// taskID is the last part of a task ARN.
func taskID(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// TestReplicasShareOneControlPlane: three replicas on a three-member etcd
// and one runc host, each on a machine of its own. A task run through the
// first replica is described by the second and the third at once; the aws
// CLI works against each replica; the task's output is read, and the task
// stopped, through replicas other than the one that started it.
func TestReplicasShareOneControlPlane(t *testing.T) {
	f := newFleet(t)
	rs := f.Servers(3, fleet.ServerConfig{Etcd: f.Etcd(3)})
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	f.Agent(rs, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}})

	arn := runImage(t, rs[0].ECS(), "fleet", img, "512", "sh", "-c", "echo hello from the fleet; trap 'exit 0' TERM; while true; do sleep 0.1; done")
	for _, s := range rs[1:] {
		out, err := s.ECS().DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Tasks: []string{arn}})
		if err != nil || len(out.Tasks) != 1 || len(out.Failures) != 0 {
			t.Fatalf("%s describes the task right after RunTask on the first: %v %+v", s.Name(), err, out)
		}
	}
	waitFor(t, rs[2].ECS(), arn, "RUNNING", 90*time.Second)
	for _, s := range rs {
		b, err := s.AWS("ecs", "describe-tasks", "--tasks", arn)
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		var out struct{ Tasks []ecsTask }
		if err := json.Unmarshal(b, &out); err != nil || len(out.Tasks) != 1 || out.Tasks[0].LastStatus != "RUNNING" {
			t.Errorf("aws ecs describe-tasks against %s: %v %s", s.Name(), err, b)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		out, _, err := rs[1].Vessel("logs", taskID(arn))
		if err != nil || !strings.Contains(out, "hello from the fleet") {
			return fmt.Errorf("vessel logs through %s: %v %q", rs[1].Name(), err, out)
		}
		return nil
	})
	if _, err := rs[1].ECS().StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	stopped := waitFor(t, rs[0].ECS(), arn, "STOPPED", 60*time.Second)
	if code := stopped.Containers[0].ExitCode; code == nil || *code != 0 {
		t.Errorf("exit code %v, want 0 (the container ended by the stop's SIGTERM)", code)
	}
}
