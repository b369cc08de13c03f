package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	clientv3 "go.etcd.io/etcd/client/v3"

	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// Where `vessel server --etcd` keeps its records (its default prefix), and
// where its replicas campaign.
const (
	storePrefix    = "/vessel/"
	electionPrefix = storePrefix + "leader/"
)

// signal sends sig to each server, failing the test if one is not running.
func signal(t *testing.T, sig syscall.Signal, servers ...*fleet.Server) {
	t.Helper()
	for _, s := range servers {
		if err := s.Signal(sig); err != nil {
			t.Fatalf("%v to %s: %v", sig, s.Name(), err)
		}
	}
}

// quietRevision waits until etcd's revision has not moved for a second (so
// that the writes that paused processes had already sent are in) and
// returns it.
func quietRevision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	var rev int64
	testutil.Eventually(t, 30*time.Second, func() error {
		r1, err := etcdtest.Revision(context.Background(), cli)
		if err != nil {
			return err
		}
		time.Sleep(time.Second)
		if rev, err = etcdtest.Revision(context.Background(), cli); err != nil {
			return err
		}
		if rev != r1 {
			return fmt.Errorf("etcd's revision moved from %d to %d within a second", r1, rev)
		}
		return nil
	})
	return rev
}

// leaderLease finds the lease of leader, the replica that leads: that of
// the oldest key under the election's prefix, whose value names leader's
// process ("host/PID").
func leaderLease(t *testing.T, cli *clientv3.Client, leader *fleet.Server) (key string, lease clientv3.LeaseID) {
	t.Helper()
	resp, err := cli.Get(context.Background(), electionPrefix, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("the leader's election key under %s: %v %+v", electionPrefix, err, resp)
	}
	kv := resp.Kvs[0]
	if !strings.HasSuffix(string(kv.Value), fmt.Sprintf("/%d", leader.PID())) {
		t.Fatalf("the oldest election key %s is %q's, not %s's (PID %d)", kv.Key, kv.Value, leader.Name(), leader.PID())
	}
	return string(kv.Key), clientv3.LeaseID(kv.Lease)
}

// TestPausedLeaderWritesNothingAfterItsTerm: three replicas on a
// three-member etcd and a sim host (which reports to the followers only).
// The leader is paused with SIGSTOP, not killed, and its lease ends in
// etcd while it is paused, as when the whole machine is paused: its clock
// stops with it, so once resumed it believes that its lease still runs
// until it next renews it. (A process paused past its lease on a running
// machine finds its lease lapsed by its own clock within a second of
// resuming, and rarely gets to write before; the fence is what makes that
// never, and this is what tests it.) A successor leads and does work given
// through a follower (the service scaled up, and placed); then the
// successor is paused, a task is run through the third replica and that is
// paused too (well within their leases): a PROVISIONING task that only the
// old leader, resumed now, would act on. It tries (its log says the fence
// refused it), becomes a follower, and has written nothing: etcd's own
// history of that span has no change outside the election's keys.
// Afterwards the successor leads, the task is placed, a task run through
// the old leader runs, and the service's counts are exact.
func TestPausedLeaderWritesNothingAfterItsTerm(t *testing.T) {
	f := newFleet(t)
	etcd := f.Etcd(3)
	// A replica renews its lease every third of it: the old leader, paused
	// right after it renewed, does not ask etcd again for 20 s, more than
	// the steps below take while it is paused.
	const lease = 60 * time.Second
	rs := f.Servers(3, fleet.ServerConfig{Etcd: etcd, LeaderLease: lease})
	old := fleet.Leader(t, rs, 30*time.Second)
	followers := fleet.Without(rs, old)
	f.Agent(followers, fleet.AgentConfig{})
	cli := etcd.Client()
	ctx := context.Background()
	ec := map[*fleet.Server]*ecs.Client{}
	for _, s := range rs {
		ec[s] = s.ECS()
	}
	registerDef(t, ec[old], "web", "256", "512", 0, "sleep", "3600")
	if _, err := ec[old].CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String("web"), TaskDefinition: aws.String("web"),
		DesiredCount: aws.Int32(2), LaunchType: ecstypes.LaunchTypeFargate}); err != nil {
		t.Fatalf("CreateService through the leader %s: %v", old.Name(), err)
	}
	steady := func(c *ecs.Client, desired int32) func() error {
		return func() error {
			if svc := describeService(t, c, "web"); !serviceSteady(svc) || svc.DesiredCount != desired {
				return fmt.Errorf("service web: desired %d running %d pending %d, %d deployments; want %d running, steady",
					svc.DesiredCount, svc.RunningCount, svc.PendingCount, len(svc.Deployments), desired)
			}
			return nil
		}
	}
	testutil.Eventually(t, 60*time.Second, steady(ec[old], 2))

	// Paused right after it renewed its lease, which then ends in etcd.
	key, id := leaderLease(t, cli, old)
	testutil.Eventually(t, lease, func() error {
		ttl, err := cli.TimeToLive(ctx, id)
		if err != nil || ttl.TTL < ttl.GrantedTTL-1 {
			return fmt.Errorf("the leader's lease %x has %v of %vs left (%v), waiting for its renewal", id, ttl.TTL, ttl.GrantedTTL, err)
		}
		return nil
	})
	signal(t, syscall.SIGSTOP, old)
	stopped := time.Now()
	if _, err := cli.Revoke(ctx, id); err != nil {
		t.Fatalf("ending the paused leader's lease %x (key %s): %v", id, key, err)
	}
	successor := fleet.Leader(t, followers, 30*time.Second)
	third := fleet.Without(followers, successor)[0]
	// Work that the paused leader's view misses, given through a follower.
	if _, err := ec[third].UpdateService(ctx, &ecs.UpdateServiceInput{Service: aws.String("web"), DesiredCount: aws.Int32(4)}); err != nil {
		t.Fatalf("UpdateService through %s: %v", third.Name(), err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if svc := describeService(t, ec[successor], "web"); svc.RunningCount != 4 || svc.PendingCount != 0 {
			return fmt.Errorf("service web: running %d pending %d, want 4 running", svc.RunningCount, svc.PendingCount)
		}
		return nil
	})

	// Work for a leader, with none but the old one running.
	signal(t, syscall.SIGSTOP, successor)
	paused := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			signal(t, syscall.SIGCONT, successor, third)
		}
	}
	defer resume()
	provisioning := runOne(t, ec[third], "web")
	signal(t, syscall.SIGSTOP, third)
	r := quietRevision(t, cli)
	t.Logf("the old leader was paused for %v, its lease ended in etcd", time.Since(stopped).Round(time.Millisecond))
	signal(t, syscall.SIGCONT, old)
	testutil.Eventually(t, 30*time.Second, func() error {
		if role, err := old.Role(); err != nil || role != "follower" || !strings.Contains(old.Log(), "leadership ended") {
			return fmt.Errorf("the resumed old leader %s says %q (%v), want follower, and a log that says its leadership ended", old.Name(), role, err)
		}
		return nil
	})
	// A write it sent before it knew may land after it says so.
	w := quietRevision(t, cli)
	resume()
	t.Logf("the successor was paused for %v; the old leader alone ran over revisions %d..%d", time.Since(paused).Round(time.Millisecond), r+1, w)

	history, err := etcdtest.History(ctx, cli, storePrefix, r+1, w)
	if err != nil {
		t.Fatal(err)
	}
	var writes, lapsed []string
	for _, ev := range history {
		line := fmt.Sprintf("%s %s at revision %d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		switch {
		case !strings.HasPrefix(string(ev.Kv.Key), electionPrefix):
			writes = append(writes, line)
		case ev.Type == clientv3.EventTypeDelete:
			lapsed = append(lapsed, line)
		}
	}
	if len(lapsed) > 0 {
		// A paused replica's election key went with its lease: the check
		// below would not be of the old leader alone.
		t.Errorf("an election key was deleted while the successor and the third replica were paused (a lease lapsed):\n%s", strings.Join(lapsed, "\n"))
	}
	if len(writes) > 0 {
		t.Errorf("the old leader %s, resumed after its successor %s had led, changed the store (etcd's history, revisions %d..%d):\n%s",
			old.Name(), successor.Name(), r+1, w, strings.Join(writes, "\n"))
	}
	if !strings.Contains(old.Log(), "refused by the store's fence") {
		t.Errorf("the old leader's log does not say that the fence refused one of its writes: either they went through (see above) or it learnt that it no longer leads before it acted on the task %s, and the fence was not tested", provisioning)
	}

	// The successor leads; everything works.
	if l := fleet.Leader(t, rs, 30*time.Second); l != successor {
		t.Errorf("after the window the leader is %s, want the successor %s", l.Name(), successor.Name())
	}
	waitFor(t, ec[old], provisioning, "RUNNING", 60*time.Second)
	waitFor(t, ec[old], runOne(t, ec[old], "web"), "RUNNING", 60*time.Second)
	testutil.Eventually(t, 60*time.Second, steady(ec[old], 4))
	if arns := serviceTaskARNs(t, ec[old], "web"); len(arns) != 4 {
		t.Errorf("service web has %d tasks, want 4: %v", len(arns), arns)
	}
}

// storeCall is an API call that needs the store.
type storeCall struct {
	name string
	call func(ctx context.Context, c *ecs.Client) error
}

// storeCalls are calls that read and write the store: they work while etcd
// has quorum and fail with ServerException naming the store while it has
// not. web is a registered family; task an existing task's ARN.
func storeCalls(web, task string) []storeCall {
	return []storeCall{
		{"RegisterTaskDefinition", func(ctx context.Context, c *ecs.Client) error {
			_, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(web), Cpu: aws.String("256"), Memory: aws.String("512"),
				NetworkMode: ecstypes.NetworkModeAwsvpc, ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"),
					Command: []string{"sleep", "3600"}}}})
			return err
		}},
		{"ListTaskDefinitions", func(ctx context.Context, c *ecs.Client) error {
			_, err := c.ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{})
			return err
		}},
		{"DescribeTasks", func(ctx context.Context, c *ecs.Client) error {
			out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: []string{task}})
			if err == nil && len(out.Tasks) != 1 {
				return fmt.Errorf("DescribeTasks of %s: %+v", task, out)
			}
			return err
		}},
		{"RunTask", func(ctx context.Context, c *ecs.Client) error {
			_, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String(web)})
			return err
		}},
	}
}

// TestReplicasOnEtcdQuorumLoss: three replicas on a three-member etcd and
// a sim host. With one member killed everything works through every
// replica. With two killed, every call that needs the store, through every
// replica, answers ServerException naming the store (within its request
// bound: a hang is the failure). Once both members are back, without
// restarting a replica: the members agree on every key, calls work through
// every replica again, a replica leads, a new task runs, and every
// definition and task written before is there.
func TestReplicasOnEtcdQuorumLoss(t *testing.T) {
	f := newFleet(t)
	etcd := f.Etcd(3)
	rs := f.Servers(3, fleet.ServerConfig{Etcd: etcd, LeaderLease: 4 * time.Second})
	f.Agent(rs, fleet.AgentConfig{})
	ctx := context.Background()
	var ec []*ecs.Client
	for _, s := range rs {
		ec = append(ec, s.ECS())
	}
	var pids []int
	for _, s := range rs {
		pids = append(pids, s.PID())
	}
	registerDef(t, ec[0], "web", "256", "512", 0, "sleep", "3600")
	first := runOne(t, ec[0], "web")
	waitFor(t, ec[0], first, "RUNNING", 60*time.Second)

	etcd.Kill(2)
	etcd.WaitLeader()
	// Everything works: through each replica, every call, and a task it
	// runs is placed and runs.
	for i, s := range rs {
		for _, c := range storeCalls("web", first) {
			if err := c.call(ctx, ec[i]); err != nil {
				t.Errorf("%s through %s with one etcd member down: %v", c.name, s.Name(), err)
			}
		}
		waitFor(t, ec[(i+1)%len(rs)], runOne(t, ec[i], "web"), "RUNNING", 60*time.Second)
	}
	if t.Failed() {
		t.FailNow()
	}
	// What is there before the loss: every definition, every task RUNNING.
	defs, err := ec[1].ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := ec[2].ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatusRunning})
	if err != nil {
		t.Fatal(err)
	}
	tasks := list.TaskArns
	if len(tasks) != 1+2*len(rs) {
		t.Fatalf("%d tasks before the quorum loss, want %d: %v", len(tasks), 1+2*len(rs), tasks)
	}
	for _, arn := range tasks {
		waitFor(t, ec[0], arn, "RUNNING", 60*time.Second)
	}

	etcd.Kill(1)
	// Each replica answers each call, all at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i, s := range rs {
		for _, c := range storeCalls("web", first) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				start := time.Now()
				err := c.call(cctx, ec[i])
				took := time.Since(start).Round(time.Millisecond)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					failures = append(failures, fmt.Sprintf("%s through %s without etcd quorum: no answer within 20s", c.name, s.Name()))
				case err == nil || !strings.Contains(err.Error(), "ServerException") || !strings.Contains(err.Error(), "etcd store at"):
					failures = append(failures, fmt.Sprintf("%s through %s without etcd quorum: %v, want ServerException naming the store", c.name, s.Name(), err))
				default:
					t.Logf("%s through %s without quorum answered after %v: %v", c.name, s.Name(), took, err)
				}
			}()
		}
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("without quorum:\n%s", strings.Join(failures, "\n"))
	}

	etcd.StartAll(1, 2)
	etcd.WaitLeader()
	// The members agree on every key and value.
	cli := etcd.Client()
	testutil.Eventually(t, 60*time.Second, func() error {
		rev, err := etcdtest.Revision(ctx, cli)
		if err != nil {
			return err
		}
		hashes := map[uint32][]string{}
		for _, ep := range etcd.Endpoints() {
			h, err := cli.HashKV(ctx, ep, rev)
			if err != nil {
				return fmt.Errorf("hash of %s at revision %d: %v", ep, rev, err)
			}
			hashes[h.Hash] = append(hashes[h.Hash], ep)
		}
		if len(hashes) != 1 {
			return fmt.Errorf("the members' contents differ at revision %d: %v", rev, hashes)
		}
		return nil
	})
	// The same replicas, not restarted, work again.
	for i, s := range rs {
		if s.PID() != pids[i] {
			t.Fatalf("%s was restarted (PID %d, was %d):\n%s", s.Name(), s.PID(), pids[i], s.Log())
		}
		testutil.Eventually(t, 60*time.Second, func() error {
			for _, c := range storeCalls("web", first) {
				if c.name == "RunTask" {
					continue
				}
				if err := c.call(ctx, ec[i]); err != nil {
					return fmt.Errorf("%s through %s after the members returned: %v", c.name, s.Name(), err)
				}
			}
			return nil
		})
	}
	leader := fleet.Leader(t, rs, 60*time.Second)
	arn := runOne(t, ec[0], "web")
	waitFor(t, ec[2], arn, "RUNNING", 60*time.Second)
	t.Logf("after the members returned, %s leads and placed %s", leader.Name(), arn)

	// Nothing written before the loss is lost.
	after, err := ec[1].ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs.TaskDefinitionArns {
		if !slices.Contains(after.TaskDefinitionArns, d) {
			t.Errorf("task definition %s, registered before the quorum loss, is gone: %v", d, after.TaskDefinitionArns)
		}
	}
	for i, s := range rs {
		out, err := ec[i].DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: tasks})
		if err != nil {
			t.Fatalf("DescribeTasks through %s: %v", s.Name(), err)
		}
		for _, fl := range out.Failures {
			t.Errorf("task %s, run before the quorum loss, is %s through %s", aws.ToString(fl.Arn), aws.ToString(fl.Reason), s.Name())
		}
		for _, tk := range out.Tasks {
			if aws.ToString(tk.LastStatus) != "RUNNING" {
				t.Errorf("task %s, RUNNING before the quorum loss, is %s through %s (%s)", aws.ToString(tk.TaskArn), aws.ToString(tk.LastStatus),
					s.Name(), aws.ToString(tk.StoppedReason))
			}
		}
	}
}

// TestReplicasLeaderPausedThenKilled: three replicas on a three-member etcd,
// no host. One leads. SIGSTOP it: one of the others leads within the lease
// and 5 s and runs the controllers (a task run through it moves to
// PENDING); SIGCONT it: it follows and the successor keeps leading. kill -9
// the successor: the third leads within the lease and 5 s and runs the
// controllers.
func TestReplicasLeaderPausedThenKilled(t *testing.T) {
	f := newFleet(t)
	// etcd's shortest lease with etcdtest's election timeout.
	const lease = 4 * time.Second
	rs := f.Servers(3, fleet.ServerConfig{Etcd: f.Etcd(3), LeaderLease: lease})
	leader := fleet.Leader(t, rs, 30*time.Second)
	registerDef(t, leader.ECS(), "web", "256", "512", 0, "sleep", "3600")

	// Paused: the others elect a successor once its lease is gone.
	signal(t, syscall.SIGSTOP, leader)
	successor := fleet.Leader(t, fleet.Without(rs, leader), lease+5*time.Second)
	// Its controllers run: a task run through it (no host: it waits)
	// moves from PROVISIONING to PENDING.
	c := successor.ECS()
	waitFor(t, c, runOne(t, c, "web"), "PENDING", 30*time.Second)

	// Resumed: the old leader finds its lease gone and follows.
	signal(t, syscall.SIGCONT, leader)
	if l := fleet.Leader(t, rs, lease+5*time.Second); l != successor {
		t.Errorf("after SIGCONT the leader is %s, want the successor %s", l.Name(), successor.Name())
	}

	// Killed: another leads.
	successor.Kill()
	third := fleet.Leader(t, fleet.Without(rs, successor), lease+5*time.Second)
	c = third.ECS()
	waitFor(t, c, runOne(t, c, "web"), "PENDING", 30*time.Second)
}
