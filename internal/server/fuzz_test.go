package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store/bolt"
)

// ecsFuzzOps are the X-Amz-Target operations FuzzECS drives, by index;
// the last index is an operation that does not exist.
var ecsFuzzOps = []string{
	"CreateCluster", "DescribeClusters", "ListClusters", "DeleteCluster",
	"RegisterTaskDefinition", "DescribeTaskDefinition", "ListTaskDefinitions",
	"ListTaskDefinitionFamilies", "DeregisterTaskDefinition",
	"RunTask", "StopTask", "DescribeTasks", "ListTasks",
	"CreateService", "UpdateService", "DeleteService", "DescribeServices", "ListServices",
	"LaunchRocket",
}

// fuzzServer is a control plane with no hosts behind an in-process handler:
// requests are signed with its key and served without a network.
type fuzzServer struct {
	h   http.Handler
	key auth.Key
}

// newFuzzServer makes a control plane on a fresh bolt store and signs with
// its key; run starts its controller and store watch (stopped at cleanup),
// as a running server has them.
func newFuzzServer(tb testing.TB, run bool) *fuzzServer {
	tb.Helper()
	dir := tb.TempDir()
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	keys, _, err := auth.LoadOrCreate(dir)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Keys: keys, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Run(ctx); close(done) }()
		tb.Cleanup(func() { cancel(); <-done })
	}
	return &fuzzServer{h: srv.Handler(), key: keys[0]}
}

// do signs req with body as the given service and serves it.
func (s *fuzzServer) do(t *testing.T, req *http.Request, service string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req = req.WithContext(ctx)
	if err := auth.SignRequest(ctx, req, s.key, "us-east-1", service, body, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

// FuzzECS sends signed ECS JSON 1.1 requests with fuzzed bodies to each
// operation. Properties: the server never panics and never answers 5xx
// (every bad input is the client's fault); an error is a JSON
// {"__type","message"} whose __type matches X-Amzn-ErrorType and whose
// message is not empty; a success is a JSON object.
func FuzzECS(f *testing.F) {
	seeds := []struct {
		op   string
		body string
	}{
		{"CreateCluster", `{"clusterName":"fuzz","tags":[{"key":"team","value":"a"}]}`},
		{"DescribeClusters", `{"clusters":["default","fuzz"],"include":["TAGS","SETTINGS"]}`},
		{"ListClusters", `{"maxResults":1,"nextToken":"default"}`},
		{"DeleteCluster", `{"cluster":"fuzz"}`},
		{"RegisterTaskDefinition", `{"family":"web","cpu":"256","memory":"512","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],` +
			`"containerDefinitions":[{"name":"app","image":"busybox","command":["sleep","60"],"essential":true,` +
			`"portMappings":[{"containerPort":80,"protocol":"tcp"}],"environment":[{"name":"A","value":"1"}],` +
			`"healthCheck":{"command":["CMD-SHELL","true"],"interval":5,"timeout":2,"retries":3},` +
			`"mountPoints":[{"sourceVolume":"data","containerPath":"/data"}],"linuxParameters":{"capabilities":{"add":["NET_ADMIN"],"drop":["ALL"]}},` +
			`"dependsOn":[{"containerName":"side","condition":"START"}]},{"name":"side","image":"busybox","essential":false}],` +
			`"volumes":[{"name":"data"}],"ephemeralStorage":{"sizeInGiB":30},"runtimePlatform":{"operatingSystemFamily":"LINUX","cpuArchitecture":"X86_64"}}`},
		{"RegisterTaskDefinition", `{"family":"f","cpu":"256","memory":"512"}`},
		{"RegisterTaskDefinition", `{"family":"big","cpu":"16 vCPU","memory":"120 GB","containerDefinitions":[{"name":"a","image":"x","memoryReservation":-1,"cpu":99999999999}]}`},
		{"DescribeTaskDefinition", `{"taskDefinition":"web:1","include":["TAGS"]}`},
		{"ListTaskDefinitions", `{"familyPrefix":"w","status":"ACTIVE","sort":"DESC","maxResults":100}`},
		{"ListTaskDefinitionFamilies", `{"status":"ALL"}`},
		{"DeregisterTaskDefinition", `{"taskDefinition":"arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"}`},
		{"RunTask", `{"taskDefinition":"web","count":2,"launchType":"FARGATE","startedBy":"fuzz","group":"family:web",` +
			`"networkConfiguration":{"awsvpcConfiguration":{"subnets":["subnet-vessel"],"assignPublicIp":"ENABLED"}},` +
			`"overrides":{"cpu":"512","memory":"1024","containerOverrides":[{"name":"app","command":["true"],"environment":[{"name":"B","value":"2"}]}]},` +
			`"tags":[{"key":"k","value":"v"}],"enableExecuteCommand":true,"propagateTags":"TASK_DEFINITION"}`},
		{"RunTask", `{"taskDefinition": 5}`},
		{"StopTask", `{"task":"0123456789abcdef0123456789abcdef","reason":"fuzz"}`},
		{"DescribeTasks", `{"cluster":"default","tasks":["arn:aws:ecs:us-east-1:000000000000:task/default/0123"],"include":["TAGS"]}`},
		{"ListTasks", `{"family":"web","desiredStatus":"STOPPED","launchType":"FARGATE","startedBy":"fuzz","serviceName":"s"}`},
		{"CreateService", `{"serviceName":"svc","taskDefinition":"web","desiredCount":1,"launchType":"FARGATE",` +
			`"networkConfiguration":{"awsvpcConfiguration":{"subnets":["subnet-vessel"]}},` +
			`"deploymentConfiguration":{"maximumPercent":200,"minimumHealthyPercent":100,"deploymentCircuitBreaker":{"enable":true,"rollback":true}}}`},
		{"UpdateService", `{"service":"svc","desiredCount":0,"forceNewDeployment":true}`},
		{"DeleteService", `{"service":"svc","force":true}`},
		{"DescribeServices", `{"services":["svc"]}`},
		{"ListServices", `{"maxResults":10}`},
		{"LaunchRocket", `{}`},
	}
	for _, s := range seeds {
		for i, name := range ecsFuzzOps {
			if name == s.op {
				f.Add(uint8(i), []byte(s.body))
			}
		}
	}
	f.Add(uint8(0), []byte(nil))
	f.Add(uint8(4), []byte(`[`))
	f.Add(uint8(9), []byte(`{"taskDefinition":"web","count":-1}`))

	srv := newFuzzServer(f, true)
	f.Fuzz(func(t *testing.T, opIndex uint8, body []byte) {
		name := ecsFuzzOps[int(opIndex)%len(ecsFuzzOps)]
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", api.ECSContentType)
		req.Header.Set("X-Amz-Target", api.ECSTargetPrefix+name)
		rec := srv.do(t, req, "ecs", body)
		checkECSAnswer(t, name, body, rec)
	})
}

func checkECSAnswer(t *testing.T, name string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %q: status %d, a server error for a client's request: %s", name, body, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != api.ECSContentType {
		t.Fatalf("%s %q: Content-Type %q, want %q", name, body, ct, api.ECSContentType)
	}
	if rec.Code == http.StatusOK {
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: 200 with a body that is not a JSON object: %v: %s", name, body, err, rec.Body)
		}
		return
	}
	if rec.Code < 400 {
		t.Fatalf("%s %q: status %d", name, body, rec.Code)
	}
	var e api.ECSError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("%s %q: status %d with a body that is not an ECS error: %v: %s", name, body, rec.Code, err, rec.Body)
	}
	if e.Type == "" || e.Message == "" || e.Type != rec.Header().Get("X-Amzn-ErrorType") {
		t.Fatalf("%s %q: error %+v (X-Amzn-ErrorType %q): want a __type matching the header and a message",
			name, body, e, rec.Header().Get("X-Amzn-ErrorType"))
	}
}

// FuzzEKS sends signed EKS REST requests with a fuzzed method, cluster and
// profile names, query and body to the Fargate profile routes. Properties:
// never a panic or a 5xx; an error is a JSON object with a non-empty
// message and an X-Amzn-ErrorType; a success is a JSON object.
func FuzzEKS(f *testing.F) {
	create := `{"fargateProfileName":"fp","podExecutionRoleArn":"arn:aws:iam::000000000000:role/pod",` +
		`"subnets":["subnet-vessel"],"selectors":[{"namespace":"default","labels":{"app":"web"}}],"tags":{"team":"a"},"clientRequestToken":"t1"}`
	f.Add(uint8(0), "default", "", "", []byte(create))
	f.Add(uint8(1), "default", "", "maxResults=1&nextToken=fp", []byte(nil))
	f.Add(uint8(2), "default", "fp", "", []byte(nil))
	f.Add(uint8(3), "default", "fp", "", []byte(nil))
	f.Add(uint8(4), "", "", "maxResults=abc", []byte(nil))
	f.Add(uint8(5), "default", "", "", []byte(nil))
	f.Add(uint8(0), "default", "", "", []byte(`{"fargateProfileName":"","selectors":[{"namespace":"*","labels":{"a/b":"c"}}]}`))
	f.Add(uint8(0), "nope", "", "", []byte(`{"fargateProfileName":"x","selectors":[]}`))
	f.Add(uint8(0), "default", "", "", []byte(`{"fargateProfileName":"x","selectors":[{"namespace":"a"},{"namespace":"b"},{"namespace":"c"},{"namespace":"d"},{"namespace":"e"},{"namespace":"f"}]}`))

	srv := newFuzzServer(f, true)
	f.Fuzz(func(t *testing.T, route uint8, cluster, profile, query string, body []byte) {
		var method, path string
		c, p := url.PathEscape(cluster), url.PathEscape(profile)
		switch route % 6 {
		case 0:
			method, path = http.MethodPost, "/clusters/"+c+"/fargate-profiles"
		case 1:
			method, path = http.MethodGet, "/clusters/"+c+"/fargate-profiles"
		case 2:
			method, path = http.MethodGet, "/clusters/"+c+"/fargate-profiles/"+p
		case 3:
			method, path = http.MethodDelete, "/clusters/"+c+"/fargate-profiles/"+p
		case 4:
			method, path = http.MethodGet, "/clusters"
		case 5:
			method, path = http.MethodGet, "/clusters/"+c
		}
		if strings.ContainsAny(query, "#") || !httpguts.ValidHeaderFieldValue(query) || strings.ContainsAny(query, " ") {
			query = url.QueryEscape(query)
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := httptest.NewRequest(method, u.RequestURI(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := srv.do(t, req, "eks", body)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: status %d, a server error for a client's request: %s", method, target, body, rec.Code, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s %q: status %d with a body that is not a JSON object: %v: %s", method, target, body, rec.Code, err, rec.Body)
		}
		if rec.Code == http.StatusOK {
			return
		}
		if rec.Code < 400 {
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
		msg, _ := out["message"].(string)
		if msg == "" || rec.Header().Get("X-Amzn-ErrorType") == "" {
			t.Fatalf("%s %s %q: status %d error without a message or X-Amzn-ErrorType: %s", method, target, body, rec.Code, rec.Body)
		}
	})
}

// FuzzAgent sends signed agent protocol requests (host registration,
// heartbeats, assignments, status reports) with fuzzed host IDs, queries
// and bodies. Properties: never a panic or a 500 (an Internal error is the
// server's fault; a client's bad request must get its kind); an error is
// a JSON {"kind","message"} with a known kind; a success is JSON.
func FuzzAgent(f *testing.F) {
	f.Add(uint8(0), "h1", "", []byte(`{"id":"h1","milliCPU":2000,"memoryMiB":4096,"cpuAllocationRatio":1,"memoryAllocationRatio":1,"runtimes":["sim"],"defaultRuntime":"sim","subnets":["subnet-vessel"],"agentVersion":"dev","logsEndpoint":"http://127.0.0.1:1"}`))
	f.Add(uint8(0), "h2", "", []byte(`{"id":"","milliCPU":-1,"memoryMiB":0,"runtimes":["nope"],"cpuAllocationRatio":1e308}`))
	f.Add(uint8(1), "h1", "", []byte(nil))
	f.Add(uint8(1), "ghost", "", []byte(nil))
	f.Add(uint8(2), "h1", "after=0", []byte(nil))
	f.Add(uint8(2), "h1", "after=-9223372036854775808", []byte(nil))
	f.Add(uint8(3), "h1", "", []byte(`{"taskId":"0123","lastStatus":"RUNNING","runtime":"sim","ip":"10.0.0.5","containers":[{"name":"app","lastStatus":"RUNNING","exitCode":0,"startedAt":"2026-01-02T03:04:05Z"}],"at":"2026-01-02T03:04:05Z"}`))
	f.Add(uint8(3), "h1", "", []byte(`{"taskId":"","lastStatus":"BOGUS","at":"0001-01-01T00:00:00Z"}`))
	f.Add(uint8(3), "h1", "", []byte(`[]`))
	f.Add(uint8(4), "h1", "after=0&seen=0", []byte(nil))
	f.Add(uint8(4), "h1", "after=x", []byte(nil))
	f.Add(uint8(5), "h1", "0123", []byte(`{}`))
	f.Add(uint8(6), "h1", "0123", []byte(`{"container":"app","events":[{"time":"2026-01-02T03:04:05Z","message":"x","start":0,"end":2}]}`))
	f.Add(uint8(6), "h1", "0123", []byte(`{"container":"app","events":[{"start":5,"end":2}]}`))

	srv := newFuzzServer(f, true)
	f.Fuzz(func(t *testing.T, route uint8, hostID, query string, body []byte) {
		id := url.PathEscape(hostID)
		var method, path string
		switch route % 7 {
		case 0:
			method, path = http.MethodPost, "/agent/v1/hosts"
		case 1:
			method, path = http.MethodPost, "/agent/v1/hosts/"+id+"/heartbeat"
		case 2:
			// A short long poll: the fuzzer must not wait 30 s.
			method, path = http.MethodGet, "/agent/v1/hosts/"+id+"/assignments?wait=1ms&"+url.PathEscape(query)
		case 3:
			method, path = http.MethodPost, "/agent/v1/hosts/"+id+"/status"
		case 4:
			method, path = http.MethodGet, "/agent/v1/hosts/"+id+"/names?wait=1ms&"+url.PathEscape(query)
		case 5: // the awslogs routes (cwlogs.go); query is the task's ID
			method, path = http.MethodPost, "/agent/v1/hosts/"+id+"/tasks/"+url.PathEscape(query)+"/log-streams"
		case 6:
			method, path = http.MethodPost, "/agent/v1/hosts/"+id+"/tasks/"+url.PathEscape(query)+"/log-events"
		}
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return
		}
		req := httptest.NewRequest(method, u.RequestURI(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := srv.do(t, req, "vessel", body)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %s %q: status 500, a server error for an agent's request: %s", method, path, body, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s %q: status %d with a body that is not a JSON object: %v: %s", method, path, body, rec.Code, err, rec.Body)
		}
		if rec.Code/100 == 2 {
			return
		}
		kind, _ := out["kind"].(string)
		msg, _ := out["message"].(string)
		switch kind {
		case "NotFound", "AlreadyExists", "Conflict", "InvalidArgument", "Unavailable", "LimitExceeded":
		default:
			t.Fatalf("%s %s %q: status %d error of kind %q: %s", method, path, body, rec.Code, kind, rec.Body)
		}
		if msg == "" {
			t.Fatalf("%s %s: error without a message: %s", method, path, rec.Body)
		}
	})
}

// TestAssignmentsBeforeTasksLoad: an agent's long poll that ends before the
// control plane has loaded its tasks (the handler serves while Run's first
// sync is still under way) is answered 503 Unavailable, which the agent
// retries, not 500 "context deadline exceeded". FuzzAgent found it.
func TestAssignmentsBeforeTasksLoad(t *testing.T) {
	s := newFuzzServer(t, false)
	req := httptest.NewRequest(http.MethodGet, "/agent/v1/hosts/h1/assignments?after=0&wait=1ms", nil)
	rec := s.do(t, req, "vessel", nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"kind":"Unavailable"`) {
		t.Fatalf("assignments before the tasks are loaded: %d %s, want 503 Unavailable", rec.Code, rec.Body)
	}
}
