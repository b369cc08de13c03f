package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/testutil"
)

// noHostLost is the host timeout of replicas that have no elector, so
// that each runs the controllers (leadership_test.go tests replicas that
// elect a leader): the one the agent does not talk to must not count the
// host lost while the test runs.
const noHostLost = 10 * time.Minute

// TestReplicasReadYourWrites: a write acknowledged by one replica is seen
// by a read on another at once, even while that replica's watch lags
// (held back here, so that "at once" does not depend on timing).
func TestReplicasReadYourWrites(t *testing.T) {
	rs := startReplicas(t, 2, replicaConfig{keyring: true, lagging: true, hostTimeout: noHostLost})
	a, b := rs[0], rs[1]
	def := a.register("web", "256", "512", "sleep", "3600")

	b.lag.hold()
	defer b.lag.release()

	// A task run through A is described and listed by B.
	arn := a.run(def)
	if got := b.describe(arn); aws.ToString(got.TaskArn) != arn {
		t.Fatalf("DescribeTasks on B: got %s, want %s", aws.ToString(got.TaskArn), arn)
	}
	// So is it by a bridge starting on B (its first task watch).
	var w agentproto.TaskWatch
	if err := b.vesselClient(b.key).Call(ctx(t), "GET", "/vessel/v1/tasks?cluster=default&after=0", nil, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Tasks) != 1 || !strings.HasSuffix(arn, "/"+w.Tasks[0].ID) {
		t.Fatalf("the task watch on B: %d task(s) at revision %d; want %s", len(w.Tasks), w.Revision, arn)
	}
	list, err := b.ecs.ListTasks(ctx(t), &ecs.ListTasksInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.TaskArns) != 1 || list.TaskArns[0] != arn {
		t.Fatalf("ListTasks on B: %v, want [%s]", list.TaskArns, arn)
	}

	// A service's task counts, made through A, are B's too.
	if _, err := a.ecs.CreateService(ctx(t), &ecs.CreateServiceInput{ServiceName: aws.String("svc"),
		TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var onA int32
	testutil.Eventually(t, 20*time.Second, func() error {
		out, err := a.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Services: []string{"svc"}})
		if err != nil {
			return err
		}
		s := out.Services[0]
		if onA = s.RunningCount + s.PendingCount; onA == 0 {
			return fmt.Errorf("service svc has no task yet on A")
		}
		return nil
	})
	out, err := b.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Services: []string{"svc"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Services) != 1 {
		t.Fatalf("DescribeServices on B: %d services, failures %v", len(out.Services), out.Failures)
	}
	if s := out.Services[0]; s.RunningCount+s.PendingCount < onA {
		t.Errorf("DescribeServices on B: %d running, %d pending; A counts %d task(s) (running + pending)", s.RunningCount, s.PendingCount, onA)
	}

	// A key created through A signs requests to B.
	cred, err := a.vesselClient(a.key).CreateCredential(ctx(t), agentproto.CreateCredentialRequest{Name: "ci", Policy: auth.PolicyAdmin})
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := b.clients(auth.Key{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey})
	if _, err := fresh.ListClusters(ctx(t), &ecs.ListClustersInput{}); err != nil {
		t.Fatalf("B refuses the key created through A: %v", err)
	}
}

// TestAgentMovesToAnotherReplica: an agent given two replicas' URLs keeps
// its task running, and reporting, when the replica it used stops.
func TestAgentMovesToAnotherReplica(t *testing.T) {
	rs := startReplicas(t, 2, replicaConfig{keyring: true, lagging: true, hostTimeout: noHostLost})
	a, b := rs[0], rs[1]
	admin := a.key

	client, err := agentproto.NewClient(a.url+","+b.url, admin, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	client.WithCallTimeout(2 * time.Second)
	rt, simDir := startSimAgent(t, client, 100*time.Millisecond)

	// B's watch lags from before the task is run: when the agent moves
	// there, B's cache has not seen the task the agent runs.
	b.lag.hold()
	defer b.lag.release()
	def := a.register("web", "256", "512", "sleep", "3600")
	arn := a.run(def)
	before := a.waitStatus(arn, "RUNNING")
	if client.Endpoint() != a.url {
		t.Fatalf("the agent uses %s, want the first replica %s", client.Endpoint(), a.url)
	}
	sandboxes, err := rt.List(ctx(t))
	if err != nil || len(sandboxes) != 1 {
		t.Fatalf("sandboxes on the host: %v, %v; want 1", sandboxes, err)
	}
	// The simulated sandbox's state file is rewritten on every change to
	// the sandbox (created again, started, stopped).
	stateFile := filepath.Join(simDir, sandboxes[0].ID+".json")
	state, err := os.Stat(stateFile)
	if err != nil {
		t.Fatal(err)
	}

	// B never answers an agent that saw the task with a set without it
	// (which would tear the sandbox down), however far its cache lags.
	var seen agentproto.Assignments
	if err := a.vesselClient(admin).Call(ctx(t), "GET", "/agent/v1/hosts/h1/assignments?after=0&wait=1s", nil, &seen); err != nil || len(seen.Tasks) != 1 {
		t.Fatalf("assignments on A: %+v, %v; want the task", seen, err)
	}
	// Nor an agent that starts (its first poll, after revision 0, deletes
	// the sandboxes that are not in the answer).
	for _, after := range []int64{seen.Revision, 0} {
		var onB agentproto.Assignments
		path := fmt.Sprintf("/agent/v1/hosts/h1/assignments?after=%d&wait=1s", after)
		if err := b.vesselClient(admin).Call(ctx(t), "GET", path, nil, &onB); err != nil {
			t.Fatal(err)
		}
		if len(onB.Tasks) != 1 || onB.Tasks[0].ID != seen.Tasks[0].ID || onB.Revision < seen.Revision {
			t.Fatalf("assignments on the lagging B after revision %d: %d task(s) at revision %d; want the task at %d or later",
				after, len(onB.Tasks), onB.Revision, seen.Revision)
		}
	}

	a.stop()

	// The agent moves to B: its heartbeats and long poll go there.
	testutil.Eventually(t, 20*time.Second, func() error {
		if client.Endpoint() != b.url {
			return fmt.Errorf("the agent still uses %s", client.Endpoint())
		}
		return nil
	})
	b.lag.release()
	// The sandbox was neither restarted nor torn down.
	if now, err := os.Stat(stateFile); err != nil || !os.SameFile(now, state) || !now.ModTime().Equal(state.ModTime()) {
		t.Fatalf("the sandbox changed while the agent moved to another replica: %v", err)
	}
	if got := b.describe(arn); aws.ToString(got.LastStatus) != "RUNNING" || !aws.ToTime(got.StartedAt).Equal(aws.ToTime(before.StartedAt)) {
		t.Fatalf("task on B: %s started %v; want RUNNING, started %v", aws.ToString(got.LastStatus), got.StartedAt, before.StartedAt)
	}
	// Its reports reach B: stopping the task through B, the agent stops
	// the sandbox and reports STOPPED there.
	if _, err := b.ecs.StopTask(ctx(t), &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("done")}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(arn, "STOPPED")
}
