package server_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/task"
)

// The rules of a new task are task.New's and task.ResolveRuntime's: every
// maker of a task (RunTask, the service scheduler, the Kubernetes bridge)
// gets the same.

// TestServiceTaskUnknownRuntime: a task definition whose vessel:runtime tag
// names no runtime is refused by RunTask; the service scheduler launches no
// task of it either (it used to store one with runtime "docker", which no
// host could ever take).
func TestServiceTaskUnknownRuntime(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	reg, err := e.ecs.RegisterTaskDefinition(c, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String("bad"), Cpu: aws.String("256"), Memory: aws.String("512"),
		NetworkMode: ecstypes.NetworkModeAwsvpc, RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox")}},
		Tags:                 []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String("docker")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := aws.ToString(reg.TaskDefinition.TaskDefinitionArn)
	_, err = e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(bad)})
	wantAPIError(t, err, "InvalidParameterException", "docker", "microvm, gvisor, runc, sim")

	// The scheduler's pass takes services in name order: once b-good has
	// its task, the pass that launched it has been through a-bad.
	e.createService("a-bad", bad, 1)
	e.createService("b-good", e.register("good", "256", "512", "serve"), 1)
	count := func(service string) int {
		out, err := e.ecs.ListTasks(c, &ecs.ListTasksInput{ServiceName: aws.String(service)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.TaskArns)
	}
	for deadline := time.Now().Add(10 * time.Second); count("b-good") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("service b-good started no task")
		}
	}
	if n := count("a-bad"); n != 0 {
		ts, _ := e.srv.TaskSnapshot(c)
		for _, tk := range ts {
			t.Logf("task %s group %s runtime %q", tk.ID, tk.Group, tk.Runtime)
		}
		t.Fatalf("service a-bad launched %d tasks of a definition whose runtime is not known", n)
	}
}

// TestSubmitTaskStartsFresh: a task handed over by the Kubernetes bridge
// starts as every new task does; placement and observed state the
// submitter left on it are not kept (a stored HostID, for one, placed the
// task without the scheduler).
func TestSubmitTaskStartsFresh(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	code := 1
	then := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	in := &task.Task{Family: "pod", CPUUnits: 256, MemoryMiB: 512,
		HostID: "h9", Subnet: "s9", IP: "10.9.9.9", PullProgress: "1/2 layers",
		LastStatus: task.StatusRunning, DesiredStatus: task.StatusStopped, Version: 9,
		StopCode: task.StopCodeUserInitiated, StoppedReason: "old", CreatedAt: then, StartedAt: then, StoppedAt: then,
		Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true,
			LastStatus: task.StatusStopped, ExitCode: &code, Reason: "old", RuntimeID: "r9", RestartCount: 3, Ready: true,
			StartedAt: then, LastExitCode: &code}}}
	st, err := e.srv.SubmitTask(ctx(t), in)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Containers[0]
	if st.HostID != "" || st.Subnet != "" || st.IP != "" || st.PullProgress != "" || st.StopCode != "" || st.StoppedReason != "" ||
		!st.StartedAt.IsZero() || !st.StoppedAt.IsZero() || st.CreatedAt.Equal(then) ||
		st.LastStatus != task.StatusProvisioning || st.DesiredStatus != task.StatusRunning || st.Version != 1 ||
		st.Group != "family:pod" {
		t.Errorf("the submitted task kept state it was handed: %+v", st)
	}
	if c.LastStatus != task.StatusPending || c.ExitCode != nil || c.Reason != "" || c.RuntimeID != "" || c.RestartCount != 0 ||
		c.Ready || !c.StartedAt.IsZero() || c.LastExitCode != nil {
		t.Errorf("the submitted task's container kept state it was handed: %+v", c)
	}
	if in.HostID != "h9" || in.Version != 9 {
		t.Error("SubmitTask changed the task it was handed")
	}
}

// TestEmptyRuntimeTag: an empty vessel:runtime tag names no runtime.
// CreateService refused it; RunTask took it as "none asked for" and so
// dropped the task definition's tag.
func TestEmptyRuntimeTag(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	_, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(e.register("rt", "256", "512", "true")),
		Tags: []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String("")}}})
	wantAPIError(t, err, "InvalidParameterException", `runtime ""`, "microvm, gvisor, runc, sim")
}

// TestRunTaskOverridesMustFit: RunTask's overrides are held to the task's
// size rules, with ECS's exceptions.
func TestRunTaskOverridesMustFit(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("fit", "256", "512", "true")
	run := func(ov *ecstypes.TaskOverride) error {
		_, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), Overrides: ov})
		return err
	}
	wantAPIError(t, run(&ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"), Memory: aws.Int32(1024)}}}),
		"ClientException", `container "app": memory 1024 MiB exceeds the task's 512 MiB`)
	wantAPIError(t, run(&ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"), Cpu: aws.Int32(512)}}}),
		"ClientException", "the containers' cpu adds up to 512 units, more than the task's 256")
	wantAPIError(t, run(&ecstypes.TaskOverride{EphemeralStorage: &ecstypes.EphemeralStorage{SizeInGiB: 300}}),
		"InvalidParameterException", "overrides.ephemeralStorage.sizeInGiB 300 is out of range: accepted values are 21..200")
	if err := run(&ecstypes.TaskOverride{EphemeralStorage: &ecstypes.EphemeralStorage{SizeInGiB: 30},
		ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String("app"), Cpu: aws.Int32(256), Memory: aws.Int32(512)}}}); err != nil {
		t.Fatalf("overrides that fit: %v", err)
	}
}
