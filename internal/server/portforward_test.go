package server_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// portForwardURL is the public port-forward route of a task.
func (e *env) portForwardURL(cluster, id string) string {
	return e.url + "/vessel/v1/clusters/" + cluster + "/tasks/" + id + "/portforward"
}

// TestTaskPortForwardErrors: what the control plane refuses before it
// relays a port-forward to the task's host (TaskPortForward, and the
// public route with the same kinds): an unknown task, a task of another
// cluster, a bad port, a host without a port-forward endpoint, a task not
// running; and a key whose policy does not allow vessel:ForwardTaskPort.
func TestTaskPortForwardErrors(t *testing.T) {
	e := newKeyEnv(t)
	arn := e.run(e.register("pf", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	id := execTaskID(arn)

	for name, tc := range map[string]struct {
		cluster, id string
		port        int
		is          func(error) bool
		says        string
	}{
		"unknown task":            {"default", "0123456789abcdef0123456789abcdef", 80, errdefs.IsNotFound, "not found in cluster default"},
		"other cluster":           {"elsewhere", id, 80, errdefs.IsNotFound, "not found in cluster elsewhere"},
		"port 0":                  {"default", id, 0, errdefs.IsInvalidArgument, "from 1 to 65535"},
		"port 65536":              {"default", id, 65536, errdefs.IsInvalidArgument, "from 1 to 65535"},
		"host serves no port-fwd": {"default", id, 80, errdefs.IsUnavailable, "serves no port-forward"},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := e.srv.TaskPortForward(ctx(t), tc.cluster, tc.id, tc.port)
			if conn != nil {
				conn.Close()
			}
			if !tc.is(err) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("TaskPortForward = %v, want an error of the right kind saying %q", err, tc.says)
			}
			// The public route answers the same, with its kind.
			if tc.port < 1 || tc.port > 65535 {
				return // the client refuses these itself
			}
			conn, err = (&agentproto.ExecClient{Key: e.key}).PortForward(ctx(t), e.portForwardURL(tc.cluster, tc.id), tc.port)
			if conn != nil {
				conn.Close()
			}
			if !tc.is(err) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("port-forward route = %v, want an error of the right kind saying %q", err, tc.says)
			}
		})
	}

	// A read-only key may not forward a port; one allowed
	// vessel:ForwardTaskPort gets past authorization (to the error of the
	// host without an endpoint).
	ro := e.create("auditor", auth.PolicyReadOnly)
	conn, err := (&agentproto.ExecClient{Key: ro}).PortForward(ctx(t), e.portForwardURL("default", id), 80)
	if conn != nil {
		conn.Close()
	}
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "not authorized to perform: vessel:ForwardTaskPort") {
		t.Errorf("read-only port-forward: %v, want AccessDenied for vessel:ForwardTaskPort", err)
	}
	fw := e.create("forwarder", "", "vessel:ForwardTaskPort")
	conn, err = (&agentproto.ExecClient{Key: fw}).PortForward(ctx(t), e.portForwardURL("default", id), 80)
	if conn != nil {
		conn.Close()
	}
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "serves no port-forward") {
		t.Errorf("port-forward with a key allowed vessel:ForwardTaskPort: %v, want the host's Unavailable", err)
	}

	// A stopped task is not running any more.
	if _, err := e.ecs.StopTask(ctx(t), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(arn, "STOPPED")
	conn, err = e.srv.TaskPortForward(ctx(t), "default", id, 80)
	if conn != nil {
		conn.Close()
	}
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "STOPPED: port-forward needs a RUNNING task") {
		t.Errorf("TaskPortForward to a stopped task = %v, want Conflict saying it is STOPPED", err)
	}
}
