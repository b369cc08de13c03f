package agent_test

import (
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// runAsNonRootMessage is the kubelet's (and the runtimes') words for a
// root user with runAsNonRoot.
const runAsNonRootMessage = "container has runAsNonRoot and image will run as root"

// A pod's container with runAsNonRoot whose user is root does not start:
// it waits with the kubelet's CreateContainerConfigError while the task
// stays up, as the kubelet keeps the pod Pending.
func TestRunAsNonRootRootUserWaitsWithConfigError(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	id := e.run(task.RestartAlways, "echo started; sleep 60", func(c *task.Container) {
		c.Security = &task.Security{RunAsNonRoot: true} // busybox runs as root
	})
	got := e.waitFor(id, 60*time.Second, "a CreateContainerConfigError", func(t *task.Task) bool {
		return t.Containers[0].Reason != "" || t.Containers[0].LastStatus == task.StatusRunning || t.DesiredStatus == task.StatusStopped
	})
	c := got.Containers[0]
	if !strings.HasPrefix(c.Reason, task.ReasonCreateContainerConfigError+": ") || !strings.Contains(c.Reason, runAsNonRootMessage) {
		t.Fatalf("container reason = %q, want %s: %s ...", c.Reason, task.ReasonCreateContainerConfigError, runAsNonRootMessage)
	}
	if got.DesiredStatus != task.StatusRunning || got.StopCode != "" {
		t.Errorf("task is %s (stop code %q), want it kept while the container waits", got, got.StopCode)
	}
	if c.LastStatus == task.StatusRunning || c.ExitCode != nil {
		t.Errorf("container status %s exit %v, want it never started", c.LastStatus, c.ExitCode)
	}
}

// An ECS task's container refused by the runtime fails the task to start.
func TestRunAsNonRootRootUserFailsECSTask(t *testing.T) {
	e := newEnv(t, 100*time.Millisecond)
	id := e.run("", "echo started; sleep 60", func(c *task.Container) {
		c.Security = &task.Security{RunAsNonRoot: true}
	})
	got := e.waitFor(id, 60*time.Second, "the task to stop", func(t *task.Task) bool {
		return t.DesiredStatus == task.StatusStopped || t.Containers[0].LastStatus == task.StatusRunning
	})
	if got.StopCode != task.StopCodeTaskFailedToStart || !strings.Contains(got.StoppedReason, runAsNonRootMessage) {
		t.Errorf("stop code %q reason %q, want %s with %q", got.StopCode, got.StoppedReason, task.StopCodeTaskFailedToStart, runAsNonRootMessage)
	}
}
