package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// apiCode returns the AWS error code of err, or "" if it is not an API error.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func wantAPIError(t *testing.T, err error, code string, msgParts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := apiCode(err); got != code {
		t.Fatalf("error code %q (%v), want %s", got, err, code)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestClusters(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	list, err := e.ecs.ListClusters(c, &ecs.ListClustersInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.ClusterArns) != 1 || !strings.HasSuffix(list.ClusterArns[0], ":cluster/default") {
		t.Fatalf("a new server must have exactly the default cluster, got %v", list.ClusterArns)
	}
	created, err := e.ecs.CreateCluster(c, &ecs.CreateClusterInput{ClusterName: aws.String("prod"),
		Tags: []ecstypes.Tag{{Key: aws.String("team"), Value: aws.String("a")}}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(created.Cluster.Status) != "ACTIVE" || aws.ToString(created.Cluster.ClusterName) != "prod" {
		t.Fatalf("CreateCluster = %+v", created.Cluster)
	}
	again, err := e.ecs.CreateCluster(c, &ecs.CreateClusterInput{ClusterName: aws.String("prod")})
	if err != nil || aws.ToString(again.Cluster.ClusterArn) != aws.ToString(created.Cluster.ClusterArn) {
		t.Fatalf("CreateCluster must be idempotent: %v %v", again, err)
	}
	desc, err := e.ecs.DescribeClusters(c, &ecs.DescribeClustersInput{Clusters: []string{"prod", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Clusters) != 1 || len(desc.Failures) != 1 || aws.ToString(desc.Failures[0].Reason) != "MISSING" {
		t.Fatalf("DescribeClusters = %+v", desc)
	}
	_, err = e.ecs.CreateCluster(c, &ecs.CreateClusterInput{ClusterName: aws.String("bad name!")})
	wantAPIError(t, err, "InvalidParameterException", "letters, digits")
	_, err = e.ecs.DeleteCluster(c, &ecs.DeleteClusterInput{Cluster: aws.String("default")})
	wantAPIError(t, err, "InvalidParameterException", "default cluster")
	del, err := e.ecs.DeleteCluster(c, &ecs.DeleteClusterInput{Cluster: aws.String("prod")})
	if err != nil || aws.ToString(del.Cluster.Status) != "INACTIVE" {
		t.Fatalf("DeleteCluster = %+v, %v", del, err)
	}
	_, err = e.ecs.DeleteCluster(c, &ecs.DeleteClusterInput{Cluster: aws.String("prod")})
	wantAPIError(t, err, "ClusterNotFoundException", "prod")
	_, err = e.ecs.ListTasks(c, &ecs.ListTasksInput{Cluster: aws.String("nope")})
	wantAPIError(t, err, "ClusterNotFoundException", "nope")
}

func TestRegisterTaskDefinitionRules(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	base := func() *ecs.RegisterTaskDefinitionInput {
		return &ecs.RegisterTaskDefinitionInput{Family: aws.String("web"), Cpu: aws.String("256"), Memory: aws.String("512"),
			NetworkMode:          ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("nginx")}}}
	}
	first, err := e.ecs.RegisterTaskDefinition(c, base())
	if err != nil {
		t.Fatal(err)
	}
	if first.TaskDefinition.Revision != 1 || first.TaskDefinition.Status != ecstypes.TaskDefinitionStatusActive {
		t.Fatalf("first revision = %+v", first.TaskDefinition)
	}
	if !aws.ToBool(first.TaskDefinition.ContainerDefinitions[0].Essential) {
		t.Errorf("essential must default to true")
	}
	in := base()
	in.Cpu, in.Memory = aws.String("1 vCPU"), aws.String("2 GB")
	second, err := e.ecs.RegisterTaskDefinition(c, in)
	if err != nil {
		t.Fatal(err)
	}
	if second.TaskDefinition.Revision != 2 || aws.ToString(second.TaskDefinition.Cpu) != "1024" || aws.ToString(second.TaskDefinition.Memory) != "2048" {
		t.Fatalf("second revision = rev %d cpu %s mem %s", second.TaskDefinition.Revision,
			aws.ToString(second.TaskDefinition.Cpu), aws.ToString(second.TaskDefinition.Memory))
	}

	cases := []struct {
		name   string
		mutate func(*ecs.RegisterTaskDefinitionInput)
		code   string
		parts  []string
	}{
		{"invalid pair lists valid memory", func(i *ecs.RegisterTaskDefinitionInput) { i.Memory = aws.String("4096") },
			"ClientException", []string{"512, 1024, 2048"}},
		{"invalid cpu lists valid cpus", func(i *ecs.RegisterTaskDefinitionInput) { i.Cpu = aws.String("300") },
			"ClientException", []string{"256", "16384"}},
		{"missing cpu", func(i *ecs.RegisterTaskDefinitionInput) { i.Cpu = nil }, "ClientException", []string{"cpu and memory are required"}},
		{"bridge network mode", func(i *ecs.RegisterTaskDefinitionInput) { i.NetworkMode = ecstypes.NetworkModeBridge },
			"ClientException", []string{"awsvpc"}},
		{"host network mode", func(i *ecs.RegisterTaskDefinitionInput) { i.NetworkMode = ecstypes.NetworkModeHost },
			"ClientException", []string{"awsvpc"}},
		{"EC2 compatibility", func(i *ecs.RegisterTaskDefinitionInput) {
			i.RequiresCompatibilities = []ecstypes.Compatibility{ecstypes.CompatibilityEc2}
		}, "ClientException", []string{"FARGATE"}},
		{"privileged", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].Privileged = aws.Bool(true) },
			"ClientException", []string{"privileged"}},
		{"devices", func(i *ecs.RegisterTaskDefinitionInput) {
			i.ContainerDefinitions[0].LinuxParameters = &ecstypes.LinuxParameters{Devices: []ecstypes.Device{{HostPath: aws.String("/dev/kvm")}}}
		}, "ClientException", []string{"devices"}},
		{"added capability", func(i *ecs.RegisterTaskDefinitionInput) {
			i.ContainerDefinitions[0].LinuxParameters = &ecstypes.LinuxParameters{Capabilities: &ecstypes.KernelCapabilities{Add: []string{"NET_ADMIN"}}}
		}, "ClientException", []string{"NET_ADMIN", "SYS_PTRACE"}},
		{"links", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].Links = []string{"db"} },
			"ClientException", []string{"links"}},
		{"container memory above task", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].Memory = aws.Int32(1024) },
			"ClientException", []string{"512"}},
		{"container cpu above task", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].Cpu = 512 },
			"ClientException", []string{"512", "256"}},
		{"host volume", func(i *ecs.RegisterTaskDefinitionInput) {
			i.Volumes = []ecstypes.Volume{{Name: aws.String("v"), Host: &ecstypes.HostVolumeProperties{SourcePath: aws.String("/etc")}}}
		}, "ClientException", []string{"sourcePath"}},
		{"no image", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].Image = nil },
			"ClientException", []string{"image is required"}},
		{"eleven containers", func(i *ecs.RegisterTaskDefinitionInput) {
			for n := 0; n < 10; n++ {
				i.ContainerDefinitions = append(i.ContainerDefinitions, ecstypes.ContainerDefinition{
					Name: aws.String(fmt.Sprintf("c%d", n)), Image: aws.String("nginx")})
			}
		}, "InvalidParameterException", []string{"1 to 10"}},
		{"stop timeout too long", func(i *ecs.RegisterTaskDefinitionInput) { i.ContainerDefinitions[0].StopTimeout = aws.Int32(121) },
			"ClientException", []string{"1..120"}},
		{"bad family", func(i *ecs.RegisterTaskDefinitionInput) { i.Family = aws.String("no spaces") },
			"InvalidParameterException", []string{"family"}},
		{"ephemeral storage out of range", func(i *ecs.RegisterTaskDefinitionInput) {
			i.EphemeralStorage = &ecstypes.EphemeralStorage{SizeInGiB: 201}
		}, "InvalidParameterException", []string{"21..200"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mutate(in)
			_, err := e.ecs.RegisterTaskDefinition(c, in)
			wantAPIError(t, err, tc.code, tc.parts...)
		})
	}

	latest, err := e.ecs.DescribeTaskDefinition(c, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web")})
	if err != nil || latest.TaskDefinition.Revision != 2 {
		t.Fatalf("family alone must resolve to the latest revision: %+v %v", latest, err)
	}
	if _, err := e.ecs.DeregisterTaskDefinition(c, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String("web:2")}); err != nil {
		t.Fatal(err)
	}
	latest, err = e.ecs.DescribeTaskDefinition(c, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web")})
	if err != nil || latest.TaskDefinition.Revision != 1 {
		t.Fatalf("after deregistering web:2 the family resolves to web:1: %+v %v", latest, err)
	}
	_, err = e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String("web:2")})
	wantAPIError(t, err, "ClientException", "inactive")
	_, err = e.ecs.DescribeTaskDefinition(c, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web:9")})
	wantAPIError(t, err, "ClientException", "web:9")

	active, err := e.ecs.ListTaskDefinitions(c, &ecs.ListTaskDefinitionsInput{})
	if err != nil || len(active.TaskDefinitionArns) != 1 || !strings.HasSuffix(active.TaskDefinitionArns[0], "web:1") {
		t.Fatalf("ListTaskDefinitions = %v %v", active, err)
	}
	inactive, err := e.ecs.ListTaskDefinitions(c, &ecs.ListTaskDefinitionsInput{Status: ecstypes.TaskDefinitionStatusInactive})
	if err != nil || len(inactive.TaskDefinitionArns) != 1 || !strings.HasSuffix(inactive.TaskDefinitionArns[0], "web:2") {
		t.Fatalf("ListTaskDefinitions INACTIVE = %v %v", inactive, err)
	}
	fams, err := e.ecs.ListTaskDefinitionFamilies(c, &ecs.ListTaskDefinitionFamiliesInput{})
	if err != nil || len(fams.Families) != 1 || fams.Families[0] != "web" {
		t.Fatalf("ListTaskDefinitionFamilies = %v %v", fams, err)
	}
}

// recordStatuses records every lastStatus written for each task from now
// on; the function it returns gives one task's, in order. It is called
// before the task is created: watching only once RunTask has returned
// missed the first changes when the controller was quicker than the test
// (under load, "stored statuses [ACTIVATING RUNNING ...]" without PENDING).
func (e *env) recordStatuses() func(id string) []string {
	c, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	_, rev, err := e.st.List(c, "tasks/")
	if err != nil {
		e.t.Fatal(err)
	}
	ch, err := e.st.Watch(c, "tasks/", rev)
	if err != nil {
		e.t.Fatal(err)
	}
	seen := make(chan map[string][]string, 1)
	seen <- map[string][]string{}
	go func() {
		for ev := range ch {
			var t task.Task
			if json.Unmarshal(ev.KV.Value, &t) != nil {
				continue
			}
			id := strings.TrimPrefix(ev.KV.Key, "tasks/")
			m := <-seen
			if s := m[id]; len(s) == 0 || s[len(s)-1] != string(t.LastStatus) {
				m[id] = append(s, string(t.LastStatus))
			}
			seen <- m
		}
	}()
	return func(id string) []string {
		m := <-seen
		seen <- m
		return append([]string(nil), m[id]...)
	}
}

func TestTaskLifecycleRunAndStop(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := ctx(t)
	def := e.register("svc", "256", "512", "sleep", "1000")
	statuses := e.recordStatuses()
	out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), StartedBy: aws.String("test"),
		Tags: []ecstypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}},
		Overrides: &ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"),
			Environment: []ecstypes.KeyValuePair{{Name: aws.String("MODE"), Value: aws.String("test")}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	created := out.Tasks[0]
	arn := *created.TaskArn
	if aws.ToString(created.LastStatus) != "PROVISIONING" || aws.ToString(created.DesiredStatus) != "RUNNING" {
		t.Fatalf("a new task is PROVISIONING/RUNNING, got %s/%s", aws.ToString(created.LastStatus), aws.ToString(created.DesiredStatus))
	}
	id := arn[strings.LastIndex(arn, "/")+1:]
	running := e.waitStatus(arn, "RUNNING")
	if running.StartedAt == nil || running.PullStartedAt == nil || running.PullStoppedAt == nil || running.ConnectivityAt == nil {
		t.Errorf("a RUNNING task has startedAt, pullStartedAt, pullStoppedAt and connectivityAt: %+v", running)
	}
	if aws.ToString(running.Containers[0].LastStatus) != "RUNNING" {
		t.Errorf("container status %s, want RUNNING", aws.ToString(running.Containers[0].LastStatus))
	}
	if aws.ToString(running.StartedBy) != "test" || len(running.Overrides.ContainerOverrides) != 1 {
		t.Errorf("startedBy/overrides not kept: %+v", running)
	}
	runtimeAttr := ""
	for _, a := range running.Attributes {
		if aws.ToString(a.Name) == "vessel:runtime" {
			runtimeAttr = aws.ToString(a.Value)
		}
	}
	if runtimeAttr != "sim" {
		t.Errorf("the task's runtime attribute is %q, want sim", runtimeAttr)
	}
	_, err = e.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String(id), Reason: aws.String(strings.Repeat("x", 256))})
	wantAPIError(t, err, "InvalidParameterException", "255")
	stop, err := e.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("done testing")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(stop.Task.DesiredStatus) != "STOPPED" {
		t.Fatalf("StopTask must set desiredStatus STOPPED, got %s", aws.ToString(stop.Task.DesiredStatus))
	}
	stopped := e.waitStatus(arn, "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeUserInitiated || aws.ToString(stopped.StoppedReason) != "done testing" {
		t.Errorf("stopCode %s reason %q, want UserInitiated / done testing", stopped.StopCode, aws.ToString(stopped.StoppedReason))
	}
	if code := stopped.Containers[0].ExitCode; code == nil || *code != 143 {
		t.Errorf("a sleeping container stopped by SIGTERM exits 143, got %v", code)
	}
	for name, ts := range map[string]*time.Time{"stoppingAt": stopped.StoppingAt, "executionStoppedAt": stopped.ExecutionStoppedAt, "stoppedAt": stopped.StoppedAt} {
		if ts == nil {
			t.Errorf("%s missing on a STOPPED task", name)
		}
	}
	if !stopped.StoppingAt.Before(*stopped.StoppedAt) && !stopped.StoppingAt.Equal(*stopped.StoppedAt) {
		t.Errorf("stoppingAt %v after stoppedAt %v", stopped.StoppingAt, stopped.StoppedAt)
	}
	// Every state of the lifecycle was stored, in order, but ACTIVATING:
	// a task that starts within the agent's report delay has its ACTIVATING
	// report sent with RUNNING, in one write (TestTaskTakesThreeWritesToRunning).
	want := []string{"PROVISIONING", "PENDING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := statuses(id); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stored statuses %v, want %v", got, want)
		}
		return nil
	})
	// Stopping again changes nothing.
	again, err := e.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String(arn), Reason: aws.String("again")})
	if err != nil || aws.ToString(again.Task.StoppedReason) != "done testing" {
		t.Fatalf("a second StopTask must keep the first reason: %v %v", again, err)
	}
}

func TestEssentialContainerExitStopsTask(t *testing.T) {
	e := newEnv(t, envOptions{})
	def := e.register("job", "256", "512", "sh", "-c", "sleep 0.2; exit 3")
	arn := e.run(def)
	stopped := e.waitStatus(arn, "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeEssentialContainerExited {
		t.Errorf("stopCode %s, want EssentialContainerExited", stopped.StopCode)
	}
	if code := stopped.Containers[0].ExitCode; code == nil || *code != 3 {
		t.Errorf("exit code %v, want 3", code)
	}
	if !strings.Contains(aws.ToString(stopped.StoppedReason), "Essential container") {
		t.Errorf("stoppedReason %q", aws.ToString(stopped.StoppedReason))
	}
}

func TestRunTaskErrors(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("x", "256", "512", "true")
	cases := []struct {
		name  string
		in    *ecs.RunTaskInput
		code  string
		parts []string
	}{
		{"count 11", &ecs.RunTaskInput{TaskDefinition: aws.String(def), Count: aws.Int32(11)}, "InvalidParameterException", []string{"1 to 10"}},
		{"count 0", &ecs.RunTaskInput{TaskDefinition: aws.String(def), Count: aws.Int32(0)}, "InvalidParameterException", []string{"1 to 10"}},
		{"unknown cluster", &ecs.RunTaskInput{TaskDefinition: aws.String(def), Cluster: aws.String("ghost")}, "ClusterNotFoundException", []string{"ghost"}},
		{"unknown definition", &ecs.RunTaskInput{TaskDefinition: aws.String("nothere")}, "ClientException", []string{"nothere"}},
		{"EC2 launch type", &ecs.RunTaskInput{TaskDefinition: aws.String(def), LaunchType: ecstypes.LaunchTypeEc2}, "InvalidParameterException", []string{"FARGATE"}},
		{"unknown subnet", &ecs.RunTaskInput{TaskDefinition: aws.String(def), NetworkConfiguration: &ecstypes.NetworkConfiguration{
			AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"subnet-nope"}}}}, "InvalidParameterException", []string{"subnet-nope", "subnet-default"}},
		{"override to an invalid size", &ecs.RunTaskInput{TaskDefinition: aws.String(def), Overrides: &ecstypes.TaskOverride{Memory: aws.String("8192")}},
			"ClientException", []string{"512, 1024, 2048"}},
		{"override of a missing container", &ecs.RunTaskInput{TaskDefinition: aws.String(def), Overrides: &ecstypes.TaskOverride{
			ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("ghost")}}}}, "InvalidParameterException", []string{"ghost"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ecs.RunTask(c, tc.in)
			wantAPIError(t, err, tc.code, tc.parts...)
		})
	}
	_, err := e.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String("0123456789abcdef0123456789abcdef")})
	wantAPIError(t, err, "InvalidParameterException", "not found")
	// The SDK refuses to send an empty list itself, so send it by hand.
	status, code, msg := e.rawECS("DescribeTasks", `{"tasks":[]}`)
	if status != 400 || code != "InvalidParameterException" || !strings.Contains(msg, "1 to 100") {
		t.Fatalf("DescribeTasks with no tasks: %d %s %q", status, code, msg)
	}
	status, code, msg = e.rawECS("RegisterTaskDefinition", `{"family":"f","cpu":"256","memory":"512"}`)
	if status != 400 || code != "InvalidParameterException" || !strings.Contains(msg, "1 to 10") {
		t.Fatalf("RegisterTaskDefinition with no containers: %d %s %q", status, code, msg)
	}
	status, code, msg = e.rawECS("RunTask", `{"taskDefinition": 5}`)
	if status != 400 || code != "SerializationException" {
		t.Fatalf("RunTask with a malformed body: %d %s %q", status, code, msg)
	}
	status, code, msg = e.rawECS("LaunchRocket", `{}`)
	if status != 400 || code != "UnknownOperationException" || !strings.Contains(msg, "RunTask") {
		t.Fatalf("unknown operation: %d %s %q", status, code, msg)
	}
	desc, err := e.ecs.DescribeTasks(c, &ecs.DescribeTasksInput{Tasks: []string{"0123456789abcdef0123456789abcdef"}})
	if err != nil || len(desc.Failures) != 1 || aws.ToString(desc.Failures[0].Reason) != "MISSING" {
		t.Fatalf("DescribeTasks of an unknown task reports a MISSING failure: %+v %v", desc, err)
	}
	_, err = e.ecs.ListTasks(c, &ecs.ListTasksInput{DesiredStatus: "SLEEPING"})
	if err == nil {
		t.Fatal("ListTasks with a bad desiredStatus must fail")
	}
}

func TestListTasksFiltersAndPages(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	a := e.register("alpha", "256", "512", "true")
	b := e.register("beta", "256", "512", "true")
	var alphaARNs []string
	for i := 0; i < 3; i++ {
		out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(a), Count: aws.Int32(2), StartedBy: aws.String("me")})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range out.Tasks {
			alphaARNs = append(alphaARNs, *tk.TaskArn)
		}
	}
	betaARN := e.run(b)
	if _, err := e.ecs.StopTask(c, &ecs.StopTaskInput{Task: aws.String(betaARN)}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var token *string
	pages := 0
	for {
		out, err := e.ecs.ListTasks(c, &ecs.ListTasksInput{Family: aws.String("alpha"), MaxResults: aws.Int32(4), NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, arn := range out.TaskArns {
			if seen[arn] {
				t.Fatalf("task %s listed twice across pages", arn)
			}
			seen[arn] = true
		}
		if out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	if pages != 2 || len(seen) != 6 {
		t.Fatalf("6 alpha tasks over pages of 4: got %d tasks in %d pages", len(seen), pages)
	}
	for _, arn := range alphaARNs {
		if !seen[arn] {
			t.Errorf("alpha task %s not listed", arn)
		}
	}
	stopped, err := e.ecs.ListTasks(c, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatusStopped})
	if err != nil || len(stopped.TaskArns) != 1 || stopped.TaskArns[0] != betaARN {
		t.Fatalf("desiredStatus STOPPED lists the stopped beta task only: %v %v", stopped, err)
	}
	mine, err := e.ecs.ListTasks(c, &ecs.ListTasksInput{StartedBy: aws.String("me")})
	if err != nil || len(mine.TaskArns) != 6 {
		t.Fatalf("startedBy filter: %v %v", mine, err)
	}
	_, err = e.ecs.ListTasks(c, &ecs.ListTasksInput{MaxResults: aws.Int32(101)})
	wantAPIError(t, err, "InvalidParameterException", "1..100")
}

func TestPendingTimeoutStopsWithTaskFailedToStart(t *testing.T) {
	e := newEnv(t, envOptions{hostMilliCPU: 1000, hostMemoryMiB: 1024, pendingTimeout: 500 * time.Millisecond})
	def := e.register("big", "1024", "4096", "sleep", "1000")
	arn := e.run(def)
	pending := e.waitStatus(arn, "PENDING")
	if aws.ToString(pending.DesiredStatus) != "RUNNING" {
		t.Fatalf("a task waiting for capacity stays desired RUNNING")
	}
	stopped := e.waitStatus(arn, "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeTaskFailedToStart {
		t.Errorf("stopCode %s, want TaskFailedToStart", stopped.StopCode)
	}
	if r := aws.ToString(stopped.StoppedReason); !strings.Contains(r, "RESOURCE:MEMORY") {
		t.Errorf("stoppedReason %q must name the missing resource", r)
	}
}

func TestAllocationRatioLimitsPlacement(t *testing.T) {
	// 1 vCPU × 4.0 = 4 allocatable vCPU = 16 tasks of 0.25 vCPU; memory
	// 8 GiB × 1.0 = 16 tasks of 0.5 GiB. The 17th waits.
	e := newEnv(t, envOptions{hostMilliCPU: 1000, hostMemoryMiB: 8192})
	c := ctx(t)
	def := e.register("small", "256", "512", "sleep", "1000")
	var arns []string
	for i := 0; i < 2; i++ {
		out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Count: aws.Int32(9)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range out.Tasks {
			arns = append(arns, *tk.TaskArn)
		}
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		out, err := e.ecs.DescribeTasks(c, &ecs.DescribeTasksInput{Tasks: arns})
		if err != nil {
			t.Fatal(err)
		}
		running, pending := 0, 0
		for _, tk := range out.Tasks {
			switch aws.ToString(tk.LastStatus) {
			case "RUNNING":
				running++
			case "PENDING":
				pending++
			}
		}
		if running > 16 {
			t.Fatalf("%d tasks running on a host that holds 16", running)
		}
		if running != 16 || pending != 2 {
			return fmt.Errorf("running %d pending %d, want 16 and 2", running, pending)
		}
		return nil
	})
}

func TestLostHostStopsItsTasks(t *testing.T) {
	e := newEnv(t, envOptions{hostTimeout: 700 * time.Millisecond})
	def := e.register("lost", "256", "512", "sleep", "1000")
	arn := e.run(def)
	e.waitStatus(arn, "RUNNING")
	e.stopAgent()
	stopped := e.waitStatus(arn, "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeTerminationNotice || !strings.Contains(aws.ToString(stopped.StoppedReason), "heartbeats") {
		t.Errorf("stopCode %s reason %q", stopped.StopCode, aws.ToString(stopped.StoppedReason))
	}
}

func TestStoppedTasksExpire(t *testing.T) {
	e := newEnv(t, envOptions{retention: 300 * time.Millisecond})
	def := e.register("brief", "256", "512", "exit", "0")
	arn := e.run(def)
	e.waitStatus(arn, "STOPPED")
	testutil.Eventually(t, 10*time.Second, func() error {
		out, err := e.ecs.DescribeTasks(ctx(t), &ecs.DescribeTasksInput{Tasks: []string{arn}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Tasks) != 0 || len(out.Failures) != 1 {
			return errors.New("a stopped task is still visible after its retention")
		}
		return nil
	})
}

func TestDependsOnAndHealthChecks(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := ctx(t)
	reg := func(family string, defs ...ecstypes.ContainerDefinition) string {
		out, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), ContainerDefinitions: defs})
		if err != nil {
			t.Fatal(err)
		}
		return *out.TaskDefinition.TaskDefinitionArn
	}
	dep := func(name string, cond ecstypes.ContainerCondition) []ecstypes.ContainerDependency {
		return []ecstypes.ContainerDependency{{ContainerName: aws.String(name), Condition: cond}}
	}
	// An init container that completes, then the app; a sidecar that must
	// be healthy first.
	good := reg("ordered",
		ecstypes.ContainerDefinition{Name: aws.String("init"), Image: aws.String("busybox"), Essential: aws.Bool(false),
			Command: []string{"sh", "-c", "sleep 0.3; exit 0"}},
		ecstypes.ContainerDefinition{Name: aws.String("sidecar"), Image: aws.String("busybox"), Essential: aws.Bool(false),
			Command: []string{"sleep", "1000"}, HealthCheck: &ecstypes.HealthCheck{Command: []string{"CMD", "true"},
				Interval: aws.Int32(5), Retries: aws.Int32(1)}},
		ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String("busybox"), Command: []string{"sleep", "1000"},
			DependsOn:   append(dep("init", ecstypes.ContainerConditionSuccess), dep("sidecar", ecstypes.ContainerConditionHealthy)...),
			HealthCheck: &ecstypes.HealthCheck{Command: []string{"CMD-SHELL", "exit 0"}, Interval: aws.Int32(5)}},
	)
	arn := e.run(good)
	testutil.Eventually(t, 30*time.Second, func() error {
		tk := e.describe(arn)
		byName := map[string]ecstypes.Container{}
		for _, ct := range tk.Containers {
			byName[aws.ToString(ct.Name)] = ct
		}
		if aws.ToString(byName["app"].LastStatus) == "RUNNING" {
			if code := byName["init"].ExitCode; code == nil || *code != 0 {
				t.Fatalf("app started before init completed: init exit %v", code)
			}
			if byName["sidecar"].HealthStatus != ecstypes.HealthStatusHealthy {
				t.Fatalf("app started before the sidecar was healthy: %s", byName["sidecar"].HealthStatus)
			}
			if byName["app"].HealthStatus == ecstypes.HealthStatusHealthy && tk.HealthStatus == ecstypes.HealthStatusHealthy {
				return nil
			}
		}
		if aws.ToString(tk.LastStatus) == "STOPPED" {
			t.Fatalf("task stopped: %s", aws.ToString(tk.StoppedReason))
		}
		return fmt.Errorf("app is not RUNNING and HEALTHY: %+v", byName)
	})

	// A dependency that fails its SUCCESS condition: the task cannot start.
	bad := reg("broken",
		ecstypes.ContainerDefinition{Name: aws.String("init"), Image: aws.String("busybox"), Essential: aws.Bool(false),
			Command: []string{"exit", "2"}},
		ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String("busybox"), Command: []string{"sleep", "1000"},
			DependsOn: dep("init", ecstypes.ContainerConditionSuccess)},
	)
	stopped := e.waitStatus(e.run(bad), "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeTaskFailedToStart || !strings.Contains(aws.ToString(stopped.StoppedReason), "init exited with code 2") {
		t.Fatalf("stopCode %s reason %q", stopped.StopCode, aws.ToString(stopped.StoppedReason))
	}
	// A non-essential container exiting leaves the task running. "after"
	// starts once helper has exited: the agent starts it only after it has
	// handled that exit, so when "after" runs the agent has decided.
	side := reg("sidecar-exits",
		ecstypes.ContainerDefinition{Name: aws.String("helper"), Image: aws.String("busybox"), Essential: aws.Bool(false), Command: []string{"exit", "1"}},
		ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String("busybox"), Command: []string{"sleep", "1000"}},
		ecstypes.ContainerDefinition{Name: aws.String("after"), Image: aws.String("busybox"), Essential: aws.Bool(false),
			Command: []string{"sleep", "1000"}, DependsOn: dep("helper", ecstypes.ContainerConditionComplete)},
	)
	sarn := e.run(side)
	testutil.Eventually(t, 20*time.Second, func() error {
		tk := e.describe(sarn)
		if aws.ToString(tk.LastStatus) == "STOPPED" {
			t.Fatalf("a non-essential exit stopped the task: %s", aws.ToString(tk.StoppedReason))
		}
		for _, ct := range tk.Containers {
			if aws.ToString(ct.Name) == "after" && aws.ToString(ct.LastStatus) == "RUNNING" {
				return nil
			}
		}
		return fmt.Errorf("the container after helper's exit is not running: task %s", aws.ToString(tk.LastStatus))
	})
	if tk := e.describe(sarn); aws.ToString(tk.LastStatus) != "RUNNING" || tk.DesiredStatus == nil || *tk.DesiredStatus != "RUNNING" {
		t.Fatalf("a non-essential exit stopped the task: %s, desired %s: %s", aws.ToString(tk.LastStatus), aws.ToString(tk.DesiredStatus), aws.ToString(tk.StoppedReason))
	}
}

func TestRegistryCredentialsResolution(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, func(c *server.Config) {
		c.RegistryCredentials = map[string]task.RegistryAuth{
			"private-registry":    {Username: "ci", Password: "s3cret"},
			"registry.example.io": {Username: "role", Password: "r0le"},
		}
	})
	c := ctx(t)
	reg := func(image string, rc *ecstypes.RepositoryCredentials) (string, error) {
		out, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{Family: aws.String("creds"),
			Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(image), RepositoryCredentials: rc}}})
		if err != nil {
			return "", err
		}
		return *out.TaskDefinition.TaskDefinitionArn, nil
	}
	stored := func(arn string) *task.RegistryAuth {
		var tk task.Task
		kv, err := e.st.Get(c, "tasks/"+arn[strings.LastIndex(arn, "/")+1:])
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(kv.Value, &tk)
		return tk.Containers[0].RegistryAuth
	}
	named, _ := reg("other.example.io/app:1", &ecstypes.RepositoryCredentials{CredentialsParameter: aws.String("arn:aws:secretsmanager:us-east-1:000000000000:secret:private-registry")})
	if a := stored(e.run(named)); a == nil || a.Username != "ci" {
		t.Fatalf("repositoryCredentials by name resolved to %+v", a)
	}
	byHost, _ := reg("registry.example.io/team/app:2", nil)
	arn := e.run(byHost)
	if a := stored(arn); a == nil || a.Username != "role" {
		t.Fatalf("the execution role's credentials for the registry host resolved to %+v", a)
	}
	// Never shown by the API.
	body := e.rawECSBody("DescribeTasks", `{"tasks":["`+arn+`"]}`)
	if !strings.Contains(body, arn) || strings.Contains(body, "r0le") || strings.Contains(body, "registryAuth") {
		t.Fatalf("DescribeTasks must describe the task without its registry credentials:\n%s", body)
	}
	none, _ := reg("docker.io/library/busybox", nil)
	if a := stored(e.run(none)); a != nil {
		t.Fatalf("an image of a registry with no credential got %+v", a)
	}
	unknown, _ := reg("busybox", &ecstypes.RepositoryCredentials{CredentialsParameter: aws.String("nope")})
	_, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(unknown)})
	wantAPIError(t, err, "ClientException", "nope", "private-registry")
}

func TestRuntimeChoice(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("rt", "256", "512", "true")
	_, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def),
		Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String("docker")}}})
	wantAPIError(t, err, "InvalidParameterException", "docker", "microvm, gvisor, runc, sim")
	if _, err := e.ecs.CreateCluster(c, &ecs.CreateClusterInput{ClusterName: aws.String("isolated"),
		Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String("gvisor")}}}); err != nil {
		t.Fatal(err)
	}
	runtimeOf := func(tk ecstypes.Task) string {
		for _, a := range tk.Attributes {
			if aws.ToString(a.Name) == "vessel:runtime" {
				return aws.ToString(a.Value)
			}
		}
		return ""
	}
	out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Cluster: aws.String("isolated")})
	if err != nil || runtimeOf(out.Tasks[0]) != "gvisor" {
		t.Fatalf("the cluster's default runtime: %v %+v", err, out)
	}
	out, err = e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Cluster: aws.String("isolated"),
		Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String("microvm")}}})
	if err != nil || runtimeOf(out.Tasks[0]) != "microvm" {
		t.Fatalf("RunTask's tag wins over the cluster's: %v %+v", err, out)
	}
}
