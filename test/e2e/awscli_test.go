package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testutil"
)

const taskDefJSON = `{
  "family": "hello",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {"name": "app", "image": "busybox", "essential": true, "command": ["sleep", "1000"],
     "environment": [{"name": "GREETING", "value": "hello"}]}
  ]
}`

// TestAWSCLIEndToEnd drives the built server with the real aws CLI: a task
// definition, a task to RUNNING and back to STOPPED, a Fargate profile
// created and deleted, and the error shapes the CLI shows.
func TestAWSCLIEndToEnd(t *testing.T) {
	s := startServer(t, "--runtime", "sim")
	dir := t.TempDir()
	defFile := filepath.Join(dir, "taskdef.json")
	if err := os.WriteFile(defFile, []byte(taskDefJSON), 0o600); err != nil {
		t.Fatal(err)
	}

	var reg struct {
		TaskDefinition struct {
			TaskDefinitionArn string `json:"taskDefinitionArn"`
			Revision          int    `json:"revision"`
			Status            string `json:"status"`
		} `json:"taskDefinition"`
	}
	s.aws(&reg, "ecs", "register-task-definition", "--cli-input-json", "file://"+defFile)
	if reg.TaskDefinition.Revision != 1 || reg.TaskDefinition.Status != "ACTIVE" {
		t.Fatalf("register-task-definition: %+v", reg)
	}

	var run struct {
		Tasks    []ecsTask `json:"tasks"`
		Failures []any     `json:"failures"`
	}
	s.aws(&run, "ecs", "run-task", "--task-definition", "hello", "--launch-type", "FARGATE",
		"--network-configuration", "awsvpcConfiguration={subnets=[subnet-default]}")
	if len(run.Tasks) != 1 || len(run.Failures) != 0 {
		t.Fatalf("run-task: %+v", run)
	}
	arn := run.Tasks[0].TaskArn
	s.waitStatus(arn, "RUNNING", 30*time.Second)

	var list struct {
		TaskArns []string `json:"taskArns"`
	}
	s.aws(&list, "ecs", "list-tasks", "--family", "hello")
	if len(list.TaskArns) != 1 || list.TaskArns[0] != arn {
		t.Fatalf("list-tasks: %+v", list)
	}

	var stop struct {
		Task ecsTask `json:"task"`
	}
	s.aws(&stop, "ecs", "stop-task", "--task", arn, "--reason", "end of the test")
	if stop.Task.DesiredStatus != "STOPPED" {
		t.Fatalf("stop-task: %+v", stop)
	}
	stopped := s.waitStatus(arn, "STOPPED", 30*time.Second)
	if stopped.StopCode != "UserInitiated" || stopped.StoppedReason != "end of the test" {
		t.Fatalf("stopped task: %+v", stopped)
	}
	if c := stopped.Containers; len(c) != 1 || c[0].ExitCode == nil || *c[0].ExitCode != 143 {
		t.Fatalf("container of a stopped task: %+v", c)
	}

	// A Fargate profile through the EKS API.
	var prof struct {
		FargateProfile struct {
			FargateProfileName string `json:"fargateProfileName"`
			Status             string `json:"status"`
		} `json:"fargateProfile"`
	}
	s.aws(&prof, "eks", "create-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "web",
		"--pod-execution-role-arn", "arn:aws:iam::000000000000:role/pods",
		"--selectors", `[{"namespace":"default","labels":{"app":"web"}}]`)
	if prof.FargateProfile.FargateProfileName != "web" || prof.FargateProfile.Status != "CREATING" {
		t.Fatalf("create-fargate-profile: %+v", prof)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		s.aws(&prof, "eks", "describe-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "web")
		if prof.FargateProfile.Status != "ACTIVE" {
			return fmt.Errorf("profile is %s, want ACTIVE", prof.FargateProfile.Status)
		}
		return nil
	})
	s.aws(&prof, "eks", "delete-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "web")
	if prof.FargateProfile.Status != "DELETING" {
		t.Fatalf("delete-fargate-profile: %+v", prof)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		_, stderr, err := s.awsRaw("", "eks", "describe-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "web")
		if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
			return fmt.Errorf("deleted profile still described: %v %s", err, stderr)
		}
		return nil
	})

	// Error shapes as the CLI shows them.
	_, stderr, err := s.awsRaw("", "ecs", "register-task-definition", "--family", "bad", "--cpu", "256", "--memory", "4096",
		"--network-mode", "awsvpc", "--container-definitions", `[{"name":"a","image":"busybox"}]`)
	if err == nil || !strings.Contains(stderr, "ClientException") || !strings.Contains(stderr, "512, 1024, 2048") {
		t.Fatalf("invalid cpu/memory pair: err %v, stderr %s", err, stderr)
	}
	six := `[{"namespace":"a"},{"namespace":"b"},{"namespace":"c"},{"namespace":"d"},{"namespace":"e"},{"namespace":"f"}]`
	_, stderr, err = s.awsRaw("", "eks", "create-fargate-profile", "--cluster-name", "default", "--fargate-profile-name", "six",
		"--pod-execution-role-arn", "arn:aws:iam::000000000000:role/pods", "--selectors", six)
	if err == nil || !strings.Contains(stderr, "InvalidParameterException") {
		t.Fatalf("six selectors: err %v, stderr %s", err, stderr)
	}
	_, stderr, err = s.awsRaw("", "ecs", "list-tasks", "--cluster", "ghost")
	if err == nil || !strings.Contains(stderr, "ClusterNotFoundException") {
		t.Fatalf("unknown cluster: err %v, stderr %s", err, stderr)
	}
	_, stderr, err = s.awsRaw("wrongwrongwrongwrongwrongwrongwrongwrong", "ecs", "list-clusters")
	if err == nil || !strings.Contains(stderr, "InvalidSignatureException") {
		t.Fatalf("bad signature: err %v, stderr %s", err, stderr)
	}
}
