package server_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/testenv"
)

// syncLog collects the server's log lines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keyEnv is an env whose keys live in a keyring on the store, as in
// `vessel server`, with the server's log kept.
type keyEnv struct {
	*env
	log   *syncLog
	admin *agentproto.Client
	ring  *keyring.Keyring
}

func newKeyEnv(t *testing.T, configure ...func(*server.Config)) *keyEnv {
	t.Helper()
	logs := &syncLog{}
	var r *keyring.Keyring
	e := newEnvWith(t, envOptions{}, func(cfg *server.Config) {
		sealer, _, err := auth.LoadMasterKey(filepath.Join(t.TempDir(), auth.MasterKeyFile), true)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ring, err := keyring.New(ctx, keyring.Config{Store: cfg.Store, Sealer: sealer, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range cfg.Keys {
			if err := ring.Put(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() { ring.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		cfg.Keyring, r = ring, ring
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, c := range configure {
			c(cfg)
		}
	})
	return &keyEnv{env: e, log: logs, admin: e.vesselClient(e.key), ring: r}
}

func (e *env) vesselClient(k auth.Key) *agentproto.Client {
	e.t.Helper()
	c, err := agentproto.NewClient(e.url, k, "us-east-1")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *keyEnv) create(name, policy string, allow ...string) auth.Key {
	e.t.Helper()
	c, err := e.admin.CreateCredential(ctx(e.t), agentproto.CreateCredentialRequest{Name: name, Policy: policy, Allow: allow})
	if err != nil {
		e.t.Fatalf("CreateCredential %s: %v", name, err)
	}
	if c.SecretAccessKey == "" || c.Name != name {
		e.t.Fatalf("CreateCredential answered %+v", c)
	}
	return auth.Key{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}
}

// apiErr returns the AWS error code, message and HTTP status of err.
func apiErr(t *testing.T, err error) (string, string, int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an AWS API error, got %v", err)
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), ae.ErrorMessage(), status
}

// wantDenied checks err is AWS's AccessDeniedException for action, with
// the protocol's HTTP status and AWS's message.
func wantDenied(t *testing.T, err error, user, action string, status int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s by %s: allowed, want AccessDeniedException", action, user)
	}
	code, msg, got := apiErr(t, err)
	want := "User: arn:aws:iam::000000000000:user/" + user + " is not authorized to perform: " + action + " on resource: "
	if code != "AccessDeniedException" || got != status || !strings.HasPrefix(msg, want) ||
		!strings.HasSuffix(msg, " because no identity-based policy allows the "+action+" action") {
		t.Fatalf("%s by %s: %s (HTTP %d) %q\nwant AccessDeniedException (HTTP %d) %q...", action, user, code, got, msg, status, want)
	}
}

func TestPolicies(t *testing.T) {
	e := newKeyEnv(t)
	def := e.register("web", "256", "512", "sleep", "1")
	c := ctx(t)

	// admin: everything, key management included.
	e.run(def)
	if _, err := e.admin.ListCredentials(c); err != nil {
		t.Fatalf("admin ListCredentials: %v", err)
	}

	// operator: runs tasks, but cannot manage keys nor speak the agent
	// protocol.
	op := e.create("ops", auth.PolicyOperator)
	opECS, opEKS := e.clients(op)
	if _, err := opECS.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def)}); err != nil {
		t.Fatalf("operator RunTask: %v", err)
	}
	if _, err := opEKS.CreateFargateProfile(c, &eks.CreateFargateProfileInput{ClusterName: aws.String("default"),
		FargateProfileName: aws.String("p"), PodExecutionRoleArn: aws.String("arn:aws:iam::000000000000:role/pods"),
		Selectors: []ekstypes.FargateProfileSelector{{Namespace: aws.String("default")}}}); err != nil {
		t.Fatalf("operator CreateFargateProfile: %v", err)
	}
	opClient := e.vesselClient(op)
	_, err := opClient.CreateCredential(c, agentproto.CreateCredentialRequest{Name: "sneaky", Policy: auth.PolicyAdmin})
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "User: arn:aws:iam::000000000000:user/ops is not authorized to perform: vessel:CreateCredential on resource: * because no identity-based policy allows the vessel:CreateCredential action") {
		t.Fatalf("operator CreateCredential: %v, want AccessDenied", err)
	}
	for name, call := range map[string]func() error{
		"ListCredentials":  func() error { _, err := opClient.ListCredentials(c); return err },
		"RotateCredential": func() error { _, err := opClient.RotateCredential(c, "ops"); return err },
		"DeleteCredential": func() error { return opClient.DeleteCredential(c, "ops") },
		"RegisterHost": func() error {
			return opClient.RegisterHost(c, agentproto.Host{ID: "evil", MilliCPU: 1000, MemoryMiB: 1024})
		},
	} {
		if err := call(); !errdefs.IsPermissionDenied(err) {
			t.Errorf("operator %s: %v, want permission denied", name, err)
		}
	}

	// read-only: lists and describes, runs nothing.
	ro := e.create("auditor", auth.PolicyReadOnly)
	roECS, roEKS := e.clients(ro)
	lt, err := roECS.ListTasks(c, &ecs.ListTasksInput{})
	if err != nil || len(lt.TaskArns) == 0 {
		t.Fatalf("read-only ListTasks: %v, %v", lt, err)
	}
	if _, err := roECS.DescribeTasks(c, &ecs.DescribeTasksInput{Tasks: lt.TaskArns}); err != nil {
		t.Fatalf("read-only DescribeTasks: %v", err)
	}
	if _, err := roEKS.ListFargateProfiles(c, &eks.ListFargateProfilesInput{ClusterName: aws.String("default")}); err != nil {
		t.Fatalf("read-only ListFargateProfiles: %v", err)
	}
	_, err = roECS.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String("web:1")})
	wantDenied(t, err, "auditor", "ecs:RunTask", http.StatusBadRequest)
	if _, msg, _ := apiErr(t, err); !strings.Contains(msg, "on resource: arn:aws:ecs:us-east-1:000000000000:task-definition/web:1 because") {
		t.Errorf("RunTask denial names no task definition: %q", msg)
	}
	_, err = roECS.StopTask(c, &ecs.StopTaskInput{Task: aws.String(lt.TaskArns[0])})
	wantDenied(t, err, "auditor", "ecs:StopTask", http.StatusBadRequest)
	_, err = roEKS.DeleteFargateProfile(c, &eks.DeleteFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("p")})
	wantDenied(t, err, "auditor", "eks:DeleteFargateProfile", http.StatusForbidden)
	if _, err := e.vesselClient(ro).CreateCredential(c, agentproto.CreateCredentialRequest{Name: "x"}); !errdefs.IsPermissionDenied(err) {
		t.Errorf("read-only CreateCredential: %v, want permission denied", err)
	}

	// custom: exactly the listed actions.
	cu := e.create("runner", "", "ecs:RunTask", "ecs:DescribeTasks")
	cuECS, cuEKS := e.clients(cu)
	out, err := cuECS.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def)})
	if err != nil {
		t.Fatalf("custom RunTask: %v", err)
	}
	if _, err := cuECS.DescribeTasks(c, &ecs.DescribeTasksInput{Tasks: []string{*out.Tasks[0].TaskArn}}); err != nil {
		t.Fatalf("custom DescribeTasks: %v", err)
	}
	_, err = cuECS.ListTasks(c, &ecs.ListTasksInput{})
	wantDenied(t, err, "runner", "ecs:ListTasks", http.StatusBadRequest)
	_, err = cuECS.StopTask(c, &ecs.StopTaskInput{Task: out.Tasks[0].TaskArn})
	wantDenied(t, err, "runner", "ecs:StopTask", http.StatusBadRequest)
	_, err = cuEKS.ListClusters(c, &eks.ListClustersInput{})
	wantDenied(t, err, "runner", "eks:ListClusters", http.StatusForbidden)

	// host: the agent protocol only.
	hk, _ := auth.NewKey()
	hk.Name, hk.Policy, hk.HostID = "host/h9", auth.PolicyHost, "h9"
	if err := e.ring.Put(c, hk); err != nil {
		t.Fatal(err)
	}
	hostECS, _ := e.clients(hk)
	_, err = hostECS.ListTasks(c, &ecs.ListTasksInput{})
	wantDenied(t, err, "host/h9", "ecs:ListTasks", http.StatusBadRequest)
	if err := e.vesselClient(hk).Heartbeat(c, "h9"); errdefs.IsPermissionDenied(err) {
		t.Errorf("host key Heartbeat: %v, want allowed by policy", err)
	}

	// The listing shows every key, never a secret.
	list, err := e.admin.ListCredentials(c)
	if err != nil || len(list) != 5 {
		t.Fatalf("ListCredentials = %d keys, %v; want 5", len(list), err)
	}
	for _, k := range list {
		if k.SecretAccessKey != "" {
			t.Errorf("ListCredentials shows the secret of %s", k.Name)
		}
	}
	assertNoSecretsLogged(t, e.log.String(), e.key, op, ro, cu, hk)
}

func assertNoSecretsLogged(t *testing.T, log string, keys ...auth.Key) {
	t.Helper()
	if !strings.Contains(log, "access key created") {
		t.Fatalf("the log has no key creation at all; is it captured?\n%s", log)
	}
	for _, k := range keys {
		if strings.Contains(log, k.SecretAccessKey) {
			t.Errorf("the server's log holds the secret of %s", k.AccessKeyID)
		}
	}
}

func TestRotateAndDelete(t *testing.T) {
	e := newKeyEnv(t)
	c := ctx(t)
	old := e.create("ci", auth.PolicyOperator)
	oldECS, _ := e.clients(old)
	if _, err := oldECS.ListClusters(c, &ecs.ListClustersInput{}); err != nil {
		t.Fatal(err)
	}
	rotated, err := e.admin.RotateCredential(c, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if rotated.AccessKeyID != old.AccessKeyID || rotated.SecretAccessKey == old.SecretAccessKey || rotated.Policy != auth.PolicyOperator || rotated.Name != "ci" {
		t.Fatalf("RotateCredential = %+v", rotated)
	}
	_, err = oldECS.ListClusters(c, &ecs.ListClustersInput{})
	if code, msg, status := apiErr(t, err); code != auth.CodeInvalidSignature || status != 403 || !strings.Contains(msg, "The request signature we calculated does not match") {
		t.Fatalf("old secret after rotation: %s %d %q", code, status, msg)
	}
	newKey := auth.Key{AccessKeyID: rotated.AccessKeyID, SecretAccessKey: rotated.SecretAccessKey}
	newECS, _ := e.clients(newKey)
	if _, err := newECS.ListClusters(c, &ecs.ListClustersInput{}); err != nil {
		t.Fatalf("new secret: %v", err)
	}

	// Delete by ID cuts the key off at once.
	if err := e.admin.DeleteCredential(c, old.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	_, err = newECS.ListClusters(c, &ecs.ListClustersInput{})
	if code, msg, status := apiErr(t, err); code != auth.CodeUnrecognizedClient || status != 400 || !strings.Contains(msg, "The security token included in the request is invalid") {
		t.Fatalf("deleted key: %s %d %q", code, status, msg)
	}
	if err := e.admin.DeleteCredential(c, "ci"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "vessel credentials list") {
		t.Fatalf("deleting a deleted key: %v", err)
	}

	// The last admin key stays.
	err = e.admin.DeleteCredential(c, e.key.AccessKeyID)
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "last admin key") || !strings.Contains(err.Error(), "--policy admin") {
		t.Fatalf("deleting the last admin key: %v", err)
	}
	second := e.create("admin2", auth.PolicyAdmin)
	if err := e.vesselClient(second).DeleteCredential(c, e.key.AccessKeyID); err != nil {
		t.Fatalf("deleting an admin key while another remains: %v", err)
	}
	if err := e.vesselClient(second).DeleteCredential(c, "admin2"); !errdefs.IsConflict(err) {
		t.Fatalf("deleting the last admin key (itself): %v", err)
	}
	assertNoSecretsLogged(t, e.log.String(), old, newKey, second)
}

func TestCreateCredentialValidation(t *testing.T) {
	e := newKeyEnv(t)
	e.create("taken", auth.PolicyReadOnly)
	for _, tc := range []struct {
		in   agentproto.CreateCredentialRequest
		kind error
		want string
	}{
		{agentproto.CreateCredentialRequest{Name: "a", Policy: "superuser"}, errdefs.ErrInvalidArgument, `policy "superuser" is not known: accepted policies are admin, operator, read-only, or a list of actions`},
		{agentproto.CreateCredentialRequest{Name: "a", Policy: auth.PolicyHost}, errdefs.ErrInvalidArgument, "host keys are made when a host joins"},
		{agentproto.CreateCredentialRequest{Name: "a", Policy: auth.PolicyCustom}, errdefs.ErrInvalidArgument, "at least one action"},
		{agentproto.CreateCredentialRequest{Name: "a", Allow: []string{"RunTask"}}, errdefs.ErrInvalidArgument, `"RunTask" is not of the form service:Action`},
		{agentproto.CreateCredentialRequest{Name: "a", Allow: []string{"s3:GetObject"}}, errdefs.ErrInvalidArgument, "accepted services: ecs, eks, vessel"},
		{agentproto.CreateCredentialRequest{Name: "a", Allow: []string{"vessel-agent:*"}}, errdefs.ErrInvalidArgument, "accepted services: ecs, eks, vessel"},
		{agentproto.CreateCredentialRequest{Name: "a", Allow: []string{"ecs:RunTasks"}}, errdefs.ErrInvalidArgument, `"ecs:RunTasks" matches no action Vessel serves; ecs actions: CreateCluster,`},
		{agentproto.CreateCredentialRequest{Name: "a", Policy: auth.PolicyOperator, Allow: []string{"ecs:RunTask"}}, errdefs.ErrInvalidArgument, "not both"},
		{agentproto.CreateCredentialRequest{Name: "no spaces"}, errdefs.ErrInvalidArgument, "1 to 64 letters"},
		{agentproto.CreateCredentialRequest{Name: "taken"}, errdefs.ErrAlreadyExists, "a key named taken already exists"},
	} {
		_, err := e.admin.CreateCredential(ctx(t), tc.in)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateCredential(%+v) = %v, want %v containing %q", tc.in, err, tc.kind, tc.want)
		}
	}
	// A created key without a policy is read-only.
	k, err := e.admin.CreateCredential(ctx(t), agentproto.CreateCredentialRequest{Name: "plain"})
	if err != nil || k.Policy != auth.PolicyReadOnly {
		t.Fatalf("default policy: %+v, %v", k, err)
	}
}

// TestAWSCLIReadOnlyCannotRunTask runs the real aws CLI with a read-only
// key.
func TestAWSCLIReadOnlyCannotRunTask(t *testing.T) {
	testenv.SkipShort(t, "the aws CLI")
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("the aws CLI is not installed at %s (%v)", cli, err)
	}
	e := newKeyEnv(t)
	e.register("web", "256", "512", "true")
	ro := e.create("auditor", auth.PolicyReadOnly)
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx(t), cli, append(args, "--endpoint-url", e.url, "--output", "json")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "AWS_ACCESS_KEY_ID=" + ro.AccessKeyID,
			"AWS_SECRET_ACCESS_KEY=" + ro.SecretAccessKey, "AWS_DEFAULT_REGION=us-east-1", "AWS_MAX_ATTEMPTS=1",
			"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_PAGER="}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("ecs", "list-tasks"); err != nil {
		t.Fatalf("aws ecs list-tasks with a read-only key: %v\n%s", err, out)
	}
	out, err := run("ecs", "run-task", "--task-definition", "web:1")
	want := "User: arn:aws:iam::000000000000:user/auditor is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:000000000000:task-definition/web:1 because no identity-based policy allows the ecs:RunTask action"
	if err == nil || !strings.Contains(out, "An error occurred (AccessDeniedException) when calling the RunTask operation") || !strings.Contains(out, want) {
		t.Fatalf("aws ecs run-task with a read-only key: %v\n%s\nwant %s", err, out, want)
	}
	t.Logf("aws CLI: %s", strings.TrimSpace(out))
}
