package agent_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/task"
)

// TestMetadataEndpointForTasksNotPods: an ECS task's container gets
// ECS_CONTAINER_METADATA_URI_V4 and reads its own task from it; a pod's
// (a task with a restart policy) gets no such variable, and the endpoint
// does not answer it even when it asks with its own task's path.
func TestMetadataEndpointForTasksNotPods(t *testing.T) {
	e := newEnv(t, time.Second)
	add := func(id, policy, script string) {
		t.Helper()
		tk := &task.Task{ID: id, ARN: "arn:aws:ecs:us-east-1:000000000000:task/default/" + id, Cluster: "default",
			TaskDefinitionArn: "arn:aws:ecs:us-east-1:000000000000:task-definition/meta:7", Family: "meta",
			CPUUnits: 256, MemoryMiB: 512, HostID: "h1", Subnet: "t", RestartPolicy: policy,
			LastStatus: task.StatusPending, DesiredStatus: task.StatusRunning, CreatedAt: time.Now(),
			Containers: []task.Container{{Name: "app", Image: "busybox", Essential: true,
				EntryPoint: []string{"/bin/sh", "-c", script}, StopTimeout: 2 * time.Second}}}
		if err := tk.ValidateRestartAndProbes(); err != nil {
			t.Fatal(err)
		}
		e.cp.add(tk)
	}
	stamp := fmt.Sprintf("%s-%d", time.Now().Format("150405"), os.Getpid())
	ecsID, podID := "meta-ecs-"+stamp, "meta-pod-"+stamp
	add(ecsID, "", `echo "env=$ECS_CONTAINER_METADATA_URI_V4"; wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task; echo; echo END; exec sleep 1000`)
	add(podID, task.RestartAlways, `echo "env=${ECS_CONTAINER_METADATA_URI_V4:-none}"
if wget -q -O - http://169.254.170.2/v4/`+podID+`-app/task; then echo ANSWERED; else echo REFUSED; fi; echo END; exec sleep 1000`)

	log := logOf(t, e, ecsID)
	if !strings.Contains(log, "env=http://169.254.170.2/v4/"+ecsID+"-app\n") ||
		!strings.Contains(log, `"TaskARN":"arn:aws:ecs:us-east-1:000000000000:task/default/`+ecsID+`"`) ||
		!strings.Contains(log, `"Revision":"7"`) {
		t.Errorf("the ECS task did not read its own metadata; its log:\n%s", log)
	}
	log = logOf(t, e, podID)
	if !strings.Contains(log, "env=none\n") || !strings.Contains(log, "REFUSED") || strings.Contains(log, "TaskARN") {
		t.Errorf("a pod got the metadata endpoint; its log:\n%s", log)
	}
}
