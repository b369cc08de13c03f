package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// runTask places a task of the given containers and volumes, with the
// ephemeral storage given (GiB), and returns its ID.
func (e *env) runTask(storageGiB int32, vols []task.Volume, cs ...task.Container) string {
	e.t.Helper()
	e.n++
	id := fmt.Sprintf("ag-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), e.n)
	for i := range cs {
		cs[i].Image, cs[i].StopTimeout = "busybox", 2*time.Second
	}
	t := &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
		CPUUnits: 256, MemoryMiB: 512, EphemeralStorageGiB: storageGiB, HostID: "h1", Subnet: "t",
		LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
		Volumes: vols, Containers: cs}
	if err := t.ValidateVolumes(); err != nil {
		e.t.Fatal(err)
	}
	e.cp.add(t)
	return id
}

func shell(name, script string) task.Container {
	return task.Container{Name: name, Essential: true, EntryPoint: []string{"/bin/sh", "-c", script}}
}

// TestEmptyDirFullAtEphemeralStorage: a container filling a disk emptyDir
// of a task with 1 GiB of ephemeral storage gets ENOSPC before 1 GiB,
// while the host's disk has room.
func TestEmptyDirFullAtEphemeralStorage(t *testing.T) {
	e := newEnv(t, time.Second)
	app := shell("app", `dd if=/dev/zero of=/scratch/big bs=1M count=1024 2>/tmp/err; r=$?
cat /tmp/err >&2; ls -l /scratch >&2
if grep -q "No space left" /tmp/err; then exit 28; fi; exit $r`)
	app.MountPoints = []task.MountPoint{{SourceVolume: "scratch", ContainerPath: "/scratch"}}
	id := e.runTask(1, []task.Volume{{Name: "scratch", EmptyDir: &task.EmptyDir{}}}, app)
	got := e.waitFor(id, 120*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	if c := got.Containers[0]; c.ExitCode == nil || *c.ExitCode != 28 {
		code := "none"
		if c.ExitCode != nil {
			code = fmt.Sprint(*c.ExitCode)
		}
		t.Errorf("writing 1 GiB into the emptyDir of a task of 1 GiB: exit code %s, want 28 (ENOSPC); task %s, reason %q",
			code, got.LastStatus, got.StoppedReason)
	}
}

// TestSubPathSwappedByAnotherContainer: the agent-level form of the
// conformance cases: an init container swaps sub-path x of an emptyDir
// for a link to the host's root, then the app container mounting x
// starts. It must not see the host (exit 42); failing to start is right.
func TestSubPathSwappedByAnotherContainer(t *testing.T) {
	e := newEnv(t, time.Second)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	init := shell("init", `mkdir -p /vol/x && rm -rf /vol/x && ln -s / /vol/x`)
	init.Essential = false
	init.MountPoints = []task.MountPoint{{SourceVolume: "data", ContainerPath: "/vol"}}
	app := shell("app", `if [ -e /sub`+secret+` ] || [ -d /sub/proc ]; then echo escaped; exit 42; fi; exit 0`)
	app.MountPoints = []task.MountPoint{{SourceVolume: "data", ContainerPath: "/sub", SubPath: "x"}}
	app.DependsOn = []task.Dependency{{Container: "init", Condition: task.ConditionSuccess}}
	id := e.runTask(1, []task.Volume{{Name: "data", EmptyDir: &task.EmptyDir{}}}, init, app)
	got := e.waitFor(id, 60*time.Second, "STOPPED", func(t *task.Task) bool { return t.Stopped() })
	var c task.Container
	for _, x := range got.Containers {
		if x.Name == "app" {
			c = x
		}
	}
	if c.ExitCode != nil && *c.ExitCode == 42 {
		t.Fatalf("the app container saw the host's root through its sub-path")
	}
	if c.ExitCode != nil && *c.ExitCode == 0 {
		t.Errorf("the app container ran with its sub-path swapped for a link; want a failed start")
	}
	t.Logf("app: exit code %v, reason %q; task: %q", c.ExitCode, c.Reason, got.StoppedReason)
	if !strings.Contains(c.Reason+got.StoppedReason, "sub-path") {
		t.Errorf("reason %q / %q does not say the sub-path was refused", c.Reason, got.StoppedReason)
	}
}
