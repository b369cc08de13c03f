package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// namesUntil long-polls the names from after on cp until ok holds, and
// returns them.
func namesUntil(t *testing.T, cp agentproto.NameSource, after agentproto.Names, ok func(agentproto.Names) error) agentproto.Names {
	t.Helper()
	n := after
	testutil.Eventually(t, 20*time.Second, func() error {
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		next, err := cp.Names(pctx, "h1", n.Revision, n.StoreRevision)
		if err != nil {
			return err
		}
		n = next
		return ok(n)
	})
	return n
}

// waitPlaced waits until host h1 is given its one task.
func waitPlaced(t *testing.T, cp agentproto.ControlPlane) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		as, err := cp.Assignments(ctx(t), "h1", 0)
		if err != nil || len(as.Tasks) != 1 {
			return fmt.Errorf("assignments of h1: %d, %v", len(as.Tasks), err)
		}
		return nil
	})
}

func record(n agentproto.Names, id string) (discovery.Record, bool) {
	for _, r := range n.Records {
		if r.TaskID == id {
			return r, true
		}
	}
	return discovery.Record{}, false
}

// TestNamesFollowTheTasks drives the names route over the agent protocol
// (a host agent's signed long poll) while a hand-driven host reports a
// service's task: it appears with its address once RUNNING, leaves the
// service's answers while unhealthy (keeping its own name), and goes away
// when asked to stop. A poll at the current revision waits, and returns
// the names unchanged when its time is up.
func TestNamesFollowTheTasks(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	cp := e.vesselClient(e.key)
	c := ctx(t)
	if err := cp.RegisterHost(c, agentproto.Host{ID: "h1", MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}}); err != nil {
		t.Fatal(err)
	}
	n0, err := cp.Names(c, "h1", 0, 0)
	if err != nil || n0.Revision == 0 || len(n0.Records) != 0 {
		t.Fatalf("first names: %+v, %v; want none, with a revision", n0, err)
	}
	// Nothing changes: the poll waits its time out and answers the same.
	var same agentproto.Names
	err = cp.Call(c, "GET", fmt.Sprintf("/agent/v1/hosts/h1/names?after=%d&seen=%d&wait=300ms", n0.Revision, n0.StoreRevision), nil, &same)
	if err != nil || same.Revision != n0.Revision {
		t.Fatalf("a poll with nothing changed: %+v, %v; want revision %d", same, err, n0.Revision)
	}
	for _, q := range []string{"after=x", "after=-1", "seen=1.5"} {
		err := cp.Call(c, "GET", "/agent/v1/hosts/h1/names?"+q, nil, &same)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "whole number") {
			t.Errorf("names?%s: %v; want an InvalidArgument error saying what is accepted", q, err)
		}
	}

	if _, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{Family: aws.String("web"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"), Essential: aws.Bool(true),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(80), Name: aws.String("http")}},
			HealthCheck:  &ecstypes.HealthCheck{Command: []string{"CMD", "true"}}}}}); err != nil {
		t.Fatal(err)
	}
	out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String("web"), Group: aws.String("service:web")})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask: %v %+v", err, out)
	}
	arn := aws.ToString(out.Tasks[0].TaskArn)
	id := arn[strings.LastIndex(arn, "/")+1:]
	// Placed on h1, the only host.
	waitPlaced(t, cp)
	report := func(health string) {
		t.Helper()
		if err := cp.ReportStatus(c, "h1", agentproto.StatusUpdate{TaskID: id, LastStatus: task.StatusRunning, IP: "10.89.0.7",
			Containers: []agentproto.ContainerUpdate{{Name: "app", LastStatus: task.StatusRunning, HealthStatus: health}}, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	report(task.HealthHealthy)
	n := namesUntil(t, cp, n0, func(n agentproto.Names) error {
		if r, ok := record(n, id); !ok || !r.Serving {
			return fmt.Errorf("task %s serving: not in %+v", id, n)
		}
		return nil
	})
	r, _ := record(n, id)
	if r.Cluster != "default" || r.Service != "web" || r.IP.String() != "10.89.0.7" || len(r.Ports) != 1 || r.Ports[0].Port != 80 || r.Ports[0].Name != "http" {
		t.Fatalf("record of the task: %+v", r)
	}

	report(task.HealthUnhealthy)
	n = namesUntil(t, cp, n, func(n agentproto.Names) error {
		if r, ok := record(n, id); !ok || r.Serving {
			return fmt.Errorf("task %s unhealthy: want its record, not serving: %+v", id, n)
		}
		return nil
	})

	if _, err := e.ecs.StopTask(c, &ecs.StopTaskInput{Task: out.Tasks[0].TaskArn}); err != nil {
		t.Fatal(err)
	}
	namesUntil(t, cp, n, func(n agentproto.Names) error {
		if _, ok := record(n, id); ok {
			return fmt.Errorf("task %s asked to stop is still named: %+v", id, n)
		}
		if len(n.Clusters) != 1 || n.Clusters[0] != "default" {
			return fmt.Errorf("clusters %v, want [default] (the stopped task's zone is known)", n.Clusters)
		}
		return nil
	})
}

// TestNamesOnAnyReplica: two replicas answer the same names under the same
// revision; one whose cache lags the names a host has does not answer it
// older ones; a host's long poll, its client given both URLs, moves to the
// second when the first stops, and is answered there when the names change.
func TestNamesOnAnyReplica(t *testing.T) {
	rs := startReplicas(t, 2, replicaConfig{keyring: true, lagging: true, hostTimeout: noHostLost})
	a, b := rs[0], rs[1]
	client, err := agentproto.NewClient(a.url+","+b.url, a.key, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	client.WithCallTimeout(2 * time.Second)
	c := ctx(t)
	if err := client.RegisterHost(c, agentproto.Host{ID: "h1", MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}}); err != nil {
		t.Fatal(err)
	}
	// B's watch lags from before the task is run.
	b.lag.hold()
	defer b.lag.release()
	arn := a.run(a.register("web", "256", "512", "sleep", "3600"))
	id := arn[strings.LastIndex(arn, "/")+1:]
	waitPlaced(t, client)
	if err := client.ReportStatus(c, "h1", agentproto.StatusUpdate{TaskID: id, LastStatus: task.StatusRunning, IP: "10.89.0.9", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	onA := namesUntil(t, client, agentproto.Names{}, func(n agentproto.Names) error {
		if _, ok := record(n, id); !ok {
			return fmt.Errorf("task %s not named: %+v", id, n)
		}
		return nil
	})
	if client.Endpoint() != a.url {
		t.Fatalf("the client uses %s, want the first replica", client.Endpoint())
	}
	// B, behind the names the host has, does not answer older ones.
	var onB agentproto.Names
	err = b.vesselClient(b.key).Call(c, "GET", fmt.Sprintf("/agent/v1/hosts/h1/names?after=%d&seen=%d&wait=500ms", onA.Revision, onA.StoreRevision), nil, &onB)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("the lagging B answered a host with newer names: %+v, %v; want an Unavailable error", onB, err)
	}
	b.lag.release()
	testutil.Eventually(t, 10*time.Second, func() error {
		if err := b.vesselClient(b.key).Call(c, "GET", "/agent/v1/hosts/h1/names?after=0", nil, &onB); err != nil {
			return err
		}
		if onB.Revision != onA.Revision {
			return fmt.Errorf("B answers revision %d (%+v), A %d (%+v)", onB.Revision, onB, onA.Revision, onA)
		}
		return nil
	})

	a.stop()
	polled := make(chan agentproto.Names, 1)
	go func() {
		n, err := client.Names(c, "h1", onA.Revision, onA.StoreRevision)
		if err != nil {
			t.Errorf("the long poll after A stopped: %v", err)
		}
		polled <- n
	}()
	if _, err := b.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	n := <-polled
	if _, ok := record(n, id); ok || n.Revision == onA.Revision {
		t.Fatalf("names after the stop, from B: %+v; want the task gone", n)
	}
	if client.Endpoint() != b.url {
		t.Fatalf("the client uses %s after A stopped, want B", client.Endpoint())
	}
}
