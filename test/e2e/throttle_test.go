package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLIThrottling drives the built server with the real aws CLI (no
// retries) until it is throttled: Fargate's launch bucket refuses a RunTask
// it cannot serve whole, and the access key's request bucket then refuses
// ECS and EKS calls, each with AWS's own answer. The buckets refill at one
// token in 1,000 s: the test counts tokens, it does not time them.
func TestAWSCLIThrottling(t *testing.T) {
	s := startServer(t, "--runtime", "sim", "--api-rate", "0.001", "--api-burst", "5",
		"--launch-rate", "0.001", "--launch-burst", "10")
	defFile := filepath.Join(t.TempDir(), "taskdef.json")
	if err := os.WriteFile(defFile, []byte(taskDefJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	s.aws(nil, "ecs", "register-task-definition", "--cli-input-json", "file://"+defFile) // request 1
	var run struct {
		Tasks []ecsTask `json:"tasks"`
	}
	s.aws(&run, "ecs", "run-task", "--task-definition", "hello", "--count", "10") // request 2, launches 1-10
	if len(run.Tasks) != 10 {
		t.Fatalf("run-task --count 10 on a full bucket of 10: %d tasks", len(run.Tasks))
	}
	throttled := func(code, op, message string, args ...string) {
		t.Helper()
		_, stderr, err := s.awsRaw("", args...)
		want := "An error occurred (" + code + ") when calling the " + op + " operation"
		if err == nil || !strings.Contains(stderr, want) || !strings.HasSuffix(strings.TrimSpace(stderr), message) {
			t.Fatalf("aws %s: %v, stderr %q; want %q ... %q", strings.Join(args, " "), err, stderr, want, message)
		}
	}
	throttled("ThrottlingException", "RunTask", "Rate exceeded", "ecs", "run-task", "--task-definition", "hello") // request 3
	var list struct {
		TaskArns []string `json:"taskArns"`
	}
	s.aws(&list, "ecs", "list-tasks") // request 4
	if len(list.TaskArns) != 10 {
		t.Fatalf("a throttled run-task launched tasks: %d", len(list.TaskArns))
	}
	s.aws(nil, "ecs", "list-clusters") // request 5, the last token
	throttled("ThrottlingException", "DescribeClusters", "Rate exceeded", "ecs", "describe-clusters")
	throttled("ThrottlingException", "ListClusters", "Rate exceeded", "eks", "list-clusters")
}
