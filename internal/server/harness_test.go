package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/sim"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/testutil"
)

// env is a control plane with one sim host, reached through the SDK clients.
type env struct {
	t      testing.TB
	srv    *server.Server
	st     *bolt.Store
	url    string
	key    auth.Key
	ecs    *ecs.Client
	eks    *eks.Client
	cancel context.CancelFunc
	// stopAgent stops the host agent alone (its host then goes silent).
	stopAgent context.CancelFunc
}

type envOptions struct {
	hostMilliCPU, hostMemoryMiB int64
	pendingTimeout              time.Duration
	retention                   time.Duration
	hostTimeout                 time.Duration
	noAgent                     bool
	// warmPool is the agent's sim warm pool size.
	warmPool int
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	return newEnvWith(t, o, nil)
}

// newEnvWith is newEnv with a hook to adjust the server's configuration.
func newEnvWith(t testing.TB, o envOptions, configure func(*server.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Keys: keys, ControllerInterval: 50 * time.Millisecond,
		PendingTimeout: o.pendingTimeout, StoppedTaskRetention: o.retention, HostTimeout: o.hostTimeout,
		Logger: quietLogger()}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	e := &env{t: t, srv: srv, st: st, url: hs.URL, key: keys[0], cancel: cancel, stopAgent: func() {}}
	agentDone := make(chan struct{})
	close(agentDone)
	if !o.noAgent {
		if o.hostMilliCPU == 0 {
			o.hostMilliCPU, o.hostMemoryMiB = 2000, 4096
		}
		rt, err := sim.New(sim.Config{StateDir: filepath.Join(dir, "sim")})
		if err != nil {
			t.Fatal(err)
		}
		a, err := agent.New(agent.Config{
			Host:         agentproto.Host{ID: "h1", MilliCPU: o.hostMilliCPU, MemoryMiB: o.hostMemoryMiB, Runtimes: []string{"sim"}},
			ControlPlane: srv, Runtimes: map[string]runtime.Runtime{"sim": rt}, HeartbeatInterval: 100 * time.Millisecond,
			WarmPools: map[string]int{"sim": o.warmPool}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithCancel(ctx)
		e.stopAgent = acancel
		agentDone = make(chan struct{})
		go func() { a.Run(actx); close(agentDone) }()
	}
	t.Cleanup(func() {
		cancel()
		<-done
		<-agentDone
		hs.Close()
		st.Close()
	})
	e.ecs, e.eks = e.clients(e.key)
	return e
}

// clients are the SDK's clients with key k, on awsclient's HTTP client as
// the vessel CLI's: without it a response was now and then cut short under
// load ("use of closed network connection", see package awsclient). They
// do not retry, so that a call that fails fails the test.
func (e *env) clients(k auth.Key) (*ecs.Client, *eks.Client) {
	cfg := aws.Config{Region: "us-east-1", RetryMaxAttempts: 1, HTTPClient: awsclient.HTTPClient(nil),
		Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(e.url) }),
		eks.NewFromConfig(cfg, func(o *eks.Options) { o.BaseEndpoint = aws.String(e.url) })
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// register registers a one-container task definition running cmd.
func (e *env) register(family, cpu, mem string, cmd ...string) string {
	e.t.Helper()
	out, err := e.ecs.RegisterTaskDefinition(ctx(e.t), &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family), Cpu: aws.String(cpu), Memory: aws.String(mem),
		NetworkMode: ecstypes.NetworkModeAwsvpc, RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"), Command: cmd}},
	})
	if err != nil {
		e.t.Fatalf("RegisterTaskDefinition: %v", err)
	}
	return *out.TaskDefinition.TaskDefinitionArn
}

func (e *env) run(def string) string {
	e.t.Helper()
	out, err := e.ecs.RunTask(ctx(e.t), &ecs.RunTaskInput{TaskDefinition: aws.String(def)})
	if err != nil {
		e.t.Fatalf("RunTask: %v", err)
	}
	if len(out.Tasks) != 1 {
		e.t.Fatalf("RunTask returned %d tasks, failures %v", len(out.Tasks), out.Failures)
	}
	return *out.Tasks[0].TaskArn
}

func (e *env) describe(arn string) ecstypes.Task {
	e.t.Helper()
	out, err := e.ecs.DescribeTasks(ctx(e.t), &ecs.DescribeTasksInput{Tasks: []string{arn}})
	if err != nil {
		e.t.Fatalf("DescribeTasks: %v", err)
	}
	if len(out.Tasks) != 1 {
		e.t.Fatalf("DescribeTasks(%s): failures %v", arn, out.Failures)
	}
	return out.Tasks[0]
}

// waitStatus polls until the task reaches status (or a later one, when
// orLater) and returns it.
func (e *env) waitStatus(arn, status string) ecstypes.Task {
	e.t.Helper()
	var t ecstypes.Task
	testutil.Eventually(e.t, 20*time.Second, func() error {
		if t = e.describe(arn); aws.ToString(t.LastStatus) != status {
			return fmt.Errorf("task %s is %s, want %s (stoppedReason %q)", arn, aws.ToString(t.LastStatus), status, aws.ToString(t.StoppedReason))
		}
		return nil
	})
	return t
}

// rawECS sends a signed ECS request by hand and returns the HTTP status,
// the error type and message (empty on success).
func (e *env) rawECS(op, body string) (int, string, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113."+op)
	if err := auth.SignRequest(context.Background(), req, e.key, "us-east-1", "ecs", []byte(body), time.Now()); err != nil {
		e.t.Fatal(err)
	}
	return doRaw(e.t, req)
}

// rawECSBody sends a signed ECS request by hand and returns the body of
// its successful answer.
func (e *env) rawECSBody(op, body string) string {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113."+op)
	if err := auth.SignRequest(context.Background(), req, e.key, "us-east-1", "ecs", []byte(body), time.Now()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("%s: HTTP %d: %s", op, resp.StatusCode, data)
	}
	return string(data)
}

func doRaw(t testing.TB, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	data, _ := io.ReadAll(resp.Body)
	json.Unmarshal(data, &out)
	code := resp.Header.Get("X-Amzn-ErrorType")
	if out.Type != "" && out.Type != code {
		t.Errorf("error body type %q differs from X-Amzn-ErrorType %q", out.Type, code)
	}
	return resp.StatusCode, code, out.Message
}

// quietLogger logs warnings and errors only, unless VESSEL_TEST_LOG=debug.
func quietLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("VESSEL_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
