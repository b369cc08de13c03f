package server_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// TestRunTaskClientTokenIsIdempotent: the SDK gives every RunTask a
// clientToken and sends the same one when it retries. The chaos run lost a
// RunTask's answer (the call timed out on a loaded host after the task was
// stored) and found the task running at the end, unknown to its client;
// a retry would have started a second one. A RunTask repeated with the
// same token answers with the tasks the first one started.
func TestRunTaskClientTokenIsIdempotent(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	def := e.register("idem", "256", "512", "sleep", "100")
	run := func(token string, count int32) []string {
		t.Helper()
		out, err := e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), ClientToken: aws.String(token), Count: aws.Int32(count)})
		if err != nil {
			t.Fatalf("RunTask with token %q: %v", token, err)
		}
		var arns []string
		for _, tk := range out.Tasks {
			arns = append(arns, aws.ToString(tk.TaskArn))
		}
		return arns
	}
	first := run("token-1", 2)
	again := run("token-1", 2)
	if len(first) != 2 || strings.Join(first, ",") != strings.Join(again, ",") {
		t.Fatalf("RunTask repeated with the same clientToken: %v then %v, want the same two tasks", first, again)
	}
	other := run("token-2", 1)
	if len(other) != 1 || other[0] == first[0] || other[0] == first[1] {
		t.Fatalf("RunTask with another clientToken: %v, want a new task", other)
	}
	list, err := e.ecs.ListTasks(c, &ecs.ListTasksInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.TaskArns) != 3 {
		t.Fatalf("ListTasks: %d tasks %v, want 3", len(list.TaskArns), list.TaskArns)
	}
	_, err = e.ecs.RunTask(c, &ecs.RunTaskInput{TaskDefinition: aws.String(def), ClientToken: aws.String(strings.Repeat("x", 65))})
	wantAPIError(t, err, "InvalidParameterException", "clientToken", "64")
}
