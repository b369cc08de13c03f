package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/testutil"
)

// hostKey returns a host credential bound to hostID.
func newHostKey(t *testing.T, hostID string) auth.Key {
	t.Helper()
	k, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k.Name, k.Policy, k.HostID = "host/"+hostID, auth.PolicyHost, hostID
	return k
}

// TestHostCredentialIsBoundToItsHost: host A's credential may register,
// heartbeat, read the assignments of and report for host A only; every
// call it makes as host B is refused with AccessDenied, and host A's own
// calls work.
func TestHostCredentialIsBoundToItsHost(t *testing.T) {
	keyA, keyB := newHostKey(t, "host-a"), newHostKey(t, "host-b")
	e := newEnvWith(t, envOptions{noAgent: true}, func(c *server.Config) {
		c.Keyring = auth.NewStaticKeyring(append(c.Keys, keyA, keyB)...)
	})
	clientA, err := agentproto.NewClient(e.url, keyA, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	clientB, err := agentproto.NewClient(e.url, keyB, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	host := func(id string) agentproto.Host {
		return agentproto.Host{ID: id, MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"sim"}}
	}
	c := ctx(t)
	if err := clientB.RegisterHost(c, host("host-b")); err != nil {
		t.Fatalf("host B registering itself: %v", err)
	}
	arn := e.run(e.register("bound", "256", "512", "sleep", "60"))
	var taskID string
	testutil.Eventually(t, 20*time.Second, func() error {
		as, err := clientB.Assignments(c, "host-b", -1)
		if err != nil {
			t.Fatalf("host B reading its assignments: %v", err)
		}
		if len(as.Tasks) != 1 {
			return fmt.Errorf("task %s was not placed on host B", arn)
		}
		taskID = as.Tasks[0].ID
		return nil
	})
	if err := clientA.RegisterHost(c, host("host-a")); err != nil {
		t.Fatalf("host A registering itself: %v", err)
	}

	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, agentproto.ErrAccessDenied) {
			t.Errorf("%s with host A's credential: got %v, want AccessDenied", what, err)
		}
	}
	denied("registering as host B", clientA.RegisterHost(c, host("host-b")))
	denied("heartbeat as host B", clientA.Heartbeat(c, "host-b"))
	denied("reporting host B's warm pools", clientA.ReportWarmPools(c, "host-b", []agentproto.WarmPool{{Runtime: "sim", Target: 9}}))
	_, err = clientA.Assignments(c, "host-b", -1)
	denied("reading host B's assignments", err)
	denied("reporting host B's task", clientA.ReportStatus(c, "host-b", agentproto.StatusUpdate{TaskID: taskID, LastStatus: "STOPPED", StopCode: "EssentialContainerExited", StoppedReason: "forged by host A"}))
	_, err = clientA.ReportStatuses(c, "host-b", [][]agentproto.StatusUpdate{{{TaskID: taskID, LastStatus: "STOPPED", StopCode: "EssentialContainerExited", StoppedReason: "forged by host A"}}})
	denied("reporting host B's task with other tasks' reports", err)
	if got := e.describe(arn); got.StoppedReason != nil {
		t.Errorf("host B's task was changed by host A: stoppedReason %q", *got.StoppedReason)
	}

	// Host A's own calls work, and its own assignments hold none of B's tasks.
	if err := clientA.Heartbeat(c, "host-a"); err != nil {
		t.Errorf("host A's heartbeat: %v", err)
	}
	if err := clientA.ReportWarmPools(c, "host-a", []agentproto.WarmPool{{Runtime: "sim", Target: 1}}); err != nil {
		t.Errorf("host A reporting its own warm pools: %v", err)
	}
	as, err := clientA.Assignments(c, "host-a", -1)
	if err != nil || len(as.Tasks) != 0 {
		t.Errorf("host A's assignments: %d tasks, %v; want none", len(as.Tasks), err)
	}
	// Host B's reports, several in one call (sent as an array), apply in
	// order.
	at := time.Now()
	if err := clientB.ReportStatus(c, "host-b",
		agentproto.StatusUpdate{TaskID: taskID, LastStatus: "ACTIVATING", PullStartedAt: at, At: at},
		agentproto.StatusUpdate{TaskID: taskID, PullStoppedAt: at, At: at},
		agentproto.StatusUpdate{TaskID: taskID, LastStatus: "RUNNING", At: at}); err != nil {
		t.Fatalf("host B's three reports in one call: %v", err)
	}
	if got := e.describe(arn); aws.ToString(got.LastStatus) != "RUNNING" || got.PullStartedAt == nil || got.PullStoppedAt == nil {
		t.Errorf("after host B's reports the task is %s with pullStartedAt %v, pullStoppedAt %v; want RUNNING with both",
			aws.ToString(got.LastStatus), got.PullStartedAt, got.PullStoppedAt)
	}
	// Reports of several tasks in one call: each task's outcome apart, in
	// order, and a refused one changes nothing of the others.
	errs, err := clientB.ReportStatuses(c, "host-b", [][]agentproto.StatusUpdate{
		{{TaskID: "no-such-task", LastStatus: "RUNNING", At: at}},
		{{TaskID: taskID, StoppedReason: "reported with another task's reports", At: at}},
		{{TaskID: taskID, LastStatus: "SLEEPING", At: at}}, // no such status
	})
	if err != nil || len(errs) != 3 {
		t.Fatalf("host B's reports of three tasks in one call: %v, %v", errs, err)
	}
	if !errors.Is(errs[0], errdefs.ErrNotFound) || errs[1] != nil || !errors.Is(errs[2], errdefs.ErrInvalidArgument) {
		t.Errorf("outcomes %v; want NotFound, applied, InvalidArgument", errs)
	}
	if got := e.describe(arn); aws.ToString(got.StoppedReason) != "reported with another task's reports" {
		t.Errorf("the task's stoppedReason is %q after the call; want the report's", aws.ToString(got.StoppedReason))
	}
	var tooMany [][]agentproto.StatusUpdate
	for range agentproto.MaxTasksPerCall + 1 {
		tooMany = append(tooMany, []agentproto.StatusUpdate{{TaskID: taskID, LastStatus: "RUNNING", At: at}})
	}
	if _, err := clientB.ReportStatuses(c, "host-b", tooMany); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("reports of %d tasks in one call: %v, want InvalidArgument", len(tooMany), err)
	}
	// The admin key keeps working for any host (the in-process agent, old
	// set-ups).
	admin, err := agentproto.NewClient(e.url, e.key, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Heartbeat(c, "host-b"); err != nil {
		t.Errorf("admin heartbeat for host B: %v", err)
	}
}
