package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

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
// and one runc host, each on a machine of its own. `vessel credentials`
// prints the same admin key on every replica's machine. A task run through
// the first replica is described by the second and the third at once; the aws
// CLI works against each replica; the task's output is read, and the task
// stopped, through replicas other than the one that started it.
func TestReplicasShareOneControlPlane(t *testing.T) {
	f := newFleet(t)
	rs := f.Servers(3, fleet.ServerConfig{Etcd: f.Etcd(3)})
	// One admin key, printed by `vessel credentials` on every machine.
	id, secret := rs[0].Credentials()
	for _, s := range rs[1:] {
		if i, sec := s.Credentials(); i != id || sec != secret {
			t.Errorf("vessel credentials on %s prints %s, on %s %s: want the one admin key", s.Name(), i, rs[0].Name(), id)
		}
	}
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
	// The EKS API, a profile made through one replica and listed by all,
	// and /metrics with the leader gauge (1 on the leader only).
	if _, err := rs[2].AWS("eks", "create-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "fleet",
		"--pod-execution-role-arn", "arn:aws:iam::000000000000:role/pods", "--selectors", `[{"namespace":"fleet"}]`); err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, s := range rs {
		b, err := s.AWS("eks", "list-fargate-profiles", "--cluster-name", "default")
		if err != nil || !strings.Contains(string(b), `"fleet"`) {
			t.Errorf("aws eks list-fargate-profiles against %s: %v %s", s.Name(), err, b)
		}
		resp, err := s.HTTPClient().Get(s.Endpoint + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(m), "\nvessel_leader 1\n") {
			leaders++
		} else if !strings.Contains(string(m), "\nvessel_leader 0\n") {
			t.Errorf("%s /metrics has no vessel_leader gauge", s.Name())
		}
	}
	if leaders != 1 {
		t.Errorf("%d replicas' /metrics say they lead, want 1", leaders)
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

// gate holds the registry's answers to downloads of one repository's blobs
// until it is opened: the tasks pulling that image stay ACTIVATING.
type gate struct {
	repo string
	open chan struct{}
	once sync.Once
}

func newGate(t *testing.T, repo string) *gate {
	g := &gate{repo: repo, open: make(chan struct{})}
	t.Cleanup(g.Open)
	return g
}

// Open lets the held and later requests through.
func (g *gate) Open() { g.once.Do(func() { close(g.open) }) }

func (g *gate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/"+g.repo+"/blobs/sha256:") {
			select {
			case <-g.open:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestLeaderKilledMidFlight: three replicas on a three-member etcd, one runc
// host whose agent talks to the leader first. While tasks are PENDING
// (no room left), ACTIVATING (their image's blobs held by the registry) and
// RUNNING, and a service's deployment is rolling (its new tasks
// ACTIVATING), the leader is killed with SIGKILL. Another replica leads
// within --leader-lease (the default, 10 s) + 5 s; once the images flow,
// the deployment completes and the pending task is placed by the new
// leader; every task record is there, the running tasks were not started
// again, no task has two sandboxes, the service's counts are exact, and the
// agent reported through another replica.
func TestLeaderKilledMidFlight(t *testing.T) {
	const lease = 10 * time.Second
	f := newFleet(t)
	rs := f.Servers(3, fleet.ServerConfig{Etcd: f.Etcd(3)})
	leader := fleet.Leader(t, rs, 30*time.Second)
	var survivors []*fleet.Server
	for _, s := range rs {
		if s != leader {
			survivors = append(survivors, s)
		}
	}
	slow := newGate(t, "slow")
	reg := newRegistryAt(t, f.Gateway().String(), slow.wrap)
	fast := reg.push("busybox:1", nil, busyboxLayer(t))
	held := reg.push("slow:1", nil, busyboxLayer(t), layerFrom(t, []tarEntry{{hdr: tar.Header{Name: "slow.txt", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("held")}}))
	// Room for seven tasks of 0.25 vCPU: two standalone, two of the
	// service's first revision, two of its second (maximumPercent 200), one
	// held; the eighth waits PENDING.
	ratio := 1.75 / float64(goruntime.NumCPU())
	host := f.Agent(append([]*fleet.Server{leader}, survivors...), fleet.AgentConfig{Runtime: "runc",
		Args: []string{"--insecure-registry", reg.host, "--cpu-allocation-ratio", strconv.FormatFloat(ratio, 'f', -1, 64)}})

	ctx := context.Background()
	c := leader.ECS()
	loop := []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}
	register := func(family, image string) string {
		out, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(image), Command: loop, StopTimeout: aws.Int32(2)}}})
		if err != nil {
			t.Fatalf("registering %s: %v", family, err)
		}
		return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
	}
	register("steady", fast)
	register("held", held)
	register("waiter", fast)
	web1 := register("web", fast)
	web2 := register("web", held)

	steady := []string{runOne(t, c, "steady"), runOne(t, c, "steady")}
	before := map[string]time.Time{}
	for _, arn := range steady {
		before[arn] = aws.ToTime(waitFor(t, c, arn, "RUNNING", 90*time.Second).StartedAt)
	}
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String("web"), TaskDefinition: aws.String(web1), DesiredCount: aws.Int32(2),
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(100), MaximumPercent: aws.Int32(200)}}); err != nil {
		t.Fatal(err)
	}
	waitService(t, c, "web", "steady on its first revision", 90*time.Second, serviceSteady)
	oldWeb := serviceTaskARNs(t, c, "web")
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Service: aws.String("web"), TaskDefinition: aws.String(web2)}); err != nil {
		t.Fatal(err)
	}
	waitService(t, c, "web", "rolling with its new tasks ACTIVATING", 60*time.Second, func(s ecstypes.Service) bool {
		return len(s.Deployments) == 2 && s.Deployments[0].PendingCount == 2
	})
	heldTask := runOne(t, c, "held")
	waitFor(t, c, heldTask, "ACTIVATING", 60*time.Second)
	waiter := runOne(t, c, "waiter")
	waitFor(t, c, waiter, "PENDING", 30*time.Second)
	for _, arn := range serviceTaskARNs(t, c, "web") {
		if !slices.Contains(oldWeb, arn) {
			waitFor(t, c, arn, "ACTIVATING", 60*time.Second)
		}
	}
	known := append(append(append([]string{}, steady...), oldWeb...), heldTask, waiter)
	known = append(known, serviceTaskARNs(t, c, "web")...)
	slices.Sort(known)
	known = slices.Compact(known)

	// What the leader leaves behind: all three states at once.
	states := map[string]int{}
	if out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: known}); err == nil {
		for _, tk := range out.Tasks {
			states[aws.ToString(tk.LastStatus)]++
		}
	}
	if states["PENDING"] != 1 || states["ACTIVATING"] != 3 || states["RUNNING"] != 4 {
		t.Fatalf("before the kill: %v, want 1 PENDING, 3 ACTIVATING, 4 RUNNING", states)
	}

	leader.Kill()
	next := fleet.Leader(t, survivors, lease+5*time.Second)
	t.Logf("%s leads after %s was killed", next.Name(), leader.Name())
	c = next.ECS()
	slow.Open()

	svc := waitService(t, c, "web", "steady on its second revision", 120*time.Second, func(s ecstypes.Service) bool {
		return serviceSteady(s) && aws.ToString(s.Deployments[0].TaskDefinition) == web2
	})
	if svc.RunningCount != 2 || svc.PendingCount != 0 || svc.DesiredCount != 2 {
		t.Errorf("service counts: running %d pending %d desired %d, want 2 0 2", svc.RunningCount, svc.PendingCount, svc.DesiredCount)
	}
	waitFor(t, c, heldTask, "RUNNING", 60*time.Second)
	waitFor(t, c, waiter, "RUNNING", 60*time.Second)

	// Every record is there; the steady tasks ran on; each running task has
	// one sandbox and no other sandbox exists.
	out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: known})
	if err != nil || len(out.Failures) != 0 || len(out.Tasks) != len(known) {
		t.Fatalf("DescribeTasks of the %d tasks known before the kill: %v, %d tasks, failures %+v", len(known), err, len(out.Tasks), out.Failures)
	}
	var running []string
	for _, tk := range out.Tasks {
		arn := aws.ToString(tk.TaskArn)
		if st, ok := before[arn]; ok && (aws.ToString(tk.LastStatus) != "RUNNING" || !aws.ToTime(tk.StartedAt).Equal(st)) {
			t.Errorf("steady task %s: %s, started %v, before the kill %v: it must run on, never started again", arn, aws.ToString(tk.LastStatus), tk.StartedAt, st)
		}
		if slices.Contains(oldWeb, arn) && aws.ToString(tk.LastStatus) != "STOPPED" {
			t.Errorf("the first revision's task %s is %s, want STOPPED", arn, aws.ToString(tk.LastStatus))
		}
		if aws.ToString(tk.LastStatus) == "RUNNING" {
			running = append(running, taskID(arn)+"-app")
		}
	}
	all, err := c.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatusRunning})
	if err != nil || len(all.TaskArns) != 6 || len(running) != 6 {
		t.Errorf("tasks desired RUNNING: %v %d, RUNNING among the known: %d; want 6 (2 steady, 2 of the service, the held, the waiter): one of them ran twice or is lost", err, len(all.TaskArns), len(running))
	}
	if n := len(serviceTaskARNs(t, c, "web")); n != 2 {
		t.Errorf("the service has %d tasks desired RUNNING, want 2", n)
	}
	containers, err := host.Containers()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(running)
	slices.Sort(containers)
	if !slices.Equal(running, containers) {
		t.Errorf("the host's containers %v, want one per RUNNING task %v", containers, running)
	}
	if !strings.Contains(host.Log(), "moving to the next") {
		t.Errorf("the agent does not say it moved off the killed leader:\n%s", host.Log())
	}
}

// waitService polls DescribeServices through c until ok.
func waitService(t *testing.T, c *ecs.Client, name, what string, timeout time.Duration, ok func(ecstypes.Service) bool) ecstypes.Service {
	t.Helper()
	var svc ecstypes.Service
	testutil.Eventually(t, timeout, func() error {
		if svc = describeService(t, c, name); !ok(svc) {
			var b strings.Builder
			for _, d := range svc.Deployments {
				fmt.Fprintf(&b, "\n  %s %s %s %s running %d pending %d: %s", aws.ToString(d.Id), aws.ToString(d.Status), aws.ToString(d.TaskDefinition),
					d.RolloutState, d.RunningCount, d.PendingCount, aws.ToString(d.RolloutStateReason))
			}
			for _, ev := range svc.Events {
				b.WriteString("\n  " + aws.ToString(ev.Message))
			}
			return fmt.Errorf("service %s not %s: running %d pending %d desired %d%s", name, what, svc.RunningCount, svc.PendingCount, svc.DesiredCount, b.String())
		}
		return nil
	})
	return svc
}
