package server_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/testenv"
)

func execTaskID(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// execURL is the public exec route of a task.
func (e *env) execURL(cluster, id string) string {
	return e.url + "/vessel/v1/clusters/" + cluster + "/tasks/" + id + "/exec"
}

func TestTaskExecErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	arn := e.run(e.register("exec", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	id := execTaskID(arn)
	true_ := runtime.ExecProcess{Args: []string{"true"}}

	for name, tc := range map[string]struct {
		cluster, id, container string
		p                      runtime.ExecProcess
		is                     func(error) bool
		says                   string
	}{
		"unknown task":        {"default", "0123456789abcdef0123456789abcdef", "app", true_, errdefs.IsNotFound, "not found in cluster default"},
		"other cluster":       {"elsewhere", id, "app", true_, errdefs.IsNotFound, "not found in cluster elsewhere"},
		"wrong container":     {"default", id, "web", true_, errdefs.IsNotFound, `no container "web" (containers: app)`},
		"no command":          {"default", id, "app", runtime.ExecProcess{}, errdefs.IsInvalidArgument, "needs a command"},
		"host serves no exec": {"default", id, "app", true_, errdefs.IsUnavailable, "serves no exec"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.srv.TaskExec(ctx(t), tc.cluster, tc.id, tc.container, tc.p)
			if !tc.is(err) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("TaskExec = %v, want an error of the right kind saying %q", err, tc.says)
			}
		})
	}

	// The public route answers the same errors, with their kinds.
	client := &agentproto.ExecClient{Key: e.key}
	if _, err := client.Exec(ctx(t), e.execURL("default", id), "web", true_); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "containers: app") {
		t.Errorf("exec route, wrong container: %v, want NotFound naming the containers", err)
	}

	// A stopped task is not running any more.
	if _, err := e.ecs.StopTask(ctx(t), &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(arn, "STOPPED")
	if _, err := e.srv.TaskExec(ctx(t), "default", id, "app", true_); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "STOPPED") {
		t.Errorf("TaskExec in a stopped task = %v, want Conflict saying it is STOPPED", err)
	}
}

func TestTaskExecPendingTask(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	arn := e.run(e.register("exec", "256", "512", "sleep", "1000"))
	_, err := e.srv.TaskExec(ctx(t), "default", execTaskID(arn), "", runtime.ExecProcess{Args: []string{"true"}})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "RUNNING") {
		t.Fatalf("TaskExec in a pending task = %v, want Conflict asking for a RUNNING task", err)
	}
}

// TestTaskExecRunc runs commands in a real runc container through
// TaskExec and the public route: the sim agent runs the task, and the
// host's local execer is a runc runtime holding a sandbox of the task's ID.
func TestTaskExecRunc(t *testing.T) {
	testenv.SkipShort(t, "a real runc sandbox")
	if os.Geteuid() != 0 {
		t.Skip("the runc runtime needs root")
	}
	for _, b := range []string{"runc", "conmon"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	e := newEnv(t, envOptions{})
	arn := e.run(e.register("exec", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	id := execTaskID(arn)

	rt, err := runc.New(runc.Config{StateDir: filepath.Join(runtimetest.StateDir(t), "runc")})
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 256, LogDir: t.TempDir(),
		Containers: []runtime.ContainerSpec{{Name: "app", Args: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}}}}
	runtimetest.WithLayer(runtimetest.BusyboxLayer(t))(t, &spec)
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rt.Create(c, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rt.Delete(c, id)
	})
	if err := rt.Start(c, id, "app"); err != nil {
		t.Fatal(err)
	}
	e.srv.SetLocalExecer("h1", rt)

	var stdout, stderr bytes.Buffer
	code, err := e.srv.TaskExec(c, "default", id, "", runtime.ExecProcess{
		Args: []string{"sh", "-c", "cat; echo err >&2; exit 3"}, Stdin: strings.NewReader("hi\n"), Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 3 || stdout.String() != "hi\n" || stderr.String() != "err\n" {
		t.Errorf("TaskExec: code %d, err %v, stdout %q, stderr %q; want 3, \"hi\\n\", \"err\\n\"", code, err, stdout.String(), stderr.String())
	}

	// The public route, with a terminal of a given size.
	sizes := make(chan runtime.TerminalSize, 1)
	sizes <- runtime.TerminalSize{Width: 100, Height: 33}
	stdout.Reset()
	client := &agentproto.ExecClient{Key: e.key}
	code, err = client.Exec(c, e.execURL("default", id), "app", runtime.ExecProcess{
		Args: []string{"sh", "-c", "stty size"}, TTY: true, Resize: sizes, Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != "33 100\r\n" {
		t.Errorf("exec route with a TTY: code %d, err %v, output %q; want 0 and \"33 100\\r\\n\"", code, err, stdout.String())
	}
}
