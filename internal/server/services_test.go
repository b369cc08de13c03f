package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// describeService returns one service of the default cluster.
func (e *env) describeService(name string) ecstypes.Service {
	e.t.Helper()
	out, err := e.ecs.DescribeServices(ctx(e.t), &ecs.DescribeServicesInput{Services: []string{name}})
	if err != nil {
		e.t.Fatalf("DescribeServices: %v", err)
	}
	if len(out.Services) != 1 {
		e.t.Fatalf("DescribeServices(%s): failures %+v", name, out.Failures)
	}
	return out.Services[0]
}

// waitService polls until ok holds for the service.
func (e *env) waitService(name, what string, ok func(ecstypes.Service) bool) ecstypes.Service {
	e.t.Helper()
	var s ecstypes.Service
	testutil.Eventually(e.t, 20*time.Second, func() error {
		if s = e.describeService(name); !ok(s) {
			return fmt.Errorf("service %s: not %s: status %s desired %d running %d pending %d\ndeployments %s\nevents %s",
				name, what, aws.ToString(s.Status), s.DesiredCount, s.RunningCount, s.PendingCount, deployments(s), events(s))
		}
		return nil
	})
	return s
}

func deployments(s ecstypes.Service) string {
	var b strings.Builder
	for _, d := range s.Deployments {
		fmt.Fprintf(&b, "\n  %s %s %s %s desired %d running %d pending %d failed %d: %s", aws.ToString(d.Id), aws.ToString(d.Status),
			aws.ToString(d.TaskDefinition), d.RolloutState, d.DesiredCount, d.RunningCount, d.PendingCount, d.FailedTasks, aws.ToString(d.RolloutStateReason))
	}
	return b.String()
}

func events(s ecstypes.Service) string {
	var b strings.Builder
	for _, ev := range s.Events {
		b.WriteString("\n  " + aws.ToString(ev.Message))
	}
	return b.String()
}

func hasEvent(s ecstypes.Service, prefix string) bool {
	for _, ev := range s.Events {
		if strings.HasPrefix(aws.ToString(ev.Message), prefix) {
			return true
		}
	}
	return false
}

// steady: one COMPLETED deployment running every desired task.
func steady(s ecstypes.Service) bool {
	return len(s.Deployments) == 1 && s.Deployments[0].RolloutState == ecstypes.DeploymentRolloutStateCompleted &&
		s.RunningCount == s.DesiredCount && s.PendingCount == 0 && s.Events != nil &&
		aws.ToString(s.Events[0].Message) == "(service "+aws.ToString(s.ServiceName)+") has reached a steady state."
}

// serviceTasks returns the service's tasks with desired status RUNNING.
func (e *env) serviceTasks(name string) []ecstypes.Task {
	e.t.Helper()
	list, err := e.ecs.ListTasks(ctx(e.t), &ecs.ListTasksInput{ServiceName: aws.String(name)})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(list.TaskArns) == 0 {
		return nil
	}
	out, err := e.ecs.DescribeTasks(ctx(e.t), &ecs.DescribeTasksInput{Tasks: list.TaskArns})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Tasks
}

func (e *env) createService(name, def string, desired int32, mutate ...func(*ecs.CreateServiceInput)) ecstypes.Service {
	e.t.Helper()
	in := &ecs.CreateServiceInput{ServiceName: aws.String(name), TaskDefinition: aws.String(def), DesiredCount: aws.Int32(desired),
		LaunchType: ecstypes.LaunchTypeFargate}
	for _, m := range mutate {
		m(in)
	}
	out, err := e.ecs.CreateService(ctx(e.t), in)
	if err != nil {
		e.t.Fatalf("CreateService: %v", err)
	}
	return *out.Service
}

// TestServiceLifecycle: a service reaches a steady state, replaces a task
// that stops, scales out and in, rolls out a new revision, and is deleted.
func TestServiceLifecycle(t *testing.T) {
	e := newEnv(t, envOptions{})
	def := e.register("web", "256", "512", "serve")
	created := e.createService("web", def, 3)
	if aws.ToString(created.Status) != "ACTIVE" || created.DesiredCount != 3 || len(created.Deployments) != 1 ||
		aws.ToString(created.Deployments[0].Status) != "PRIMARY" || created.Deployments[0].RolloutState != ecstypes.DeploymentRolloutStateInProgress {
		t.Fatalf("CreateService = %+v", created)
	}
	if !strings.HasSuffix(aws.ToString(created.ServiceArn), ":service/default/web") ||
		created.NetworkConfiguration.AwsvpcConfiguration.Subnets[0] != "subnet-default" {
		t.Errorf("arn %s network %+v", aws.ToString(created.ServiceArn), created.NetworkConfiguration.AwsvpcConfiguration)
	}
	s := e.waitService("web", "steady", steady)
	if !hasEvent(s, "(service web) has started 3 tasks: (task ") {
		t.Errorf("no start event:%s", events(s))
	}
	depID := aws.ToString(s.Deployments[0].Id)
	tasks := e.serviceTasks("web")
	if len(tasks) != 3 {
		t.Fatalf("%d tasks, want 3", len(tasks))
	}
	for _, tk := range tasks {
		if aws.ToString(tk.Group) != "service:web" || aws.ToString(tk.StartedBy) != depID || !strings.HasPrefix(depID, "ecs-svc/") {
			t.Errorf("task group %q startedBy %q, want service:web and %s", aws.ToString(tk.Group), aws.ToString(tk.StartedBy), depID)
		}
	}

	// A task that stops is replaced.
	victim := aws.ToString(tasks[0].TaskArn)
	if _, err := e.ecs.StopTask(ctx(t), &ecs.StopTaskInput{Task: aws.String(victim)}); err != nil {
		t.Fatal(err)
	}
	e.waitService("web", "replacing the stopped task", func(s ecstypes.Service) bool {
		ts := e.serviceTasks("web")
		return steady(s) && len(ts) == 3 && !slices.ContainsFunc(ts, func(tk ecstypes.Task) bool { return aws.ToString(tk.TaskArn) == victim })
	})

	// Scale out, then in: the surplus stops with ServiceSchedulerInitiated.
	if _, err := e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("web"), DesiredCount: aws.Int32(5)}); err != nil {
		t.Fatal(err)
	}
	e.waitService("web", "at 5", func(s ecstypes.Service) bool { return steady(s) && s.RunningCount == 5 })
	before := e.serviceTasks("web")
	if _, err := e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("web"), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	s = e.waitService("web", "at 1", func(s ecstypes.Service) bool { return steady(s) && s.RunningCount == 1 })
	if !hasEvent(s, "(service web) has stopped 4 running tasks: ") {
		t.Errorf("no stop event:%s", events(s))
	}
	scaledIn := 0
	for _, tk := range before {
		if aws.ToString(e.describe(aws.ToString(tk.TaskArn)).DesiredStatus) != "STOPPED" {
			continue
		}
		got := e.waitStatus(aws.ToString(tk.TaskArn), "STOPPED")
		if got.StopCode == ecstypes.TaskStopCodeServiceSchedulerInitiated &&
			strings.HasPrefix(aws.ToString(got.StoppedReason), "Scaling activity initiated by (deployment ecs-svc/") {
			scaledIn++
		}
	}
	if scaledIn != 4 {
		t.Errorf("%d tasks stopped with ServiceSchedulerInitiated, want 4", scaledIn)
	}

	// Delete: not while scaled above 0, unless forced; DRAINING, then
	// INACTIVE.
	_, err := e.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Service: aws.String("web")})
	wantAPIError(t, err, "InvalidParameterException", "scaled above 0", "force")
	del, err := e.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Service: aws.String("web"), Force: aws.Bool(true)})
	if err != nil || aws.ToString(del.Service.Status) != "DRAINING" || del.Service.DesiredCount != 0 {
		t.Fatalf("DeleteService = %+v, %v", del, err)
	}
	e.waitService("web", "INACTIVE", func(s ecstypes.Service) bool { return aws.ToString(s.Status) == "INACTIVE" })
	if ts := e.serviceTasks("web"); len(ts) != 0 {
		t.Errorf("%d tasks left after the delete", len(ts))
	}
	_, err = e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("web"), DesiredCount: aws.Int32(1)})
	wantAPIError(t, err, "ServiceNotActiveException", "INACTIVE")
	_, err = e.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Service: aws.String("web")})
	wantAPIError(t, err, "ServiceNotActiveException")
	list, err := e.ecs.ListServices(ctx(t), &ecs.ListServicesInput{})
	if err != nil || len(list.ServiceArns) != 0 {
		t.Errorf("ListServices after the delete = %v, %v", list.ServiceArns, err)
	}
	// The name may be used again.
	e.createService("web", def, 0)
}

// TestServiceRollingDeployment rolls out a revision whose health check
// passes, and then one whose container exits 1: the circuit breaker rolls
// back to the last revision that completed.
func TestServiceRollingDeployment(t *testing.T) {
	e := newEnv(t, envOptions{})
	register := func(cmd string, health []string) string {
		cd := ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String("busybox"), Command: []string{cmd}, Essential: aws.Bool(true)}
		if health != nil {
			cd.HealthCheck = &ecstypes.HealthCheck{Command: health, Interval: aws.Int32(1)}
		}
		out, err := e.ecs.RegisterTaskDefinition(ctx(t), &ecs.RegisterTaskDefinitionInput{Family: aws.String("api"),
			Cpu: aws.String("256"), Memory: aws.String("512"), ContainerDefinitions: []ecstypes.ContainerDefinition{cd}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
	}
	v1 := register("serve", nil)
	v2 := register("serve", []string{"CMD", "true"})
	v3 := register("false", nil)
	e.createService("api", v1, 2, func(in *ecs.CreateServiceInput) {
		in.DeploymentConfiguration = &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(50), MaximumPercent: aws.Int32(150),
			DeploymentCircuitBreaker: &ecstypes.DeploymentCircuitBreaker{Enable: true, Rollback: true}}
	})
	e.waitService("api", "steady", steady)

	up, err := e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("api"), TaskDefinition: aws.String(v2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Service.Deployments) != 2 || aws.ToString(up.Service.Deployments[0].TaskDefinition) != v2 ||
		aws.ToString(up.Service.Deployments[1].Status) != "ACTIVE" {
		t.Fatalf("deployments after UpdateService:%s", deployments(*up.Service))
	}
	// Never more than 3 tasks (150 %), never fewer than 1 running (50 %).
	testutil.Eventually(t, 20*time.Second, func() error {
		s := e.describeService("api")
		if total := s.RunningCount + s.PendingCount; total > 3 {
			t.Fatalf("%d tasks during the rollout, more than maximumPercent allows", total)
		}
		if s.RunningCount < 1 {
			t.Fatalf("%d running during the rollout, fewer than minimumHealthyPercent allows", s.RunningCount)
		}
		if steady(s) {
			if aws.ToString(s.TaskDefinition) != v2 || aws.ToString(s.Deployments[0].TaskDefinition) != v2 {
				t.Fatalf("steady on %s", aws.ToString(s.TaskDefinition))
			}
			return nil
		}
		return fmt.Errorf("the rollout is not steady: running %d pending %d\ndeployments %s", s.RunningCount, s.PendingCount, deployments(s))
	})
	for _, tk := range e.serviceTasks("api") {
		if aws.ToString(tk.TaskDefinitionArn) != v2 || tk.HealthStatus != ecstypes.HealthStatusHealthy {
			t.Errorf("task on %s health %s", aws.ToString(tk.TaskDefinitionArn), tk.HealthStatus)
		}
	}

	// A revision whose container exits 1: 10 failures trip the breaker.
	if _, err := e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("api"), TaskDefinition: aws.String(v3)}); err != nil {
		t.Fatal(err)
	}
	s := e.waitService("api", "rolled back", func(s ecstypes.Service) bool {
		return steady(s) && aws.ToString(s.TaskDefinition) == v2 && hasEvent(s, "(service api) rolling back to deployment ecs-svc/")
	})
	if !hasEvent(s, "(service api) (deployment ecs-svc/") || !strings.Contains(events(s), "deployment failed: tasks failed to start.") {
		t.Errorf("events:%s", events(s))
	}
}

func TestServiceErrors(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("web", "256", "512", "serve")
	create := func(mutate func(*ecs.CreateServiceInput)) error {
		in := &ecs.CreateServiceInput{ServiceName: aws.String("web"), TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1)}
		mutate(in)
		_, err := e.ecs.CreateService(c, in)
		return err
	}
	for _, tc := range []struct {
		name   string
		mutate func(*ecs.CreateServiceInput)
		code   string
		msg    []string
	}{
		{"no desiredCount", func(in *ecs.CreateServiceInput) { in.DesiredCount = nil }, "InvalidParameterException", []string{"desiredCount is required"}},
		{"negative desiredCount", func(in *ecs.CreateServiceInput) { in.DesiredCount = aws.Int32(-1) }, "InvalidParameterException", []string{"0..5000"}},
		{"EC2", func(in *ecs.CreateServiceInput) { in.LaunchType = ecstypes.LaunchTypeEc2 }, "InvalidParameterException", []string{"FARGATE"}},
		{"bad name", func(in *ecs.CreateServiceInput) { in.ServiceName = aws.String("a b") }, "InvalidParameterException", []string{"letters, digits"}},
		{"unknown subnet", func(in *ecs.CreateServiceInput) {
			in.NetworkConfiguration = &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"subnet-x"}}}
		}, "InvalidParameterException", []string{"subnet-x", "subnet-default"}},
		{"unknown task definition", func(in *ecs.CreateServiceInput) { in.TaskDefinition = aws.String("nope:3") }, "ClientException", []string{"nope:3"}},
		{"maximumPercent", func(in *ecs.CreateServiceInput) {
			in.DeploymentConfiguration = &ecstypes.DeploymentConfiguration{MaximumPercent: aws.Int32(300)}
		}, "InvalidParameterException", []string{"100..200"}},
		{"placement", func(in *ecs.CreateServiceInput) {
			in.PlacementStrategy = []ecstypes.PlacementStrategy{{Type: ecstypes.PlacementStrategyTypeBinpack}}
		}, "InvalidParameterException", []string{"not supported with FARGATE"}},
		{"load balancer", func(in *ecs.CreateServiceInput) {
			in.LoadBalancers = []ecstypes.LoadBalancer{{ContainerName: aws.String("app")}}
		}, "InvalidParameterException", []string{"loadBalancers"}},
		{"DAEMON", func(in *ecs.CreateServiceInput) { in.SchedulingStrategy = ecstypes.SchedulingStrategyDaemon }, "InvalidParameterException", []string{"REPLICA"}},
		{"unknown cluster", func(in *ecs.CreateServiceInput) { in.Cluster = aws.String("nope") }, "ClusterNotFoundException", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantAPIError(t, create(tc.mutate), tc.code, tc.msg...)
		})
	}
	if err := create(func(*ecs.CreateServiceInput) {}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, create(func(*ecs.CreateServiceInput) {}), "InvalidParameterException", "not idempotent")
	_, err := e.ecs.UpdateService(c, &ecs.UpdateServiceInput{Service: aws.String("nope"), DesiredCount: aws.Int32(1)})
	wantAPIError(t, err, "ServiceNotFoundException", "nope")
	_, err = e.ecs.DeleteService(c, &ecs.DeleteServiceInput{Service: aws.String("nope")})
	wantAPIError(t, err, "ServiceNotFoundException")
	_, err = e.ecs.UpdateService(c, &ecs.UpdateServiceInput{Service: aws.String("web"), DesiredCount: aws.Int32(6000)})
	wantAPIError(t, err, "InvalidParameterException", "0..5000")
	desc, err := e.ecs.DescribeServices(c, &ecs.DescribeServicesInput{Services: []string{"web", "nope"}, Include: []ecstypes.ServiceField{ecstypes.ServiceFieldTags}})
	if err != nil || len(desc.Services) != 1 || len(desc.Failures) != 1 || aws.ToString(desc.Failures[0].Reason) != "MISSING" {
		t.Fatalf("DescribeServices = %+v, %v", desc, err)
	}
	if d := desc.Services[0].DeploymentConfiguration; aws.ToInt32(d.MinimumHealthyPercent) != 100 || aws.ToInt32(d.MaximumPercent) != 200 {
		t.Errorf("default deploymentConfiguration %+v, want 100/200", d)
	}
	// What the SDK would refuse before sending it.
	if _, code, msg := e.rawECS("DescribeServices", `{}`); code != "InvalidParameterException" || !strings.Contains(msg, "1 to 10") {
		t.Errorf("DescribeServices with no services: %s %q", code, msg)
	}
	if _, code, msg := e.rawECS("CreateService", `{"serviceName":"empty","taskDefinition":"web","desiredCount":1,"networkConfiguration":{"awsvpcConfiguration":{"subnets":[]}}}`); code != "InvalidParameterException" || !strings.Contains(msg, "subnets can not be empty") {
		t.Errorf("CreateService with no subnets: %s %q", code, msg)
	}
	list, err := e.ecs.ListServices(c, &ecs.ListServicesInput{})
	if err != nil || len(list.ServiceArns) != 1 {
		t.Fatalf("ListServices = %+v, %v", list, err)
	}
	if _, err := e.ecs.CreateCluster(c, &ecs.CreateClusterInput{ClusterName: aws.String("prod")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ecs.CreateService(c, &ecs.CreateServiceInput{Cluster: aws.String("prod"), ServiceName: aws.String("x"),
		TaskDefinition: aws.String(def), DesiredCount: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ecs.DeleteCluster(c, &ecs.DeleteClusterInput{Cluster: aws.String("prod")})
	wantAPIError(t, err, "ClusterContainsServicesException", "service x")
	cl, err := e.ecs.DescribeClusters(c, &ecs.DescribeClustersInput{Clusters: []string{"prod"}})
	if err != nil || cl.Clusters[0].ActiveServicesCount != 1 {
		t.Errorf("DescribeClusters = %+v, %v", cl, err)
	}
}

// TestServiceHostLost: the tasks of a host that goes silent stop with
// TerminationNotice; the service starts replacements and, with no host
// left, says why they wait.
func TestServiceHostLost(t *testing.T) {
	e := newEnv(t, envOptions{hostTimeout: 500 * time.Millisecond})
	def := e.register("web", "256", "512", "serve")
	e.createService("web", def, 2)
	e.waitService("web", "steady", steady)
	lost := e.serviceTasks("web")
	e.stopAgent()
	s := e.waitService("web", "waiting for a host", func(s ecstypes.Service) bool {
		return hasEvent(s, "(service web) was unable to place a task because no host met all of its requirements. Reason: NO_HOST")
	})
	for _, tk := range lost {
		got := e.describe(aws.ToString(tk.TaskArn))
		if got.StopCode != ecstypes.TaskStopCodeTerminationNotice {
			t.Errorf("task on the lost host: %s %s", aws.ToString(got.LastStatus), got.StopCode)
		}
	}
	if s.PendingCount != 2 || !hasEvent(s, "(service web) has started 2 tasks") {
		t.Errorf("pending %d, events:%s", s.PendingCount, events(s))
	}
}

// TestServiceTasksGetTaskDNS: a service's tasks get the cluster's resolver
// configuration, as RunTask's do, and the group the DNS server looks for.
func TestServiceTasksGetTaskDNS(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, func(cfg *server.Config) {
		cfg.TaskDNS = func(cluster string) *task.DNSConfig {
			return &task.DNSConfig{Nameservers: []string{"10.89.0.1"}, Searches: []string{cluster + ".vessel.local"}}
		}
	})
	e.createService("web", e.register("web", "256", "512", "serve"), 1)
	var ts []*task.Task
	testutil.Eventually(t, 10*time.Second, func() error {
		var err error
		if ts, err = e.srv.TaskSnapshot(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 {
			return fmt.Errorf("the service has %d tasks, want 1", len(ts))
		}
		return nil
	})
	if d := ts[0].DNS; d == nil || !slices.Equal(d.Searches, []string{"default.vessel.local"}) || ts[0].Group != "service:web" {
		t.Fatalf("service task DNS %+v group %q", d, ts[0].Group)
	}
}
