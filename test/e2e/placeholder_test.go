package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/task"
)

// TestRuncPodIPPlaceholder runs a task whose environment and command hold
// the placeholders the Kubernetes bridge writes before a pod has an IP:
// the host agent replaces them with the task's real IP and node name.
func TestRuncPodIPPlaceholder(t *testing.T) {
	s := startRuncServer(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String("podip"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", `echo "env-ip=$MY_POD_IP node=$MY_NODE_NAME arg-ip=$0"`, task.PlaceholderPodIP},
			Environment: []ecstypes.KeyValuePair{
				{Name: aws.String("MY_POD_IP"), Value: aws.String(task.PlaceholderPodIP)},
				{Name: aws.String("MY_NODE_NAME"), Value: aws.String(task.PlaceholderNodeName)},
			},
			StopTimeout: aws.Int32(2)}}})
	if err != nil {
		t.Fatal(err)
	}
	arn := runOne(t, c, "podip")
	st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
	ip := taskIP(st)
	if ip == "" {
		t.Fatalf("the task has no private IP: %+v", st.Attachments)
	}
	if code := st.Containers[0].ExitCode; code == nil || *code != 0 {
		t.Fatalf("exit code %v: %s", code, aws.ToString(st.StoppedReason))
	}
	out, _, _ := s.vessel("logs", arn)
	want := "env-ip=" + ip + " node=" + task.NodeNameForIP(ip) + " arg-ip=" + ip
	if !strings.Contains(out, want) {
		t.Fatalf("the container printed %q, want %q", strings.TrimSpace(out), want)
	}
}
