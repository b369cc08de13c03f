package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
)

// replicaRole asks a replica's /healthz whether it leads; a paused or dead
// replica answers nothing within the client's timeout.
func replicaRole(s *server) (string, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(s.endpoint + "/healthz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if r, ok := strings.CutPrefix(line, "role: "); ok {
			return r, nil
		}
	}
	return "", fmt.Errorf("/healthz %s says no role: %q", resp.Status, body)
}

// oneLeader waits until exactly one of rs says it leads and the others
// that it follows, and returns the leader.
func oneLeader(t testing.TB, rs []*server, timeout time.Duration) *server {
	t.Helper()
	var leader *server
	testutil.Eventually(t, timeout, func() error {
		leader = nil
		for i, s := range rs {
			r, err := replicaRole(s)
			if err != nil {
				return fmt.Errorf("replica %d: %v", i, err)
			}
			if r == "leader" {
				if leader != nil {
					return fmt.Errorf("two replicas say they lead")
				}
				leader = s
			}
		}
		if leader == nil {
			return fmt.Errorf("no replica leads")
		}
		return nil
	})
	return leader
}

// TestReplicasLeaderPausedThenKilled runs three real `vessel server
// --no-agent` replicas on a three-member etcd. One leads. SIGSTOP it: one of
// the others leads within the lease and 5 s and runs the controllers; SIGCONT
// it: it becomes a follower and the successor keeps leading. kill -9 the
// successor: another leads within the lease and 5 s.
func TestReplicasLeaderPausedThenKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const lease = 2 * time.Second
	eps := strings.Join(c.Endpoints(), ",")
	first := startServer(t, "--no-agent", "--etcd", eps, "--leader-lease", lease.String())
	keyFile := filepath.Join(first.dataDir, "master.key")
	rs := []*server{first}
	for range 2 {
		rs = append(rs, startServer(t, "--no-agent", "--etcd", eps, "--leader-lease", lease.String(), "--encryption-key-file", keyFile))
	}
	id, secret := first.keys()
	client := func(s *server) *ecs.Client {
		cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
			HTTPClient: awsclient.HTTPClient(nil)}
		return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.endpoint) })
	}
	defer func() {
		if t.Failed() {
			for i, s := range rs {
				if s.cmd != nil {
					s.cmd.Process.Signal(syscall.SIGCONT)
				}
				s.kill(syscall.SIGTERM)
				t.Logf("replica %d log:\n%s", i, s.log)
			}
		}
	}()
	leader := oneLeader(t, rs, 30*time.Second)
	registerDef(t, client(leader), "web", "256", "512", 0, "sleep", "3600")

	// Paused: the others elect a successor once its lease is gone.
	if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if leader.cmd != nil {
			leader.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	var others []*server
	for _, s := range rs {
		if s != leader {
			others = append(others, s)
		}
	}
	successor := oneLeader(t, others, lease+5*time.Second)
	// Its controllers run: a task run through it (no host: it waits)
	// moves from PROVISIONING to PENDING.
	out, err := client(successor).RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String("web")})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask through the successor: %v %v", out, err)
	}
	waitFor(t, client(successor), aws.ToString(out.Tasks[0].TaskArn), "PENDING", 30*time.Second)

	// Resumed: the old leader finds its lease gone and follows.
	if err := leader.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if l := oneLeader(t, rs, lease+5*time.Second); l != successor {
		t.Errorf("after SIGCONT the leader is %s, want the successor %s", l.endpoint, successor.endpoint)
	}

	// Killed: another leads.
	successor.kill(syscall.SIGKILL)
	var rest []*server
	for _, s := range rs {
		if s != successor {
			rest = append(rest, s)
		}
	}
	third := oneLeader(t, rest, lease+5*time.Second)
	out, err = client(third).RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String("web")})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask through the third leader: %v %v", out, err)
	}
	waitFor(t, client(third), aws.ToString(out.Tasks[0].TaskArn), "PENDING", 30*time.Second)
}
