package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/server/wiretest"
	"vessel.dev/vessel/internal/testutil"
)

// wireCall is one request of the conformance test and what it must get.
type wireCall struct {
	op   string // operation name in the model
	eks  bool   // EKS (REST-JSON) rather than ECS (JSON 1.1)
	body string // ECS: the JSON body; EKS: the body of a POST
	// method and path of an EKS request.
	method, path string
	// wantErr is the exception the answer must be; "" = success.
	wantErr string
	opts    wiretest.Options
	// key signs the request; the zero key signs with the server's key,
	// noSign sends it unsigned.
	key    *auth.Key
	noSign bool
}

// wireAnswer is what the server sent back.
type wireAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) send(c wireCall) wireAnswer {
	e.t.Helper()
	method, url, service := http.MethodPost, e.url+"/", "ecs"
	if c.eks {
		method, url, service = c.method, e.url+c.path, "eks"
	}
	var body []byte
	if c.body != "" {
		body = []byte(c.body)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if c.eks {
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
	} else {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113."+c.op)
	}
	key := e.key
	if c.key != nil {
		key = *c.key
	}
	if !c.noSign {
		if err := auth.SignRequest(context.Background(), req, key, "us-east-1", service, body, time.Now()); err != nil {
			e.t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return wireAnswer{resp.StatusCode, resp.Header, data}
}

// check sends c and checks the answer against every installed model of its
// service.
func (e *env) check(models map[bool][]*wiretest.Model, c wireCall) wireAnswer {
	return e.checkWith(models, nil, c)
}

// checkWith is check that also requires the empty lists and maps AWS's
// example answers show (examples: operation -> paths).
func (e *env) checkWith(models map[bool][]*wiretest.Model, examples map[bool]map[string][]string, c wireCall) wireAnswer {
	e.t.Helper()
	a := e.send(c)
	svc := "ECS"
	if c.eks {
		svc = "EKS"
	}
	what := svc + " " + c.op
	if c.wantErr == "" {
		if a.status != http.StatusOK {
			e.t.Errorf("%s: HTTP %d, want 200: %s", what, a.status, a.body)
			return a
		}
		want := "application/x-amz-json-1.1"
		if c.eks {
			want = "application/json"
		}
		if ct := a.header.Get("Content-Type"); ct != want {
			e.t.Errorf("%s: Content-Type %q, want %q", what, ct, want)
		}
	} else if got := a.header.Get("X-Amzn-ErrorType"); got != c.wantErr {
		e.t.Errorf("%s: answered HTTP %d %q, want %s: %s", what, a.status, got, c.wantErr, a.body)
		return a
	}
	for _, m := range models[c.eks] {
		var err error
		if c.wantErr == "" {
			opts := c.opts
			opts.MustBePresent = append(slices.Clone(opts.MustBePresent), examples[c.eks][c.op]...)
			err = m.CheckOutput(c.op, a.body, opts)
		} else {
			err = m.CheckError(c.op, a.status, a.header, a.body, c.opts)
		}
		if err != nil {
			e.t.Errorf("%s against %s:\n%v\nbody: %s", what, m, err, a.body)
		}
	}
	return a
}

// newerMembers are members Vessel sends that the aws CLI v2's (older) model
// does not know; a newer model (aws CLI v1's, where installed) checks them.
var newerMembers = map[string]string{
	"FargateProfile.health": "in the EKS model since 2023; Debian's aws CLI v2 model predates it",
}

// eksUnlisted are exceptions EKS answers although its model does not list
// them for the operation: CreateFargateProfile answers a duplicate name with
// ResourceInUseException (HTTP 409, "A Fargate Profile already exists with
// this name in this cluster.") and an unknown cluster with
// ResourceNotFoundException (404), as every other per-cluster operation
// does.
var eksUnlisted = map[string][]string{
	"CreateFargateProfile": {"ResourceInUseException", "ResourceNotFoundException"},
}

// installedExamples are the empty lists and maps of AWS's example answers
// shipped with each installed aws CLI, per service (EKS: true) and
// operation.
func installedExamples(t *testing.T, models map[bool][]*wiretest.Model) map[bool]map[string][]string {
	t.Helper()
	out := map[bool]map[string][]string{}
	for eks, svc := range map[bool]string{false: "ecs", true: "eks"} {
		out[eks] = map[string][]string{}
		for _, cli := range []string{wiretest.CLIv2, wiretest.CLIv1()} {
			if cli == "" {
				continue
			}
			ex, err := wiretest.Examples(cli, svc, models[eks][0])
			if err != nil {
				t.Fatal(err)
			}
			for op, paths := range ex {
				for _, p := range paths {
					if !slices.Contains(out[eks][op], p) {
						out[eks][op] = append(out[eks][op], p)
					}
				}
			}
		}
	}
	return out
}

func installedModels(t *testing.T) map[bool][]*wiretest.Model {
	t.Helper()
	out := map[bool][]*wiretest.Model{}
	for _, svc := range []struct {
		name string
		eks  bool
	}{{"ecs", false}, {"eks", true}} {
		models, note, err := wiretest.Installed(svc.name)
		if err != nil {
			t.Fatal(err)
		}
		if note != "" {
			t.Log(note)
		}
		out[svc.eks] = models
	}
	return out
}

// TestWireConformance drives every ECS and EKS operation Vessel serves, with
// a successful request, the empty-list answers and the errors the model
// names, and checks each answer against the service models that ship with
// the installed aws CLIs.
func TestWireConformance(t *testing.T) {
	e := newEnv(t, envOptions{})
	models := installedModels(t)
	examples := installedExamples(t, models)
	served := map[bool]map[string]bool{false: {}, true: {}}
	for _, op := range e.srv.ECSOperations() {
		served[false][op] = false
	}
	for _, op := range e.srv.EKSOperations() {
		served[true][op] = false
	}
	// Every served operation must be in the models: a name Vessel made up
	// would never be sent by an AWS client.
	for eks, ops := range served {
		for op := range ops {
			for _, m := range models[eks] {
				if _, err := m.Operation(op); err != nil {
					t.Errorf("Vessel serves %s: %v", op, err)
				}
			}
		}
	}
	// outcomes records, per operation, whether a success and an error were
	// checked.
	type outcome struct{ ok, err bool }
	outcomes := map[string]*outcome{}
	run := func(c wireCall) wireAnswer {
		t.Helper()
		key := c.op
		if c.eks {
			key = "eks:" + c.op
		}
		if outcomes[key] == nil {
			outcomes[key] = &outcome{}
		}
		if c.wantErr == "" {
			outcomes[key].ok = true
		} else {
			outcomes[key].err = true
		}
		served[c.eks][c.op] = true
		return e.checkWith(models, examples, c)
	}
	ecsOK := func(op, body string, opts ...wiretest.Options) wireAnswer {
		t.Helper()
		c := wireCall{op: op, body: body}
		if len(opts) > 0 {
			c.opts = opts[0]
		}
		return run(c)
	}
	ecsErr := func(op, body, want string) {
		t.Helper()
		run(wireCall{op: op, body: body, wantErr: want})
	}
	eksCall := func(op, method, path, body, want string) wireAnswer {
		t.Helper()
		return run(wireCall{op: op, eks: true, method: method, path: path, body: body, wantErr: want,
			opts: wiretest.Options{Newer: newerMembers, UnlistedErrors: eksUnlisted[op]}})
	}
	field := func(a wireAnswer, path ...string) any {
		t.Helper()
		var v any
		if err := json.Unmarshal(a.body, &v); err != nil {
			t.Fatalf("%s: %v", a.body, err)
		}
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				if len(x) == 0 {
					t.Fatalf("%s: %v is empty", a.body, path)
				}
				v = x[0]
			}
		}
		return v
	}

	// Empty answers: lists present as [].
	ecsOK("ListClusters", `{}`)
	ecsOK("CreateCluster", `{"clusterName": "wire"}`)
	for _, c := range []struct{ op, body, member string }{
		{"ListTasks", `{"cluster": "wire"}`, "taskArns"},
		{"ListServices", `{"cluster": "wire"}`, "serviceArns"},
		{"ListTaskDefinitions", `{}`, "taskDefinitionArns"},
		{"ListTaskDefinitionFamilies", `{}`, "families"},
	} {
		a := ecsOK(c.op, c.body)
		if got := field(a, c.member); got == nil || len(got.([]any)) != 0 {
			t.Errorf("%s on nothing: %s, want %q: []", c.op, a.body, c.member)
		}
	}
	a := ecsOK("DescribeTasks", `{"cluster": "wire", "tasks": ["0123456789abcdef0123456789abcdef"]}`)
	if string(bytes.TrimSpace(a.body)) == "" || field(a, "tasks") == nil || field(a, "failures", "0", "reason") != "MISSING" {
		t.Errorf("DescribeTasks of an unknown task: %s, want tasks [] and a MISSING failure", a.body)
	}
	ecsOK("DescribeServices", `{"cluster": "wire", "services": ["ghost"]}`)
	ecsOK("DescribeClusters", `{"clusters": ["ghost"]}`)

	// Clusters.
	ecsOK("DescribeClusters", `{"clusters": ["wire", "default"], "include": ["TAGS", "SETTINGS", "STATISTICS"]}`)
	ecsOK("CreateCluster", `{"clusterName": "tagged", "tags": [{"key": "team", "value": "a"}], "settings": [{"name": "containerInsights", "value": "enabled"}]}`)
	ecsErr("CreateCluster", `{"clusterName": "bad name!"}`, "InvalidParameterException")
	ecsErr("DescribeClusters", `{"clusters": ["a"], "include": ["NOPE"]}`, "InvalidParameterException")
	ecsErr("ListClusters", `{"maxResults": 0}`, "InvalidParameterException")

	// Task definitions.
	taskDef := `{"family": "wire", "cpu": "256", "memory": "512", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
		"containerDefinitions": [{"name": "app", "image": "busybox", "command": ["sleep", "600"], "essential": true,
		"environment": [{"name": "A", "value": "1"}], "portMappings": [{"containerPort": 80, "protocol": "tcp"}]}],
		"tags": [{"key": "k", "value": "v"}]}`
	a = ecsOK("RegisterTaskDefinition", taskDef)
	defARN, _ := field(a, "taskDefinition", "taskDefinitionArn").(string)
	// Without tags, the answer may leave tags out (AWS's documented
	// examples do; not verified against the live service).
	ecsOK("RegisterTaskDefinition", strings.Replace(taskDef, `"tags": [{"key": "k", "value": "v"}]`, `"tags": []`, 1),
		wiretest.Options{MayBeAbsent: []string{"tags"}})
	ecsErr("RegisterTaskDefinition", `{"family": "wire", "cpu": "256", "memory": "4096", "containerDefinitions": [{"name": "a", "image": "busybox"}]}`, "ClientException")
	ecsErr("RegisterTaskDefinition", `{"family": "wire", "containerDefinitions": "no"}`, "SerializationException")
	ecsOK("DescribeTaskDefinition", `{"taskDefinition": "wire"}`)
	ecsOK("DescribeTaskDefinition", `{"taskDefinition": "wire:1", "include": ["TAGS"]}`)
	ecsErr("DescribeTaskDefinition", `{"taskDefinition": "ghost"}`, "ClientException")
	ecsOK("ListTaskDefinitions", `{"familyPrefix": "wire", "sort": "DESC"}`)
	ecsErr("ListTaskDefinitions", `{"status": "GONE"}`, "InvalidParameterException")
	ecsOK("ListTaskDefinitionFamilies", `{"familyPrefix": "w"}`)
	ecsErr("ListTaskDefinitionFamilies", `{"maxResults": 1000}`, "InvalidParameterException")

	// Tasks.
	a = ecsOK("RunTask", `{"cluster": "wire", "taskDefinition": "wire", "launchType": "FARGATE", "count": 1,
		"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-default"]}}, "tags": [{"key": "t", "value": "1"}]}`)
	taskARN, _ := field(a, "tasks", "0", "taskArn").(string)
	if taskARN == "" {
		t.Fatalf("RunTask: %s", a.body)
	}
	ecsErr("RunTask", `{"cluster": "ghost", "taskDefinition": "wire"}`, "ClusterNotFoundException")
	ecsErr("RunTask", `{"cluster": "wire", "taskDefinition": "ghost"}`, "ClientException")
	ecsErr("RunTask", `{"cluster": "wire", "taskDefinition": "wire", "count": 11}`, "InvalidParameterException")
	e.waitStatusIn("wire", taskARN, "RUNNING")
	ecsOK("DescribeTasks", `{"cluster": "wire", "tasks": ["`+taskARN+`"], "include": ["TAGS"]}`)
	ecsOK("ListTasks", `{"cluster": "wire", "family": "wire", "desiredStatus": "RUNNING"}`)
	ecsErr("ListTasks", `{"cluster": "ghost"}`, "ClusterNotFoundException")
	ecsErr("ListTasks", `{"cluster": "wire", "desiredStatus": "DEAD"}`, "InvalidParameterException")
	ecsErr("DescribeTasks", `{"cluster": "ghost", "tasks": ["x"]}`, "ClusterNotFoundException")
	ecsErr("DescribeTasks", `{"cluster": "wire"}`, "InvalidParameterException")
	ecsOK("StopTask", `{"cluster": "wire", "task": "`+taskARN+`", "reason": "wire test"}`)
	ecsErr("StopTask", `{"cluster": "wire", "task": "0123456789abcdef0123456789abcdef"}`, "InvalidParameterException")
	ecsErr("StopTask", `{"cluster": "ghost", "task": "x"}`, "ClusterNotFoundException")
	e.waitStatusIn("wire", taskARN, "STOPPED")
	ecsOK("DescribeTasks", `{"cluster": "wire", "tasks": ["`+taskARN+`"]}`)

	// Services.
	svc := `{"cluster": "wire", "serviceName": "web", "taskDefinition": "` + defARN + `", "desiredCount": 1, "launchType": "FARGATE",
		"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-default"]}},
		"deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
		"deploymentCircuitBreaker": {"enable": true, "rollback": true}}, "tags": [{"key": "s", "value": "1"}]}`
	ecsOK("CreateService", svc)
	ecsErr("CreateService", svc, "InvalidParameterException")
	ecsErr("CreateService", strings.Replace(svc, `"cluster": "wire"`, `"cluster": "ghost"`, 1), "ClusterNotFoundException")
	ecsOK("UpdateService", `{"cluster": "wire", "service": "web", "desiredCount": 0}`)
	ecsErr("UpdateService", `{"cluster": "wire", "service": "ghost", "desiredCount": 0}`, "ServiceNotFoundException")
	ecsErr("UpdateService", `{"cluster": "ghost", "service": "web"}`, "ClusterNotFoundException")
	ecsOK("DescribeServices", `{"cluster": "wire", "services": ["web"], "include": ["TAGS"]}`)
	ecsErr("DescribeServices", `{"cluster": "ghost", "services": ["web"]}`, "ClusterNotFoundException")
	ecsOK("ListServices", `{"cluster": "wire"}`)
	ecsErr("ListServices", `{"cluster": "ghost"}`, "ClusterNotFoundException")
	ecsOK("DeleteService", `{"cluster": "wire", "service": "web", "force": true}`)
	ecsErr("DeleteService", `{"cluster": "wire", "service": "ghost"}`, "ServiceNotFoundException")
	ecsErr("DeleteService", `{"cluster": "ghost", "service": "web"}`, "ClusterNotFoundException")

	// Deregistering and deleting.
	ecsOK("DeregisterTaskDefinition", `{"taskDefinition": "wire:2"}`)
	ecsErr("DeregisterTaskDefinition", `{"taskDefinition": "wire"}`, "InvalidParameterException")
	ecsErr("DeregisterTaskDefinition", `{"taskDefinition": "wire:99"}`, "ClientException")
	ecsOK("DeleteCluster", `{"cluster": "tagged"}`)
	ecsErr("DeleteCluster", `{"cluster": "ghost"}`, "ClusterNotFoundException")
	ecsErr("DeleteCluster", `{}`, "InvalidParameterException")

	// EKS.
	a = eksCall("ListClusters", "GET", "/clusters", "", "")
	if names, _ := field(a, "clusters").([]any); len(names) < 2 {
		t.Errorf("EKS ListClusters: %s, want the ECS clusters", a.body)
	}
	eksCall("ListClusters", "GET", "/clusters?maxResults=0", "", "InvalidParameterException")
	eksCall("DescribeCluster", "GET", "/clusters/wire", "", "")
	eksCall("DescribeCluster", "GET", "/clusters/ghost", "", "ResourceNotFoundException")
	a = eksCall("ListFargateProfiles", "GET", "/clusters/wire/fargate-profiles", "", "")
	if got, ok := field(a, "fargateProfileNames").([]any); !ok || len(got) != 0 {
		t.Errorf("ListFargateProfiles of a cluster without profiles: %s, want fargateProfileNames: []", a.body)
	}
	eksCall("ListFargateProfiles", "GET", "/clusters/ghost/fargate-profiles", "", "ResourceNotFoundException")
	eksCall("ListFargateProfiles", "GET", "/clusters/wire/fargate-profiles?maxResults=1000", "", "InvalidParameterException")
	profile := `{"fargateProfileName": "web", "podExecutionRoleArn": "arn:aws:iam::000000000000:role/pods",
		"selectors": [{"namespace": "default", "labels": {"app": "web"}}], "tags": {"team": "a"}}`
	eksCall("CreateFargateProfile", "POST", "/clusters/wire/fargate-profiles", profile, "")
	eksCall("CreateFargateProfile", "POST", "/clusters/wire/fargate-profiles", profile, "ResourceInUseException")
	eksCall("CreateFargateProfile", "POST", "/clusters/ghost/fargate-profiles", profile, "ResourceNotFoundException")
	eksCall("CreateFargateProfile", "POST", "/clusters/wire/fargate-profiles",
		`{"fargateProfileName": "x", "podExecutionRoleArn": "nope", "selectors": [{"namespace": "default"}]}`, "InvalidParameterException")
	eksCall("ListFargateProfiles", "GET", "/clusters/wire/fargate-profiles", "", "")
	eksCall("DescribeFargateProfile", "GET", "/clusters/wire/fargate-profiles/web", "", "")
	eksCall("DescribeFargateProfile", "GET", "/clusters/wire/fargate-profiles/ghost", "", "ResourceNotFoundException")
	eksCall("DeleteFargateProfile", "DELETE", "/clusters/wire/fargate-profiles/web", "", "")
	eksCall("DeleteFargateProfile", "DELETE", "/clusters/wire/fargate-profiles/ghost", "", "ResourceNotFoundException")

	// Authentication failures, in each protocol's shape.
	wrong := e.key
	wrong.SecretAccessKey = strings.Repeat("x", 40)
	unknown := auth.Key{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: strings.Repeat("y", 40)}
	for _, c := range []wireCall{
		{op: "ListClusters", body: `{}`, key: &wrong, wantErr: "InvalidSignatureException"},
		{op: "ListClusters", body: `{}`, key: &unknown, wantErr: "UnrecognizedClientException"},
		{op: "ListClusters", body: `{}`, noSign: true, wantErr: "UnrecognizedClientException"},
		{op: "ListClusters", eks: true, method: "GET", path: "/clusters", key: &wrong, wantErr: "InvalidSignatureException"},
		{op: "ListClusters", eks: true, method: "GET", path: "/clusters", noSign: true, wantErr: "UnrecognizedClientException"},
	} {
		e.check(models, c)
	}
	// An operation Vessel does not serve.
	e.check(models, wireCall{op: "ListContainerInstances", body: `{}`, wantErr: "UnknownOperationException"})

	for eks, ops := range served {
		for op, seen := range ops {
			if !seen {
				t.Errorf("served operation %s (EKS %v) was not driven by this test", op, eks)
			}
		}
	}
	for op, o := range outcomes {
		if !o.ok || !o.err {
			t.Errorf("%s: success checked %v, error checked %v; want both", op, o.ok, o.err)
		}
	}
}

// waitStatusIn polls a task of cluster until it reaches status.
func (e *env) waitStatusIn(cluster, arn, status string) {
	e.t.Helper()
	testutil.Eventually(e.t, 20*time.Second, func() error {
		a := e.send(wireCall{op: "DescribeTasks", body: `{"cluster": "` + cluster + `", "tasks": ["` + arn + `"]}`})
		var out struct {
			Tasks []struct {
				LastStatus string `json:"lastStatus"`
			} `json:"tasks"`
		}
		json.Unmarshal(a.body, &out)
		if len(out.Tasks) == 1 && out.Tasks[0].LastStatus == status {
			return nil
		}
		return fmt.Errorf("task %s: %s, want %s", arn, a.body, status)
	})
}
