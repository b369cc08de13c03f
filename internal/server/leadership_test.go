package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/testutil"
)

// healthRole asks url's /healthz whether the replica leads.
func healthRole(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s %s", resp.Status, body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if r, ok := strings.CutPrefix(line, "role: "); ok {
			if h := resp.Header.Get("X-Vessel-Role"); h != r {
				t.Errorf("/healthz says role %q, its X-Vessel-Role header %q", r, h)
			}
			return r
		}
	}
	t.Fatalf("/healthz says no role: %q", body)
	return ""
}

// metricLine returns the line of /metrics that starts with name.
func metricLine(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) {
			return line
		}
	}
	return ""
}

func TestSingleProcessAlwaysLeads(t *testing.T) {
	e := newEnv(t, envOptions{})
	if r := healthRole(t, e.url); r != "leader" {
		t.Errorf("a server on bbolt says role %q, want leader", r)
	}
	if l := metricLine(t, e.url, "vessel_leader "); l != "vessel_leader 1" {
		t.Errorf("metric %q, want vessel_leader 1", l)
	}
	// Its controllers run: the task is placed and runs.
	arn := e.run(e.register("single", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	if l := metricLine(t, e.url, `vessel_store_request_duration_seconds_count{operation="put",result="ok"}`); l == "" {
		t.Error("/metrics has no store latency of puts")
	}
}

// TestReplicasFailover runs three replicas on a three-member etcd: one
// leads; when it stops another leads within the lease and 5 s, places a
// task on a host that reports to the remaining follower, keeps that host
// alive (it knows its heartbeats from the store only) and finds a host
// silent since it registered under the old leader dead.
func TestReplicasFailover(t *testing.T) {
	const lease = 2 * time.Second
	const hostTimeout = 3 * time.Second
	rs := startReplicas(t, 3, replicaConfig{lease: lease, hostTimeout: hostTimeout})
	first := leaderOf(t, rs, 30*time.Second)
	for i, r := range rs {
		want := "vessel_leader 0"
		if i == first {
			want = "vessel_leader 1"
		}
		if l := metricLine(t, r.url, "vessel_leader "); l != want {
			t.Errorf("replica %d: metric %q, want %q", i, l, want)
		}
	}
	// What runs while a replica leads (the Kubernetes bridge) runs on the
	// leader only.
	testutil.Eventually(t, 5*time.Second, func() error {
		for i, r := range rs {
			want := int32(0)
			if i == first {
				want = 1
			}
			if got := r.hooks.Load(); got != want {
				return fmt.Errorf("replica %d (leader %d) runs %d OnLeadership functions, want %d", i, first, got, want)
			}
		}
		return nil
	})
	// A host that registers and then says nothing more (too small for
	// any task).
	if err := rs[(first+1)%3].srv.RegisterHost(t.Context(), agentproto.Host{ID: "h-dead", MilliCPU: 1, MemoryMiB: 1, Runtimes: []string{"sim"}}); err != nil {
		t.Fatal(err)
	}

	rs[first].stop()
	var rest []*replica
	for i, r := range rs {
		if i != first {
			rest = append(rest, r)
		}
	}
	nextIdx := leaderOf(t, rest, lease+5*time.Second)
	next := rest[nextIdx]
	// A host reports to a follower only: the leader knows its heartbeats
	// from the store alone.
	follower := rest[1-nextIdx]
	startSimAgent(t, follower.srv, 0)
	if rs[first].hooks.Load() != 0 {
		t.Error("the stopped leader's OnLeadership function still runs")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if next.hooks.Load() != 1 || follower.hooks.Load() != 0 {
			return fmt.Errorf("OnLeadership functions: %d on the new leader, %d on the follower; want 1 and 0", next.hooks.Load(), follower.hooks.Load())
		}
		return nil
	})
	if l := metricLine(t, next.url, "vessel_leadership_changes_total "); l != "vessel_leadership_changes_total 1" {
		t.Errorf("the new leader's metric %q, want vessel_leadership_changes_total 1", l)
	}

	// A task run through the new leader's API is placed by it on the host
	// that reports to the follower, and runs.
	arn := next.run(next.register("failover", "256", "512", "sleep", "1000"))
	next.waitStatus(arn, "RUNNING")

	// The new leader tells the dead host from the live one.
	testutil.Eventually(t, 3*hostTimeout, func() error {
		hosts, err := next.srv.Hosts(t.Context())
		if err != nil {
			return err
		}
		alive := map[string]bool{}
		for _, h := range hosts {
			alive[h.ID] = h.Alive
		}
		if alive["h-dead"] {
			return errors.New("h-dead, silent since it registered, is still alive to the new leader")
		}
		if !alive["h1"] {
			t.Fatalf("h1, which heartbeats to a follower, is lost to the new leader: %+v", hosts)
		}
		return nil
	})
	if got := next.describe(arn); *got.LastStatus != "RUNNING" {
		t.Errorf("the task on h1 is %s (%q) after h-dead was found dead, want RUNNING", *got.LastStatus, *got.StoppedReason)
	}
}

// deposed is a Leadership whose one term is already over in the store: its
// fence names an election key that no longer exists, as for a leader that
// was paused past its lease while a successor took over.
type deposed struct {
	fence store.Fence
	ended chan struct{}
}

func (d deposed) Lead(ctx context.Context, term func(ctx context.Context)) error {
	term(store.WithFence(ctx, d.fence))
	close(d.ended)
	<-ctx.Done()
	return nil
}

// TestDeposedLeaderWritesNothing gives a server on etcd a term whose fence
// no longer holds: its controller's first write (a new task's PROVISIONING
// → PENDING) is refused, nothing changes, and the controller stops rather
// than carrying on.
func TestDeposedLeaderWritesNothing(t *testing.T) {
	lead := deposed{fence: store.Fence{Key: replicaPrefix(t) + "leader/gone", Revision: 1}, ended: make(chan struct{})}
	// Its controllers start once the task is in the store.
	e := startReplicas(t, 1, replicaConfig{members: 1, leadership: lead, idle: true})[0]
	// An API write by a replica that does not lead goes through.
	arn := e.run(e.register("deposed", "256", "512", "sleep", "1000"))

	e.start()
	select {
	case <-lead.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the deposed leader's controllers still run 30 s after their writes were refused")
	}
	if got := e.describe(arn); aws.ToString(got.LastStatus) != "PROVISIONING" {
		t.Errorf("the task is %s after the deposed leader's pass, want PROVISIONING (nothing written)", aws.ToString(got.LastStatus))
	}
	if r := healthRole(t, e.url); r != "follower" {
		t.Errorf("/healthz after the term: role %q, want follower", r)
	}
}
