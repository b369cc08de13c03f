package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/testutil"
)

// addSimHost runs one more sim host, id, against the env's control plane
// (in process, as the env's h1), until the test ends.
func (e *env) addSimHost(id string) {
	e.t.Helper()
	startSimAgentAs(e.t, id, e.srv, 0)
	e.waitHostReady(id)
}

// waitHostReady waits until host id is ready.
func (e *env) waitHostReady(id string) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, func() error {
		if h := e.host(id); h.State != server.HostReady {
			return fmt.Errorf("host %s is %q, not ready", id, h.State)
		}
		return nil
	})
}

// host returns host id as GET /vessel/v1/hosts lists it (zero if absent).
func (e *env) host(id string) server.HostInfo {
	e.t.Helper()
	code, body := e.vessel(e.key, http.MethodGet, "/vessel/v1/hosts", nil)
	if code != http.StatusOK {
		e.t.Fatalf("GET /vessel/v1/hosts: HTTP %d %s", code, body)
	}
	var out struct{ Hosts []server.HostInfo }
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatal(err)
	}
	for _, h := range out.Hosts {
		if h.ID == id {
			return h
		}
	}
	return server.HostInfo{}
}

// hostOf is the host a task is placed on (its vessel:host attribute).
func hostOf(tk ecstypes.Task) string {
	for _, a := range tk.Attributes {
		if aws.ToString(a.Name) == "vessel:host" {
			return aws.ToString(a.Value)
		}
	}
	return ""
}

// wantError checks an answer in the agent protocol's error shape.
func wantError(t *testing.T, what string, code int, body []byte, wantCode int, wantKind, wantMsg string) {
	t.Helper()
	var eb struct{ Kind, Message string }
	json.Unmarshal(body, &eb)
	if code != wantCode || eb.Kind != wantKind || !strings.Contains(eb.Message, wantMsg) {
		t.Errorf("%s: HTTP %d %s; want %d, kind %s, a message with %q", what, code, body, wantCode, wantKind, wantMsg)
	}
}

// TestHostDrainAndRemove: a service of 4 tasks and a standalone task run
// on h1; h2 joins; h1 drains. The service's tasks are started on h2 and
// stopped on h1, never fewer than 4 running; the standalone task is left
// to run, so h1 is draining, not drained, and `rm` without --force is
// refused. Drained again with --stop-tasks, the standalone task stops
// (TerminationNotice); h1 is drained and removed, and its agent, which
// signs with the admin key, cannot register it again.
func TestHostDrainAndRemove(t *testing.T) {
	e := newEnv(t, envOptions{})
	def := e.register("drainweb", "256", "512", "sleep", "3600")
	standalone := e.run(e.register("standalone", "256", "512", "sleep", "3600"))
	e.createService("web", def, 4)
	e.waitService("web", "steady", steady)
	e.waitStatus(standalone, "RUNNING")
	e.addSimHost("h2")
	if h := e.host("h1"); h.State != server.HostReady || h.Tasks != 5 || h.Allocated.MilliCPU != 5*250 || h.Allocated.MemoryMiB != 5*512 {
		t.Fatalf("h1 before the drain: %+v", h)
	}

	stop := make(chan struct{})
	minRunning := make(chan int32, 1)
	go func() {
		least := int32(4)
		defer func() { minRunning <- least }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			out, err := e.ecs.DescribeServices(context.Background(), &ecs.DescribeServicesInput{Services: []string{"web"}})
			if err == nil && len(out.Services) == 1 {
				least = min(least, out.Services[0].RunningCount)
			}
		}
	}()
	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/h1/drain", map[string]bool{"stopTasks": false}); code != http.StatusOK {
		t.Fatalf("drain h1: HTTP %d %s", code, body)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		var on []string
		for _, tk := range e.serviceTasks("web") {
			if hostOf(tk) != "h2" || aws.ToString(tk.LastStatus) != "RUNNING" {
				on = append(on, hostOf(tk)+":"+aws.ToString(tk.LastStatus))
			}
		}
		if len(on) > 0 || len(e.serviceTasks("web")) != 4 {
			return fmt.Errorf("the service's tasks are not all RUNNING on h2: %v", on)
		}
		return nil
	})
	close(stop)
	if least := <-minRunning; least < 4 {
		t.Errorf("the service ran %d tasks at one point of the drain, fewer than its desired 4", least)
	}
	e.waitService("web", "steady", steady)
	stopped, err := e.ecs.ListTasks(ctx(t), &ecs.ListTasksInput{ServiceName: aws.String("web"), DesiredStatus: ecstypes.DesiredStatusStopped})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := e.ecs.DescribeTasks(ctx(t), &ecs.DescribeTasksInput{Tasks: stopped.TaskArns})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Tasks) != 4 {
		t.Errorf("%d of the service's tasks stopped, want the 4 of h1", len(desc.Tasks))
	}
	for _, tk := range desc.Tasks {
		if hostOf(tk) != "h1" || tk.StopCode != ecstypes.TaskStopCodeServiceSchedulerInitiated || !strings.Contains(aws.ToString(tk.StoppedReason), "Host h1 is draining") {
			t.Errorf("stopped task on %s: %s %q", hostOf(tk), tk.StopCode, aws.ToString(tk.StoppedReason))
		}
	}
	if st := e.describe(standalone); aws.ToString(st.LastStatus) != "RUNNING" {
		t.Errorf("the standalone task on the draining host is %s: it should be left to run", aws.ToString(st.LastStatus))
	}
	if h := e.host("h1"); h.State != server.HostDraining || !h.Draining || h.Tasks != 1 {
		t.Errorf("h1 with its standalone task: %+v, want draining with 1 task", h)
	}
	code, body := e.vessel(e.key, http.MethodDelete, "/vessel/v1/hosts/h1", nil)
	wantError(t, "rm of a draining host with a task", code, body, http.StatusConflict, "Conflict", "not empty: 1 tasks are not STOPPED yet (1 RUNNING)")

	// Nothing new goes to the draining host.
	other := e.run(e.register("other", "256", "512", "sleep", "3600"))
	if tk := e.waitStatus(other, "RUNNING"); hostOf(tk) != "h2" {
		t.Errorf("a task run during the drain went to %s", hostOf(tk))
	}

	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/h1/drain", map[string]bool{"stopTasks": true}); code != http.StatusOK {
		t.Fatalf("drain h1 --stop-tasks: HTTP %d %s", code, body)
	}
	if st := e.waitStatus(standalone, "STOPPED"); st.StopCode != ecstypes.TaskStopCodeTerminationNotice || !strings.Contains(aws.ToString(st.StoppedReason), "--stop-tasks") {
		t.Errorf("the standalone task stopped with %s %q, want TerminationNotice", st.StopCode, aws.ToString(st.StoppedReason))
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if h := e.host("h1"); h.State != server.HostDrained {
			return fmt.Errorf("h1 is %s, not drained", h.State)
		}
		return nil
	})
	code, body = e.vessel(e.key, http.MethodGet, "/vessel/v1/hosts/h1", nil)
	var d server.HostDetail
	if json.Unmarshal(body, &d); code != http.StatusOK || d.State != server.HostDrained || len(d.TaskList) != 0 || !d.StopTasks {
		t.Errorf("describe h1: HTTP %d %s", code, body)
	}
	if code, body := e.vessel(e.key, http.MethodDelete, "/vessel/v1/hosts/h1", nil); code != http.StatusOK {
		t.Fatalf("rm h1: HTTP %d %s", code, body)
	}
	// Its agent heartbeats, is told the host is unknown, and registers
	// again: refused, as a revoked host's.
	time.Sleep(500 * time.Millisecond)
	if h := e.host("h1"); h.Registered || h.State != server.HostRevoked {
		t.Errorf("h1 after rm: %+v, want revoked and not registered", h)
	}
	code, body = e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/h1/drain", nil)
	wantError(t, "drain of a removed host", code, body, http.StatusNotFound, "NotFound", "host \"h1\" is not registered")
	if tk := e.describe(other); aws.ToString(tk.LastStatus) != "RUNNING" {
		t.Errorf("the task on h2 is %s after h1's removal", aws.ToString(tk.LastStatus))
	}
}

// TestHostUndrain: a drained host takes tasks again once undrained.
func TestHostUndrain(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.waitHostReady("h1")
	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/h1/drain", nil); code != http.StatusOK {
		t.Fatalf("drain h1: HTTP %d %s", code, body)
	}
	if h := e.host("h1"); h.State != server.HostDrained {
		t.Errorf("an empty draining host is %s, want drained", h.State)
	}
	arn := e.run(e.register("waits", "256", "512", "sleep", "3600"))
	time.Sleep(300 * time.Millisecond) // several controller passes
	if tk := e.describe(arn); aws.ToString(tk.LastStatus) != "PENDING" || hostOf(tk) != "" {
		t.Fatalf("a task run while the only host drains is %s on %q, want PENDING and unplaced", aws.ToString(tk.LastStatus), hostOf(tk))
	}
	if code, body := e.vessel(e.key, http.MethodPost, "/vessel/v1/hosts/h1/undrain", nil); code != http.StatusOK {
		t.Fatalf("undrain h1: HTTP %d %s", code, body)
	}
	if tk := e.waitStatus(arn, "RUNNING"); hostOf(tk) != "h1" {
		t.Errorf("the task runs on %q", hostOf(tk))
	}
	if h := e.host("h1"); h.State != server.HostReady || h.Draining {
		t.Errorf("h1 after undrain: %+v", h)
	}
}

// TestHostAdminErrors: what the host routes refuse, in the agent
// protocol's error shape, and rm --force.
func TestHostAdminErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.waitHostReady("h1")
	for _, tc := range []struct {
		method, path string
		in           any
		code         int
		kind, msg    string
	}{
		{http.MethodGet, "/vessel/v1/hosts/nope", nil, 404, "NotFound", `host "nope" is unknown`},
		{http.MethodPost, "/vessel/v1/hosts/nope/drain", nil, 404, "NotFound", `host "nope" is not registered`},
		{http.MethodPost, "/vessel/v1/hosts/nope/undrain", nil, 404, "NotFound", `host "nope" is not registered`},
		{http.MethodDelete, "/vessel/v1/hosts/nope", nil, 404, "NotFound", `host "nope" is unknown`},
		{http.MethodPost, "/vessel/v1/hosts/h1/undrain", nil, 409, "Conflict", "host h1 is not draining"},
		{http.MethodDelete, "/vessel/v1/hosts/h1", nil, 409, "Conflict", "host h1 is ready, not drained: drain it first"},
		{http.MethodDelete, "/vessel/v1/hosts/h1?force=maybe", nil, 400, "InvalidArgument", `force="maybe" is not accepted`},
		{http.MethodPost, "/vessel/v1/hosts/h1/drain", "stopTasks", 400, "InvalidArgument", "bad agent request body"},
	} {
		code, body := e.vessel(e.key, tc.method, tc.path, tc.in)
		wantError(t, tc.method+" "+tc.path, code, body, tc.code, tc.kind, tc.msg)
	}

	arn := e.run(e.register("forced", "256", "512", "sleep", "3600"))
	e.waitStatus(arn, "RUNNING")
	if code, body := e.vessel(e.key, http.MethodDelete, "/vessel/v1/hosts/h1?force=true", nil); code != http.StatusOK {
		t.Fatalf("rm --force h1: HTTP %d %s", code, body)
	}
	if tk := e.describe(arn); aws.ToString(tk.LastStatus) != "STOPPED" || tk.StopCode != ecstypes.TaskStopCodeTerminationNotice ||
		!strings.Contains(aws.ToString(tk.StoppedReason), "Host h1 was removed") {
		t.Errorf("the removed host's task: %s %s %q, want STOPPED at once with TerminationNotice",
			aws.ToString(tk.LastStatus), tk.StopCode, aws.ToString(tk.StoppedReason))
	}
}

// TestHostDrainSurvivesLeaderChange: three replicas elect a leader; two
// sim hosts report to them all. h1 is drained through a follower: the
// leader places nothing more on h1. The leader stops; the next one still
// sees h1 draining and places on h2 only, until h1 is undrained.
func TestHostDrainSurvivesLeaderChange(t *testing.T) {
	const lease = 2 * time.Second
	rs := startReplicas(t, 3, replicaConfig{lease: lease, hostTimeout: noHostLost})
	var urls []string
	for _, r := range rs {
		urls = append(urls, r.url)
	}
	for _, id := range []string{"h1", "h2"} {
		client, err := agentproto.NewClient(strings.Join(urls, ","), rs[0].key, "us-east-1")
		if err != nil {
			t.Fatal(err)
		}
		startSimAgentAs(t, id, client.WithCallTimeout(2*time.Second), 100*time.Millisecond)
	}
	first := leaderOf(t, rs, 30*time.Second)
	follower := rs[(first+1)%3]
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, id := range []string{"h1", "h2"} {
			if h := follower.host(id); h.State != server.HostReady {
				return fmt.Errorf("host %s is %q", id, h.State)
			}
		}
		return nil
	})
	if code, body := follower.vessel(follower.key, http.MethodPost, "/vessel/v1/hosts/h1/drain", nil); code != http.StatusOK {
		t.Fatalf("drain h1 through a follower: HTTP %d %s", code, body)
	}
	def := follower.register("placed", "256", "512", "sleep", "3600")
	runOn := func(r *replica) string {
		t.Helper()
		arn := r.run(def)
		var host string
		testutil.Eventually(t, 20*time.Second, func() error {
			if host = hostOf(r.describe(arn)); host == "" {
				return fmt.Errorf("task %s is not placed yet", arn)
			}
			return nil
		})
		return host
	}
	for range 3 {
		if h := runOn(follower); h != "h2" {
			t.Fatalf("a task run while h1 drains was placed on %s", h)
		}
	}

	rs[first].stop()
	var rest []*replica
	for i, r := range rs {
		if i != first {
			rest = append(rest, r)
		}
	}
	next := rest[leaderOf(t, rest, lease+5*time.Second)]
	if h := next.host("h1"); !h.Draining {
		t.Fatalf("after the change of leader h1 is %+v, not draining", h)
	}
	for range 3 {
		if h := runOn(next); h != "h2" {
			t.Fatalf("under the next leader a task was placed on the draining %s", h)
		}
	}
	if code, body := next.vessel(next.key, http.MethodPost, "/vessel/v1/hosts/h1/undrain", nil); code != http.StatusOK {
		t.Fatalf("undrain h1: HTTP %d %s", code, body)
	}
	// h1 is emptier: the spread-free placement fills the fullest host, so
	// ask for more than h2 holds.
	seen := map[string]bool{}
	testutil.Eventually(t, 30*time.Second, func() error {
		seen[runOn(next)] = true
		if !seen["h1"] {
			return fmt.Errorf("no task placed on h1 after undrain yet (placed on %v)", seen)
		}
		return nil
	})
}
