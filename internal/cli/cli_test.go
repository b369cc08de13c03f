package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/sim"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/testutil"
)

// vesselEnv is a control plane and one sim host, in process.
type vesselEnv struct {
	url  string
	dir  string
	keys []auth.Key
}

var quiet = slog.New(slog.DiscardHandler)

func startVessel(t *testing.T) *vesselEnv {
	t.Helper()
	return startVesselWith(t, nil)
}

// startVesselWith is startVessel with the host's warm pools.
func startVesselWith(t *testing.T, warmPools map[string]int) *vesselEnv {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	dir := t.TempDir()
	srv, keys := newTestServer(t, dir)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	rt, err := sim.New(sim.Config{StateDir: filepath.Join(dir, "sim")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Host:         agentproto.Host{ID: "h1", MilliCPU: 4000, MemoryMiB: 8192, Runtimes: []string{"sim"}},
		ControlPlane: srv,
		Runtimes:     map[string]runtime.Runtime{"sim": rt},
		WarmPools:    warmPools,
		Logger:       quiet,
		// Pools reach the control plane with heartbeats.
		HeartbeatInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Run(ctx) }()
	go func() { defer wg.Done(); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &vesselEnv{url: hs.URL, dir: dir, keys: keys}
}

// newTestServer is a control plane keeping its store and keys in dir; it
// is not running (the caller runs it if it needs the controller).
func newTestServer(t *testing.T, dir string) (*server.Server, []auth.Key) {
	t.Helper()
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Keys: keys, ControllerInterval: 50 * time.Millisecond,
		Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return srv, keys
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// vessel runs one CLI command against e.
func (e *vesselEnv) vessel(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	err = e.vesselTo(&out, &errOut, args...)
	return out.String(), errOut.String(), err
}

func (e *vesselEnv) vesselTo(out, errOut *syncBuffer, args ...string) error {
	root := NewRootCommand()
	// Global flags go before any "--", after which all is the command.
	globals := []string{"--endpoint", e.url, "--data-dir", e.dir}
	at := slices.Index(args, "--")
	if at < 0 {
		at = len(args)
	}
	root.SetArgs(slices.Concat(args[:at], globals, args[at:]))
	root.SetOut(out)
	root.SetErr(errOut)
	return root.Execute()
}

// must runs a command that must succeed and returns its stdout.
func (e *vesselEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := e.vessel(t, args...)
	if err != nil {
		t.Fatalf("vessel %s: %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), describeError(err), out, errOut)
	}
	return out
}

func (e *vesselEnv) ecs(t *testing.T) *ecs.Client {
	t.Helper()
	g := &globals{endpoint: e.url, dataDir: e.dir, region: "us-east-1"}
	c, err := g.ecsClient()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var taskIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// taskIDFrom checks that out is one task ID line and returns the ID.
func taskIDFrom(t *testing.T, out string) string {
	t.Helper()
	id := strings.TrimSpace(out)
	if !taskIDRE.MatchString(id) {
		t.Fatalf("stdout %q is not one task ID", out)
	}
	return id
}

// rowOf returns the cells of the table row whose first cell is key.
func rowOf(out, key string) []string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == key {
			return f
		}
	}
	return nil
}

func TestRunAttachedExitsWithContainerCode(t *testing.T) {
	e := startVessel(t)
	out, errOut, err := e.vessel(t, "run", "alpine", "--", "exit", "3")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 3 {
		t.Fatalf("run returned %v, want exit code 3\nstderr:\n%s", err, errOut)
	}
	if out != "" {
		t.Errorf("an attached run prints only the task's output on stdout (none on sim), got %q", out)
	}
	// The task ID comes first on stderr, so that stdout holds the task's output only.
	id := taskIDFrom(t, strings.SplitN(errOut, "\n", 2)[0]+"\n")
	for _, want := range []string{id[:8] + "  PROVISIONING", id[:8] + "  RUNNING", id[:8] + "  STOPPED (EssentialContainerExited"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Index(errOut, "RUNNING") > strings.Index(errOut, "STOPPED") {
		t.Errorf("RUNNING printed after STOPPED:\n%s", errOut)
	}

	// Exit 0 is success, not an exitCode error.
	if _, errOut, err := e.vessel(t, "run", "alpine", "--", "exit", "0"); err != nil {
		t.Fatalf("run exit 0: %v\n%s", err, errOut)
	}
}

func TestRunDetachedPsStopDescribe(t *testing.T) {
	e := startVessel(t)
	c := e.ecs(t)
	id := taskIDFrom(t, e.must(t, "run", "-d", "alpine", "--", "sleep", "1000"))

	// ps shows it running at the default size on the sim runtime.
	row := rowOf(e.must(t, "ps"), id[:12])
	// TASK FAMILY STATUS DESIRED CPU MEMORY RUNTIME IP AGE EXIT
	if len(row) != 10 {
		t.Fatalf("ps row for %s = %q, want 10 cells", id, row)
	}
	if row[1] != "run-alpine:1" || row[2] != "RUNNING" || row[3] != "RUNNING" || row[4] != "0.25" ||
		row[5] != "0.5GB" || row[6] != "sim" || row[9] != "-" {
		t.Errorf("ps row = %q", row)
	}

	listDefs := func() []string {
		t.Helper()
		out, err := c.ListTaskDefinitions(context.Background(), &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String("run-alpine")})
		if err != nil {
			t.Fatal(err)
		}
		return out.TaskDefinitionArns
	}
	if defs := listDefs(); len(defs) != 1 {
		t.Fatalf("after one run: task definitions %v, want 1", defs)
	}
	// The same image and command reuse the revision...
	id2 := taskIDFrom(t, e.must(t, "run", "-d", "alpine", "--", "sleep", "1000"))
	if defs := listDefs(); len(defs) != 1 {
		t.Fatalf("after the same run: task definitions %v, want 1", defs)
	}
	// ...another command registers a new one, and so does another runtime tag.
	id3 := taskIDFrom(t, e.must(t, "run", "-d", "alpine", "--", "sleep", "2000"))
	if defs := listDefs(); len(defs) != 2 || !strings.HasSuffix(defs[1], "run-alpine:2") {
		t.Fatalf("after a changed command: task definitions %v, want revisions 1 and 2", defs)
	}
	e.must(t, "run", "-d", "--runtime", "sim", "alpine", "--", "sleep", "2000")
	if defs := listDefs(); len(defs) != 3 {
		t.Fatalf("after a changed runtime: task definitions %v, want 3", defs)
	}
	if row := rowOf(e.must(t, "ps"), id3[:12]); len(row) < 2 || row[1] != "run-alpine:2" {
		t.Errorf("ps row of the second revision's task = %q", row)
	}

	// ps is newest first.
	ps := e.must(t, "ps")
	if i, j := strings.Index(ps, id2[:12]), strings.Index(ps, id[:12]); i < 0 || j < 0 || i > j {
		t.Errorf("ps does not list %s before %s:\n%s", id2[:12], id[:12], ps)
	}

	// stop by a prefix, waiting for STOPPED.
	if out := e.must(t, "stop", id[:10], "--wait"); strings.TrimSpace(out) != id {
		t.Errorf("stop printed %q, want %s", out, id)
	}
	desc := e.must(t, "describe", id[:10])
	for _, re := range []string{`(?m)^Status:\s+STOPPED \(desired STOPPED\)$`, `(?m)^Stop code:\s+UserInitiated$`,
		`(?m)^\s+main\s+alpine\s+STOPPED\s+143\b`, `(?m)^Runtime:\s+sim$`, `(?m)^Host:\s+h1$`, `(?m)^Subnet:\s+subnet-default$`} {
		if !regexp.MustCompile(re).MatchString(desc) {
			t.Errorf("describe does not match %s:\n%s", re, desc)
		}
	}

	// describe -o json is the task object.
	var task map[string]any
	if err := json.Unmarshal([]byte(e.must(t, "describe", id, "-o", "json")), &task); err != nil {
		t.Fatalf("describe -o json: %v", err)
	}
	if task["lastStatus"] != "STOPPED" || task["stopCode"] != "UserInitiated" || !strings.HasSuffix(task["taskArn"].(string), id) {
		t.Errorf("describe -o json = %v", task)
	}

	// ps leaves the stopped task out; ps -a lists it with its exit code.
	if strings.Contains(e.must(t, "ps"), id[:12]) {
		t.Errorf("ps lists the stopped task %s", id)
	}
	row = rowOf(e.must(t, "ps", "-a"), id[:12])
	if len(row) != 10 || row[2] != "STOPPED" || row[9] != "143" {
		t.Errorf("ps -a row = %q", row)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(e.must(t, "ps", "-a", "-o", "json")), &list); err != nil {
		t.Fatalf("ps -o json: %v", err)
	}
	if len(list) != 4 {
		t.Errorf("ps -a -o json lists %d tasks, want 4", len(list))
	}
	for _, task := range list {
		if _, ok := task["taskArn"].(string); !ok {
			t.Errorf("ps -o json task without taskArn: %v", task)
		}
	}

	// An unknown prefix is an error that says so.
	if _, _, err := e.vessel(t, "describe", "zzzz"); err == nil || !strings.Contains(err.Error(), "zzzz") {
		t.Errorf("describe zzzz: %v", err)
	}
}

func TestRunRejectsInvalidSize(t *testing.T) {
	e := startVessel(t)
	_, _, err := e.vessel(t, "run", "--cpu", "0.25", "--memory", "4GB", "alpine")
	if err == nil {
		t.Fatal("run --cpu 0.25 --memory 4GB succeeded")
	}
	msg := describeError(err)
	if !strings.HasPrefix(msg, "ClientException: ") || !strings.Contains(msg, "512, 1024, 2048") {
		t.Errorf("error %q does not list the valid memory values", msg)
	}
	if _, _, err := e.vessel(t, "run", "--cpu", "lots", "alpine"); err == nil || !strings.Contains(err.Error(), "0.25") {
		t.Errorf("run --cpu lots: %v", err)
	}
}

func TestRunInterruptStopsTask(t *testing.T) {
	e := startVessel(t)
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- e.vesselTo(&out, &errOut, "run", "alpine", "--", "sleep", "1000") }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if s := errOut.String(); !strings.Contains(s, "RUNNING") {
			return fmt.Errorf("task did not reach RUNNING; stderr:\n%s", s)
		}
		return nil
	})
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not return after SIGINT; stderr:\n%s", errOut.String())
	}
	var ec exitCode
	if !errors.As(err, &ec) || ec != 143 {
		t.Fatalf("run returned %v, want exit code 143\nstderr:\n%s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "STOPPED (UserInitiated: stopped by vessel run: interrupted)") {
		t.Errorf("stderr lacks the stop:\n%s", errOut.String())
	}
}

func TestProfiles(t *testing.T) {
	e := startVessel(t)
	e.must(t, "profile", "create", "web", "--namespace", "default", "--labels", "app=web,tier=front",
		"--selector", "jobs:kind=batch", "--selector", "ops", "--tag", "team=a", "--wait")
	row := rowOf(e.must(t, "profile", "list"), "web")
	if len(row) != 7 || row[1] != "ACTIVE" || row[2] != "default{app=web,tier=front}" || row[3] != "jobs{kind=batch}" ||
		row[4] != "ops" || row[5] != "subnet-default" {
		t.Errorf("profile list row = %q", row)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(e.must(t, "profile", "describe", "web", "-o", "json")), &p); err != nil {
		t.Fatalf("profile describe -o json: %v", err)
	}
	sels, _ := p["selectors"].([]any)
	if p["fargateProfileName"] != "web" || len(sels) != 3 || p["tags"].(map[string]any)["team"] != "a" {
		t.Errorf("profile describe -o json = %v", p)
	}
	if d := e.must(t, "profile", "describe", "web"); !regexp.MustCompile(`(?m)^Selector 1:\s+namespace default, labels app=web,tier=front$`).MatchString(d) {
		t.Errorf("profile describe:\n%s", d)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(e.must(t, "profile", "list", "-o", "json")), &list); err != nil || len(list) != 1 {
		t.Errorf("profile list -o json: %v, %d profiles", err, len(list))
	}

	if out := e.must(t, "profile", "delete", "web", "--wait"); strings.TrimSpace(out) != "web" {
		t.Errorf("profile delete printed %q", out)
	}
	if rowOf(e.must(t, "profile", "list"), "web") != nil {
		t.Error("profile list still shows web after delete --wait")
	}
	_, _, err := e.vessel(t, "profile", "describe", "web")
	if err == nil || !strings.HasPrefix(describeError(err), "ResourceNotFoundException: ") {
		t.Errorf("describe of a deleted profile: %v", err)
	}
	if _, _, err := e.vessel(t, "profile", "create", "x"); err == nil {
		t.Error("profile create without a selector succeeded")
	}
}

func TestCredentials(t *testing.T) {
	e := startVessel(t)
	out := e.must(t, "credentials")
	if !strings.Contains(out, "export AWS_ACCESS_KEY_ID="+e.keys[0].AccessKeyID+"\n") ||
		!strings.Contains(out, "--endpoint-url "+e.url) {
		t.Errorf("credentials:\n%s", out)
	}
	_, _, err := (&vesselEnv{url: e.url, dir: t.TempDir()}).vessel(t, "credentials")
	if err == nil {
		t.Error("credentials with an empty data directory succeeded")
	}
}

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0.25", "256"}, {"1", "1024"}, {"16", "16384"}, {"2vCPU", "2048"}, {"0.1", ""}, {"x", ""}, {"-1", ""},
	} {
		got, err := parseVCPU(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("parseVCPU(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"0.5GB", "512"}, {"2GB", "2048"}, {"512", "512"}, {"3GiB", "3072"}, {"1024MiB", "1024"}, {"0.3GB", ""}, {"GB", ""},
	} {
		got, err := parseMemory(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("parseMemory(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestFamilyForImage(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:1.36":                      "run-busybox",
		"alpine":                            "run-alpine",
		"docker.io/library/nginx:1.27":      "run-nginx",
		"ghcr.io/acme/web@sha256:abcd":      "run-acme-web",
		"localhost:5000/app.v2:latest":      "run-app-v2",
		"registry.example.com:443/a/b/c:tg": "run-a-b-c",
	} {
		if got := familyForImage(in); got != want {
			t.Errorf("familyForImage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWireJSON(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	got, err := json.Marshal(wireJSON(&types.Task{
		TaskArn:    aws.String("arn:x"),
		CreatedAt:  &now,
		StopCode:   types.TaskStopCodeUserInitiated,
		Containers: []types.Container{{Name: aws.String("main"), ExitCode: aws.Int32(0)}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"containers":[{"exitCode":0,"name":"main"}],"createdAt":"2025-01-02T03:04:05Z","enableExecuteCommand":false,"stopCode":"UserInitiated","taskArn":"arn:x","version":0}`
	if string(got) != want {
		t.Errorf("wireJSON = %s\nwant %s", got, want)
	}
}
