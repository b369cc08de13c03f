package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/testutil"
)

func (s *server) ecsClient() *ecs.Client {
	id, secret := s.keys()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.endpoint) })
}

// ecsClientRetrying is ecsClient with the SDK's standard retries, for
// benchmarks that poll a loaded host for minutes.
func (s *server) ecsClientRetrying() *ecs.Client {
	id, secret := s.keys()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 5,
		HTTPClient: awsclient.HTTPClient(nil)}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.endpoint) })
}

func registerDef(t testing.TB, c *ecs.Client, family, cpu, mem string, stopTimeout int32, cmd ...string) {
	t.Helper()
	cd := ecstypes.ContainerDefinition{Name: aws.String("app"), Image: aws.String("busybox"), Command: cmd}
	if stopTimeout > 0 {
		cd.StopTimeout = aws.Int32(stopTimeout)
	}
	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
		Cpu: aws.String(cpu), Memory: aws.String(mem), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{cd}})
	if err != nil {
		t.Fatalf("registering %s: %v", family, err)
	}
}

func runOne(t *testing.T, c *ecs.Client, family string) string {
	t.Helper()
	out, err := c.RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String(family)})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("running %s: %v %+v", family, err, out)
	}
	return *out.Tasks[0].TaskArn
}

func describeOne(t *testing.T, c *ecs.Client, arn string) ecstypes.Task {
	t.Helper()
	out, err := c.DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Tasks: []string{arn}})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("describing %s: %v %+v", arn, err, out)
	}
	return out.Tasks[0]
}

func waitFor(t *testing.T, c *ecs.Client, arn, status string, timeout time.Duration) ecstypes.Task {
	t.Helper()
	var tk ecstypes.Task
	testutil.Eventually(t, timeout, func() error {
		if tk = describeOne(t, c, arn); aws.ToString(tk.LastStatus) != status {
			return fmt.Errorf("task %s is %s, want %s (reason %q)", arn, aws.ToString(tk.LastStatus), status, aws.ToString(tk.StoppedReason))
		}
		return nil
	})
	return tk
}

// TestCrashAndRestart kills the server with SIGKILL while it holds tasks in
// every state, restarts it on the same data directory, and checks that
// every task is still there and ends consistently.
func TestCrashAndRestart(t *testing.T) {
	s := startServer(t, "--runtime", "sim", "--sim-create-delay", "3s")
	c := s.ecsClient()
	registerDef(t, c, "huge", "16384", "122880", 0, "sleep", "1000")
	registerDef(t, c, "service", "256", "512", 0, "sleep", "1000")
	registerDef(t, c, "exiter", "256", "512", 0, "sh", "-c", "sleep 1.5; exit 7")
	registerDef(t, c, "stubborn", "256", "512", 4, "sh", "-c", "trap '' TERM; while true; do sleep 1; done")
	registerDef(t, c, "done", "256", "512", 0, "exit", "0")

	pending := runOne(t, c, "huge")
	running := runOne(t, c, "service")
	stubborn := runOne(t, c, "stubborn")
	finished := runOne(t, c, "done")
	waitFor(t, c, running, "RUNNING", 20*time.Second)
	waitFor(t, c, stubborn, "RUNNING", 20*time.Second)
	stoppedBefore := waitFor(t, c, finished, "STOPPED", 20*time.Second)
	waitFor(t, c, pending, "PENDING", 5*time.Second)

	if _, err := c.StopTask(context.Background(), &ecs.StopTaskInput{Task: aws.String(stubborn)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, stubborn, "STOPPING", 10*time.Second)
	exiter := runOne(t, c, "exiter")
	waitFor(t, c, exiter, "RUNNING", 20*time.Second) // then exits 1.5 s later, while the server is down
	activating := runOne(t, c, "service")
	waitFor(t, c, activating, "ACTIVATING", 5*time.Second)
	fresh := runOne(t, c, "service") // probably still PROVISIONING or PENDING

	states := map[string]string{}
	for name, arn := range map[string]string{"pending": pending, "running": running, "stopping": stubborn,
		"stopped": finished, "exiter": exiter, "activating": activating, "fresh": fresh} {
		states[name] = aws.ToString(describeOne(t, c, arn).LastStatus)
	}
	t.Logf("states at the crash: %v", states)

	s.kill(syscall.SIGKILL)
	time.Sleep(2500 * time.Millisecond)
	s.start()

	// Every task is still known.
	for _, arn := range []string{pending, running, stubborn, finished, exiter, activating, fresh} {
		describeOne(t, c, arn)
	}
	// The exiter exited while nobody watched: its real exit code is reported.
	ex := waitFor(t, c, exiter, "STOPPED", 20*time.Second)
	if code := ex.Containers[0].ExitCode; code == nil || *code != 7 || ex.StopCode != ecstypes.TaskStopCodeEssentialContainerExited {
		t.Errorf("exiter: exit code %v stopCode %s, want 7 EssentialContainerExited", code, ex.StopCode)
	}
	// The stubborn task ignores SIGTERM: SIGKILL after its 4 s stop timeout.
	st := waitFor(t, c, stubborn, "STOPPED", 30*time.Second)
	if code := st.Containers[0].ExitCode; code == nil || *code != 137 || st.StopCode != ecstypes.TaskStopCodeUserInitiated {
		t.Errorf("stubborn: exit code %v stopCode %s, want 137 UserInitiated", code, st.StopCode)
	}
	waitFor(t, c, activating, "RUNNING", 20*time.Second)
	waitFor(t, c, fresh, "RUNNING", 20*time.Second)
	if r := describeOne(t, c, running); aws.ToString(r.LastStatus) != "RUNNING" || aws.ToString(r.DesiredStatus) != "RUNNING" {
		t.Errorf("a running task survived the crash as %s/%s", aws.ToString(r.LastStatus), aws.ToString(r.DesiredStatus))
	}
	if p := describeOne(t, c, pending); aws.ToString(p.LastStatus) != "PENDING" {
		t.Errorf("a pending task is %s after the crash", aws.ToString(p.LastStatus))
	}
	after := describeOne(t, c, finished)
	if !after.StoppedAt.Equal(*stoppedBefore.StoppedAt) || after.Version != stoppedBefore.Version {
		t.Errorf("a stopped task changed across the crash: %v/%d → %v/%d", stoppedBefore.StoppedAt, stoppedBefore.Version, after.StoppedAt, after.Version)
	}
	if !strings.Contains(s.log.String(), "adopted sandbox") {
		t.Errorf("the restarted agent adopted no sandbox; log:\n%s", s.log)
	}
}
