package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/smithy-go"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
)

// frozen is a clock that does not move: buckets never refill, so that the
// tests count tokens instead of timing them.
func frozen(cfg *server.Config) {
	at := time.Now()
	cfg.Now = func() time.Time { return at }
}

// noRetryClients are SDK clients with key k that do not retry, so that a
// throttled call comes back as it was answered.
func (e *env) noRetryClients(k auth.Key) (*ecs.Client, *eks.Client) {
	cfg := aws.Config{Region: "us-east-1", Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""), HTTPClient: awsclient.HTTPClient(nil)}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(e.url) }),
		eks.NewFromConfig(cfg, func(o *eks.Options) { o.BaseEndpoint = aws.String(e.url) })
}

// wantThrottled checks that err is the AWS error code with message and HTTP
// status.
func wantThrottled(t *testing.T, err error, code, message string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || ae.ErrorMessage() != message {
		t.Fatalf("got %v, want %s %q", err, code, message)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("got %v, want HTTP %d", err, status)
	}
}

// signed sends a request signed with k for service and returns the
// response's status, headers and body.
func (e *env) signed(k auth.Key, service, method, path string, header http.Header, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for h, v := range header {
		req.Header[h] = v
	}
	if err := auth.SignRequest(context.Background(), req, k, "us-east-1", service, body, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// TestAPIThrottlingPerKey: each access key has its own bucket; an empty one
// is answered as AWS does, in each protocol's shape, and does not touch
// another key's or the hosts' agent protocol.
func TestAPIThrottlingPerKey(t *testing.T) {
	other, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, envOptions{noAgent: true}, func(cfg *server.Config) {
		frozen(cfg)
		cfg.Keys = append(cfg.Keys, other)
		cfg.APIRate, cfg.APIBurst = 1, 4
	})
	c := ctx(t)
	ecs1, eks1 := e.noRetryClients(e.key)
	for i := 0; i < 4; i++ {
		if _, err := ecs1.DescribeClusters(c, &ecs.DescribeClustersInput{}); err != nil {
			t.Fatalf("call %d of a burst of 4: %v", i+1, err)
		}
	}
	_, err = ecs1.DescribeClusters(c, &ecs.DescribeClustersInput{})
	wantThrottled(t, err, "ThrottlingException", "Rate exceeded", http.StatusBadRequest)
	// The SDK takes it for throttling, and backs off.
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
		t.Errorf("the SDK does not take %v for throttling", err)
	}
	_, err = eks1.ListClusters(c, &eks.ListClustersInput{})
	wantThrottled(t, err, "ThrottlingException", "Rate exceeded", http.StatusTooManyRequests)

	// The wire shapes: ECS JSON 1.1 with __type, EKS REST JSON with
	// X-Amzn-ErrorType, the agent protocol's LimitExceeded.
	status, h, body := e.signed(e.key, "ecs", http.MethodPost, "/", http.Header{
		"X-Amz-Target": {"AmazonEC2ContainerServiceV20141113.ListClusters"}, "Content-Type": {"application/x-amz-json-1.1"}}, []byte("{}"))
	var ecsErr map[string]string
	if err := json.Unmarshal(body, &ecsErr); err != nil || status != 400 || h.Get("X-Amzn-ErrorType") != "ThrottlingException" ||
		h.Get("Content-Type") != "application/x-amz-json-1.1" || len(ecsErr) != 2 ||
		ecsErr["__type"] != "ThrottlingException" || ecsErr["message"] != "Rate exceeded" {
		t.Errorf("ECS answer: %d %v %s", status, h, body)
	}
	status, h, body = e.signed(e.key, "eks", http.MethodGet, "/clusters", nil, nil)
	if status != 429 || h.Get("X-Amzn-ErrorType") != "ThrottlingException" || strings.TrimSpace(string(body)) != `{"message":"Rate exceeded"}` {
		t.Errorf("EKS answer: %d %v %s", status, h, body)
	}
	status, _, body = e.signed(e.key, "vessel", http.MethodGet, "/vessel/v1/clusters/default/fargate-profiles", nil, nil)
	if status != 429 || !strings.Contains(string(body), `"kind":"LimitExceeded"`) || !strings.Contains(string(body), "Rate exceeded") {
		t.Errorf("agent protocol answer on /vessel/v1: %d %s", status, body)
	}
	// The hosts' agent protocol is not throttled: the unknown host is
	// answered as such.
	status, _, body = e.signed(e.key, "vessel", http.MethodPost, "/agent/v1/hosts/nosuch/heartbeat", nil, []byte("{}"))
	if status == 429 || strings.Contains(string(body), "Rate exceeded") {
		t.Errorf("agent route throttled: %d %s", status, body)
	}

	// Another key has a bucket of its own.
	ecs2, _ := e.noRetryClients(other)
	for i := 0; i < 4; i++ {
		if _, err := ecs2.ListClusters(c, &ecs.ListClustersInput{}); err != nil {
			t.Fatalf("the other key, call %d: %v", i+1, err)
		}
	}
	_, err = ecs2.ListClusters(c, &ecs.ListClustersInput{})
	wantThrottled(t, err, "ThrottlingException", "Rate exceeded", http.StatusBadRequest)
}

// TestRunTaskLaunchBucket: RunTask's tasks take tokens of the launch bucket,
// the whole count or none, and the bridge's tasks draw from the same one.
func TestRunTaskLaunchBucket(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, func(cfg *server.Config) {
		frozen(cfg)
		cfg.LaunchRate, cfg.LaunchBurst = 20, 25
	})
	c := ctx(t)
	client, _ := e.noRetryClients(e.key)
	def := e.register("bucket", "256", "512", "sleep", "1000")
	run := func(n int32) (*ecs.RunTaskOutput, error) {
		return client.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Count: aws.Int32(n)})
	}
	for _, n := range []int32{10, 10} {
		if out, err := run(n); err != nil || len(out.Tasks) != int(n) {
			t.Fatalf("RunTask count %d with tokens left: %v", n, err)
		}
	}
	// 5 tokens left: a count of 10 launches nothing.
	_, err := run(10)
	wantThrottled(t, err, "ThrottlingException", "Rate exceeded", http.StatusBadRequest)
	list, err := client.ListTasks(c, &ecs.ListTasksInput{})
	if err != nil || len(list.TaskArns) != 20 {
		t.Fatalf("a throttled RunTask launched tasks: %d tasks, %v", len(list.TaskArns), err)
	}
	// Invalid input is refused for what it is, and takes no token.
	_, err = run(11)
	wantAPIError(t, err, "InvalidParameterException", "1 to 10")
	if out, err := run(4); err != nil || len(out.Tasks) != 4 {
		t.Fatalf("RunTask count 4 of the 5 tokens left: %v", err)
	}
	// The Kubernetes bridge's task takes the last token; the next is
	// refused with a kind the bridge retries on.
	pod := &task.Task{Family: "pod", CPUUnits: 256, MemoryMiB: 512,
		Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true}}}
	if _, err := e.srv.SubmitTask(c, pod); err != nil {
		t.Fatalf("SubmitTask with a token left: %v", err)
	}
	if _, err := e.srv.SubmitTask(c, pod); !errors.Is(err, errdefs.ErrLimitExceeded) || !strings.Contains(err.Error(), "Rate exceeded") {
		t.Fatalf("SubmitTask with an empty bucket: %v", err)
	}
	_, err = run(1)
	wantThrottled(t, err, "ThrottlingException", "Rate exceeded", http.StatusBadRequest)
}

// TestServiceThrottleEvent: a service whose tasks cannot start is throttled
// after ServiceThrottle.After failures, with ECS's event, and launches no
// more until the delay has passed.
func TestServiceThrottleEvent(t *testing.T) {
	e := newEnvWith(t, envOptions{hostMilliCPU: 1000, hostMemoryMiB: 1024, pendingTimeout: 200 * time.Millisecond},
		func(cfg *server.Config) { cfg.ServiceThrottle = server.ServiceThrottle{After: 2, Delay: time.Hour} })
	def := e.register("big", "1024", "4096", "sleep", "1000")
	e.createService("big", def, 1)
	s := e.waitService("big", "throttled", func(s ecstypes.Service) bool {
		return hasEvent(s, "(service big) is unable to consistently start tasks successfully.")
	})
	if s.PendingCount != 0 || s.RunningCount != 0 {
		t.Errorf("a throttled service launched again: %d pending, %d running", s.PendingCount, s.RunningCount)
	}
	if live := e.serviceTasks("big"); len(live) != 0 {
		t.Fatalf("%d tasks left running or pending", len(live))
	}
	list, err := e.ecs.ListTasks(ctx(t), &ecs.ListTasksInput{ServiceName: aws.String("big"), DesiredStatus: ecstypes.DesiredStatusStopped})
	if err != nil || len(list.TaskArns) != 2 {
		t.Fatalf("%v stopped tasks (%v), want the 2 that failed before the throttle", list, err)
	}
	out, err := e.ecs.DescribeTasks(ctx(t), &ecs.DescribeTasksInput{Tasks: list.TaskArns})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range out.Tasks {
		if tk.StopCode != ecstypes.TaskStopCodeTaskFailedToStart {
			t.Errorf("task %s: stop code %s", aws.ToString(tk.TaskArn), tk.StopCode)
		}
	}
	// A new deployment is not throttled: it launches at once.
	if _, err := e.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Service: aws.String("big"), ForceNewDeployment: true}); err != nil {
		t.Fatal(err)
	}
	e.waitService("big", "launching again", func(s ecstypes.Service) bool { return len(e.serviceTasks("big")) > 0 })
}
