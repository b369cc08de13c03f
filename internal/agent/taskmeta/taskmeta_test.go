package taskmeta

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// counters is a runtime.Statser whose CPU time grows by a second at each
// reading.
type counters struct{ cpu int64 }

func (c *counters) Stats(ctx context.Context, id, container string) (runtime.Usage, bool, error) {
	if container == "late" {
		return runtime.Usage{}, false, errdefs.NotFound("sandbox %s has no container %s with counters", id, container)
	}
	c.cpu += 1e9
	return runtime.Usage{CPUNanos: c.cpu, CPUUserNanos: c.cpu / 2, CPUSystemNanos: c.cpu / 2,
		MemoryBytes: 5 << 20, MemoryMaxBytes: 6 << 20, MemoryLimitBytes: 512 << 20,
		MemoryStat: map[string]int64{"rss": 4 << 20, "cache": 1 << 20}}, false, nil
}

type tasks map[netip.Addr]*Caller

func (ts tasks) Caller(ip netip.Addr) (*Caller, bool) { c, ok := ts[ip]; return c, ok }

func newTestServer(t *testing.T) (*Server, tasks) {
	t.Helper()
	mk := func(id, ip string) *Caller {
		return &Caller{
			Task: &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
				TaskDefinitionArn: "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3", Family: "web",
				CPUUnits: 256, MemoryMiB: 512, LastStatus: task.StatusRunning, DesiredStatus: task.StatusRunning,
				Subnet: "subnet-default", Group: "service:front", CreatedAt: time.Unix(1000, 0),
				PullStartedAt: time.Unix(1001, 0), PullStoppedAt: time.Unix(1002, 0),
				Containers: []task.Container{
					{Name: "app", Image: "busybox", CPUUnits: 128, MemoryMiB: 256, LastStatus: task.StatusRunning,
						ImageDigest: "sha256:abc", StartedAt: time.Unix(1003, 0),
						Log: &task.LogConfig{Group: "/ecs/web", Region: "us-east-1", StreamPrefix: "ecs", CreateGroup: true}},
					{Name: "late", Image: "busybox"},
				}},
			IP: netip.MustParseAddr(ip), Prefix: netip.MustParsePrefix("10.89.0.0/24"),
			Gateway: netip.MustParseAddr("10.89.0.1"), MAC: "0a:58:0a:59:00:02", Hostname: "ip-10-89-0-2",
			Stats: &counters{},
			Net:   func() (NetIO, error) { return NetIO{RxBytes: 100, TxBytes: 200}, nil },
		}
	}
	ts := tasks{}
	for _, c := range []*Caller{mk("aaaa1111", "10.89.0.2"), mk("bbbb2222", "10.89.0.3")} {
		ts[c.IP] = c
	}
	at := time.Unix(2000, 0)
	s, err := New(Config{Source: ts, Now: func() time.Time { at = at.Add(time.Second); return at },
		SystemCPU: func() (uint64, error) { return uint64(at.Unix()) * 2e9, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return s, ts
}

// get asks the handler as the task with address from.
func get(t *testing.T, s *Server, from, path string) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = from + ":40000"
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// hasFields fails unless the JSON object v holds every one of names.
func hasFields(t *testing.T, what string, v any, names ...string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a JSON object: %v", what, v)
	}
	for _, n := range names {
		if _, ok := m[n]; !ok {
			t.Errorf("%s has no field %q: %v", what, n, m)
		}
	}
	return m
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, b)
	}
	return v
}

var containerFields = []string{"DockerId", "Name", "DockerName", "Image", "ImageID", "Labels", "DesiredStatus",
	"KnownStatus", "Limits", "CreatedAt", "StartedAt", "Type", "Networks", "ContainerARN"}

func TestContainerAndTaskMetadataShapes(t *testing.T) {
	s, _ := newTestServer(t)
	code, body := get(t, s, "10.89.0.2", "/v4/aaaa1111-app")
	if code != http.StatusOK {
		t.Fatalf("GET ${URI}: %d %s", code, body)
	}
	c := hasFields(t, "container", decode(t, body), containerFields...)
	if c["DockerId"] != "aaaa1111-app" || c["Type"] != "NORMAL" || c["ImageID"] != "sha256:abc" || c["KnownStatus"] != "RUNNING" {
		t.Errorf("container: %s", body)
	}
	labels := hasFields(t, "Labels", c["Labels"], "com.amazonaws.ecs.cluster", "com.amazonaws.ecs.container-name",
		"com.amazonaws.ecs.task-arn", "com.amazonaws.ecs.task-definition-family", "com.amazonaws.ecs.task-definition-version")
	if labels["com.amazonaws.ecs.cluster"] != "arn:aws:ecs:us-east-1:000000000000:cluster/default" ||
		labels["com.amazonaws.ecs.task-definition-version"] != "3" || labels["com.amazonaws.ecs.task-definition-family"] != "web" {
		t.Errorf("labels: %v", labels)
	}
	if l := hasFields(t, "container Limits", c["Limits"], "CPU", "Memory"); l["CPU"] != 128.0 || l["Memory"] != 256.0 {
		t.Errorf("container limits %v, want CPU 128 and Memory 256", l)
	}
	nets, _ := c["Networks"].([]any)
	if len(nets) != 1 {
		t.Fatalf("Networks: %v", c["Networks"])
	}
	n := hasFields(t, "network", nets[0], "NetworkMode", "IPv4Addresses", "AttachmentIndex", "MACAddress",
		"IPv4SubnetCIDRBlock", "PrivateDNSName", "SubnetGatewayIpv4Address")
	if n["NetworkMode"] != "awsvpc" || n["IPv4Addresses"].([]any)[0] != "10.89.0.2" || n["SubnetGatewayIpv4Address"] != "10.89.0.1/24" {
		t.Errorf("network: %v", n)
	}
	if c["ContainerARN"] != "arn:aws:ecs:us-east-1:000000000000:container/default/aaaa1111/app" {
		t.Errorf("ContainerARN %v", c["ContainerARN"])
	}
	if lo := hasFields(t, "LogOptions", c["LogOptions"], "awslogs-group", "awslogs-region", "awslogs-stream", "awslogs-create-group"); c["LogDriver"] != "awslogs" ||
		lo["awslogs-group"] != "/ecs/web" || lo["awslogs-stream"] != "ecs/app/aaaa1111" || lo["awslogs-create-group"] != "true" {
		t.Errorf("log driver %v, options %v; want awslogs to /ecs/web, stream ecs/app/aaaa1111", c["LogDriver"], lo)
	}

	for _, p := range []string{"/v4/aaaa1111-app/task", "/v3/aaaa1111-app/task", "/v4/aaaa1111-late/task/"} {
		code, body = get(t, s, "10.89.0.2", p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		tm := hasFields(t, "task", decode(t, body), "Cluster", "TaskARN", "Family", "Revision", "DesiredStatus",
			"KnownStatus", "Limits", "PullStartedAt", "PullStoppedAt", "AvailabilityZone", "LaunchType", "Containers")
		if tm["TaskARN"] != "arn:aws:ecs:us-east-1:000000000000:task/default/aaaa1111" || tm["LaunchType"] != "FARGATE" ||
			tm["Revision"] != "3" || tm["ServiceName"] != "front" || tm["KnownStatus"] != "RUNNING" {
			t.Errorf("task: %s", body)
		}
		if l := tm["Limits"].(map[string]any); l["CPU"] != 0.25 || l["Memory"] != 512.0 {
			t.Errorf("task limits %v, want CPU 0.25 (vCPU) and Memory 512", l)
		}
		cs := tm["Containers"].([]any)
		if len(cs) != 2 {
			t.Fatalf("task has %d containers, want 2", len(cs))
		}
		hasFields(t, "task's container", cs[0], containerFields...)
		if cs[1].(map[string]any)["KnownStatus"] != "PENDING" {
			t.Errorf("a container not started: %v", cs[1])
		}
	}
}

func TestStatsShapesAndPreviousSample(t *testing.T) {
	s, _ := newTestServer(t)
	code, body := get(t, s, "10.89.0.2", "/v4/aaaa1111-app/stats")
	if code != http.StatusOK {
		t.Fatalf("GET ${URI}/stats: %d %s", code, body)
	}
	st := hasFields(t, "stats", decode(t, body), "read", "preread", "cpu_stats", "precpu_stats", "memory_stats",
		"networks", "blkio_stats", "pids_stats", "name", "id")
	cpu := hasFields(t, "cpu_stats", st["cpu_stats"], "cpu_usage", "system_cpu_usage", "online_cpus")
	hasFields(t, "cpu_usage", cpu["cpu_usage"], "total_usage", "usage_in_kernelmode", "usage_in_usermode")
	mem := hasFields(t, "memory_stats", st["memory_stats"], "usage", "max_usage", "limit", "stats")
	if mem["usage"] != float64(5<<20) || mem["limit"] != float64(512<<20) {
		t.Errorf("memory_stats %v", mem)
	}
	hasFields(t, "memory_stats.stats", mem["stats"], "rss", "cache")
	eth0 := hasFields(t, "networks", st["networks"], "eth0")["eth0"]
	hasFields(t, "eth0", eth0, "rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
	hasFields(t, "blkio_stats", st["blkio_stats"], "io_service_bytes_recursive", "io_serviced_recursive")
	first := cpu["cpu_usage"].(map[string]any)["total_usage"].(float64)

	// The next reading's precpu_stats is this one.
	_, body = get(t, s, "10.89.0.2", "/v4/aaaa1111-app/stats")
	st = decode(t, body).(map[string]any)
	pre := st["precpu_stats"].(map[string]any)["cpu_usage"].(map[string]any)["total_usage"].(float64)
	now := st["cpu_stats"].(map[string]any)["cpu_usage"].(map[string]any)["total_usage"].(float64)
	if pre != first || now <= pre {
		t.Errorf("precpu total_usage %v, cpu %v; want the first reading's %v and more now", pre, now, first)
	}
	hasFields(t, "stats", st, "network_rate_stats")

	// /task/stats: every container by DockerId, null for one without counters.
	code, body = get(t, s, "10.89.0.2", "/v4/aaaa1111-app/task/stats")
	if code != http.StatusOK {
		t.Fatalf("GET ${URI}/task/stats: %d %s", code, body)
	}
	all := hasFields(t, "task stats", decode(t, body), "aaaa1111-app", "aaaa1111-late")
	hasFields(t, "task stats of app", all["aaaa1111-app"], "cpu_stats", "precpu_stats", "memory_stats")
	if all["aaaa1111-late"] != nil {
		t.Errorf("a container without counters: %v, want null", all["aaaa1111-late"])
	}
}

// TestCallerIsKnownByAddressOnly: the path's container ID must be one of
// the caller's own; another task's gets the same 404 as an ID of nothing.
func TestCallerIsKnownByAddressOnly(t *testing.T) {
	s, _ := newTestServer(t)
	for _, c := range []struct {
		from, path string
		code       int
		says       string
	}{
		{"10.89.0.3", "/v4/aaaa1111-app/task", http.StatusNotFound, "not a container of the calling task"},
		{"10.89.0.3", "/v4/aaaa1111-app/stats", http.StatusNotFound, "not a container of the calling task"},
		{"10.89.0.3", "/v4/nothing-app", http.StatusNotFound, "not a container of the calling task"},
		{"10.89.0.9", "/v4/aaaa1111-app/task", http.StatusNotFound, "no task of this host has address 10.89.0.9"},
		{"10.89.0.3", "/v4/bbbb2222-app/secrets", http.StatusNotFound, "the paths are"},
		{"10.89.0.3", "/v2/metadata", http.StatusNotFound, "the paths are"},
	} {
		code, body := get(t, s, c.from, c.path)
		var msg string
		json.Unmarshal(body, &msg)
		if code != c.code || !strings.Contains(msg, c.says) {
			t.Errorf("%s from %s: %d %s, want %d saying %q", c.path, c.from, code, body, c.code, c.says)
		}
	}
	code, body := get(t, s, "10.89.0.3", "/v4/bbbb2222-app/task")
	if code != http.StatusOK || !strings.Contains(string(body), `"TaskARN":"arn:aws:ecs:us-east-1:000000000000:task/default/bbbb2222"`) {
		t.Errorf("own task: %d %s", code, body)
	}
	r := httptest.NewRequest(http.MethodPost, "/v4/bbbb2222-app/task", nil)
	r.RemoteAddr = "10.89.0.3:4000"
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed || !strings.Contains(w.Body.String(), "answers GET") {
		t.Errorf("POST: %d %s", w.Code, w.Body)
	}
}

func TestEnv(t *testing.T) {
	env := Env("aaaa1111", "app")
	if env["ECS_CONTAINER_METADATA_URI_V4"] != "http://169.254.170.2/v4/aaaa1111-app" ||
		env["ECS_CONTAINER_METADATA_URI"] != "http://169.254.170.2/v3/aaaa1111-app" {
		t.Errorf("Env = %v", env)
	}
}

// TestWarmSandboxIDs: a task in a sandbox made ahead of it (a warm one)
// has container IDs of that sandbox's ID: its URIs, DockerId and stats
// use them, and the task's own ID names none of its containers.
func TestWarmSandboxIDs(t *testing.T) {
	s, ts := newTestServer(t)
	ts[netip.MustParseAddr("10.89.0.2")].SandboxID = "warm-runc-0a1b2c3d"
	code, body := get(t, s, "10.89.0.2", "/v4/warm-runc-0a1b2c3d-app")
	if code != http.StatusOK {
		t.Fatalf("GET ${URI} of a warm sandbox's container: %d %s", code, body)
	}
	if c := hasFields(t, "container", decode(t, body), "DockerId"); c["DockerId"] != "warm-runc-0a1b2c3d-app" {
		t.Errorf("DockerId %v, want the warm sandbox's container ID", c["DockerId"])
	}
	if want := "http://169.254.170.2/v4/warm-runc-0a1b2c3d-app"; Env("warm-runc-0a1b2c3d", "app")["ECS_CONTAINER_METADATA_URI_V4"] != want {
		t.Errorf("Env's URI %q, want %q", Env("warm-runc-0a1b2c3d", "app")["ECS_CONTAINER_METADATA_URI_V4"], want)
	}
	if code, body := get(t, s, "10.89.0.2", "/v4/aaaa1111-app"); code != http.StatusNotFound {
		t.Errorf("GET by the task's ID of a warm sandbox's container: %d %s, want 404", code, body)
	}
	code, body = get(t, s, "10.89.0.2", "/v4/warm-runc-0a1b2c3d-app/task/stats")
	if m := hasFields(t, "task stats", decode(t, body), "warm-runc-0a1b2c3d-app"); code != http.StatusOK || len(m) != 2 {
		t.Errorf("task stats: %d %s", code, body)
	}
}
