package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

func (s *server) eksClient() *eks.Client {
	id, secret := s.keys()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	return eks.NewFromConfig(cfg, func(o *eks.Options) { o.BaseEndpoint = aws.String(s.endpoint) })
}

// snapshot is what the public API says of an installation, in the fields
// that a move of its store must not change.
type snapshot struct {
	Tasks    []string // arn status desired definition group
	Services []string // name status desired running definition deployments
	Events   map[string][]string
	Defs     []string
	Profiles []string // name status selectors
}

func takeSnapshot(t *testing.T, s *server) snapshot {
	t.Helper()
	ctx := context.Background()
	ec, kc := s.ecsClient(), s.eksClient()
	snap := snapshot{Events: map[string][]string{}}
	var arns []string
	for _, status := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		list, err := ec.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: status})
		if err != nil {
			t.Fatalf("ListTasks: %v", err)
		}
		arns = append(arns, list.TaskArns...)
	}
	if len(arns) > 0 {
		out, err := ec.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: arns})
		if err != nil {
			t.Fatalf("DescribeTasks: %v", err)
		}
		for _, tk := range out.Tasks {
			snap.Tasks = append(snap.Tasks, fmt.Sprintf("%s %s %s %s %s", aws.ToString(tk.TaskArn), aws.ToString(tk.LastStatus),
				aws.ToString(tk.DesiredStatus), aws.ToString(tk.TaskDefinitionArn), aws.ToString(tk.Group)))
		}
	}
	slices.Sort(snap.Tasks)
	svcs, err := ec.DescribeServices(ctx, &ecs.DescribeServicesInput{Services: []string{"websvc"}})
	if err != nil {
		t.Fatalf("DescribeServices: %v", err)
	}
	for _, sv := range svcs.Services {
		var deps []string
		for _, d := range sv.Deployments {
			deps = append(deps, aws.ToString(d.Id)+"="+aws.ToString(d.TaskDefinition))
		}
		snap.Services = append(snap.Services, fmt.Sprintf("%s %s desired=%d running=%d %s %v", aws.ToString(sv.ServiceName), aws.ToString(sv.Status),
			sv.DesiredCount, sv.RunningCount, aws.ToString(sv.TaskDefinition), deps))
		for _, ev := range sv.Events {
			snap.Events[aws.ToString(sv.ServiceName)] = append(snap.Events[aws.ToString(sv.ServiceName)], aws.ToString(ev.Id)+" "+aws.ToString(ev.Message))
		}
	}
	defs, err := ec.ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{})
	if err != nil {
		t.Fatalf("ListTaskDefinitions: %v", err)
	}
	snap.Defs = defs.TaskDefinitionArns
	profs, err := kc.ListFargateProfiles(ctx, &eks.ListFargateProfilesInput{ClusterName: aws.String("default")})
	if err != nil {
		t.Fatalf("ListFargateProfiles: %v", err)
	}
	for _, name := range profs.FargateProfileNames {
		p, err := kc.DescribeFargateProfile(ctx, &eks.DescribeFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String(name)})
		if err != nil {
			t.Fatalf("DescribeFargateProfile(%s): %v", name, err)
		}
		var sel []string
		for _, s := range p.FargateProfile.Selectors {
			sel = append(sel, fmt.Sprintf("%s%v", aws.ToString(s.Namespace), s.Labels))
		}
		snap.Profiles = append(snap.Profiles, fmt.Sprintf("%s %s %v", name, p.FargateProfile.Status, sel))
	}
	return snap
}

// TestStoreMigrateToEtcd fills a real installation (tasks, a service with
// its deployment and events, task definitions with revisions, a Fargate
// profile), migrates its stopped store into a three-member etcd, and starts
// the server again on etcd: the API answers as before.
func TestStoreMigrateToEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	etcdFlag := strings.Join(c.Endpoints(), ",")
	ctx := context.Background()

	s1 := startServer(t, "--runtime", "sim")
	ec, kc := s1.ecsClient(), s1.eksClient()
	registerDef(t, ec, "web", "256", "512", 0, "sleep", "3600")
	registerDef(t, ec, "web", "256", "512", 0, "sleep", "7200")
	registerDef(t, ec, "job", "256", "512", 0, "sleep", "3600")
	job := runOne(t, ec, "job")
	waitFor(t, ec, job, "RUNNING", 30*time.Second)
	if _, err := ec.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(job), Reason: aws.String("a stopped task to migrate")}); err != nil {
		t.Fatalf("StopTask: %v", err)
	}
	waitFor(t, ec, job, "STOPPED", 30*time.Second)
	if _, err := ec.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String("websvc"), TaskDefinition: aws.String("web:2"),
		DesiredCount: aws.Int32(2), LaunchType: ecstypes.LaunchTypeFargate}); err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	if _, err := kc.CreateFargateProfile(ctx, &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("web"),
		PodExecutionRoleArn: aws.String("arn:aws:iam::000000000000:role/pods"),
		Selectors:           []ekstypes.FargateProfileSelector{{Namespace: aws.String("default"), Labels: map[string]string{"app": "web"}}}}); err != nil {
		t.Fatalf("CreateFargateProfile: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var before snapshot
	for {
		before = takeSnapshot(t, s1)
		if len(before.Services) == 1 && strings.Contains(before.Services[0], "running=2") && len(before.Profiles) == 1 && strings.Contains(before.Profiles[0], " ACTIVE ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("installation not settled within 60s: %+v\nserver log:\n%s", before, s1.log)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(before.Tasks) != 3 || len(before.Defs) != 3 || len(before.Events["websvc"]) == 0 {
		t.Fatalf("before the migration: %+v, want 3 tasks, 3 task definitions and the service's events", before)
	}

	migrate := func() (string, string, int) {
		return s1.vesselWith(t.TempDir(), "", "", "", "store", "migrate", "--from", s1.dataDir, "--etcd", etcdFlag)
	}
	// A running server holds its store: refused, nothing copied.
	if out, errOut, code := migrate(); code == 0 || !strings.Contains(errOut, "is running") {
		t.Fatalf("migrate from a running server's data directory: exit %d, %s %s; want a refusal that says the server is running", code, out, errOut)
	}

	s1.kill(syscall.SIGTERM)
	out, errOut, code := migrate()
	if code != 0 {
		t.Fatalf("vessel store migrate: exit %d: %s %s", code, out, errOut)
	}
	m := regexp.MustCompile(`Copied (\d+) records`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || !strings.Contains(out, filepath.Join(s1.dataDir, "master.key")) {
		t.Fatalf("vessel store migrate said %q, want how many records it copied and the master key file to give every server", out)
	}
	t.Logf("migrate: %s", out)
	if out, errOut, code := migrate(); code == 0 || !strings.Contains(errOut, "already holds records") {
		t.Fatalf("second migrate into the same prefix: exit %d, %s %s; want a refusal", code, out, errOut)
	}

	// The same machine's server, now on etcd.
	s2 := &server{t: t, dataDir: s1.dataDir, addr: freeAddr(t),
		extra: []string{"--runtime", "sim", "--runtimes", "sim,runc", "--etcd", etcdFlag, "--encryption-key-file", filepath.Join(s1.dataDir, "master.key")}}
	s2.endpoint = "http://" + s2.addr
	s2.start()
	t.Cleanup(func() { s2.kill(syscall.SIGTERM) })
	// It does not use the bbolt file: the file is not locked.
	if b, err := bolt.Open(bolt.Config{Path: filepath.Join(s1.dataDir, "vessel.db"), Timeout: time.Second}); err != nil {
		t.Fatalf("the server on etcd holds the bbolt file: %v", err)
	} else {
		b.Close()
	}
	after := takeSnapshot(t, s2)
	if fmt.Sprint(after.Tasks) != fmt.Sprint(before.Tasks) {
		t.Errorf("DescribeTasks on etcd:\n%v\nbefore:\n%v", after.Tasks, before.Tasks)
	}
	if fmt.Sprint(after.Services) != fmt.Sprint(before.Services) {
		t.Errorf("DescribeServices on etcd:\n%v\nbefore:\n%v", after.Services, before.Services)
	}
	for _, ev := range before.Events["websvc"] {
		if !slices.Contains(after.Events["websvc"], ev) {
			t.Errorf("service event %q lost in the migration; on etcd: %v", ev, after.Events["websvc"])
		}
	}
	if fmt.Sprint(after.Defs) != fmt.Sprint(before.Defs) {
		t.Errorf("ListTaskDefinitions on etcd: %v, before: %v", after.Defs, before.Defs)
	}
	if fmt.Sprint(after.Profiles) != fmt.Sprint(before.Profiles) {
		t.Errorf("Fargate profiles on etcd: %v, before: %v", after.Profiles, before.Profiles)
	}
	// And it goes on working: a new task runs.
	ec2 := s2.ecsClient()
	waitFor(t, ec2, runOne(t, ec2, "job"), "RUNNING", 30*time.Second)
	if t.Failed() {
		t.Logf("server on etcd log:\n%s", s2.log)
	}
}
