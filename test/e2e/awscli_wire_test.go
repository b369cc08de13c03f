package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/server/wiretest"
)

// awsWith runs the aws CLI at cli against the server and returns its
// stdout, stderr and exit code.
func (s *server) awsWith(cli string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(cli, append(args, "--endpoint-url", s.endpoint)...)
	cmd.Env = s.awsEnv("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%s %s: %v", cli, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), code
}

// TestAWSCLIWireBothVersions reads Vessel's answers with aws CLI v2
// (Debian's, which scripts/setup installs) and, where installed, v1: the
// empty lists are there for --query to count, and an error's exit code and
// message are the CLI's usual ones.
func TestAWSCLIWireBothVersions(t *testing.T) {
	if _, err := os.Stat(wiretest.CLIv2); err != nil {
		t.Fatalf("aws CLI v2 is not at %s: run scripts/setup (the README's commands) to install it: %v", wiretest.CLIv2, err)
	}
	s := startServer(t, "--runtime", "sim")
	if _, stderr, code := s.awsWith(wiretest.CLIv2, "ecs", "create-cluster", "--cluster-name", "empty"); code != 0 {
		t.Fatalf("create-cluster: exit %d: %s", code, stderr)
	}
	for _, cli := range []struct{ name, path string }{{"v2", wiretest.CLIv2}, {"v1", wiretest.CLIv1()}} {
		t.Run(cli.name, func(t *testing.T) {
			if cli.path == "" {
				t.Skip("no aws CLI v1 is installed (pyenv's; it is not installable from this project's package sources)")
			}
			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"ecs", "list-tasks", "--cluster", "empty", "--query", "length(taskArns)"}, "0"},
				{[]string{"ecs", "list-services", "--cluster", "empty", "--query", "length(serviceArns)"}, "0"},
				{[]string{"ecs", "list-clusters", "--query", "length(clusterArns)"}, "2"},
				{[]string{"ecs", "list-task-definitions", "--query", "length(taskDefinitionArns)"}, "0"},
				{[]string{"ecs", "describe-tasks", "--cluster", "empty", "--tasks", "0123456789abcdef0123456789abcdef",
					"--query", "[length(tasks), length(failures), failures[0].reason]"}, "0\t1\tMISSING"},
				{[]string{"ecs", "describe-services", "--cluster", "empty", "--services", "ghost",
					"--query", "[length(services), failures[0].reason]"}, "0\tMISSING"},
				{[]string{"ecs", "describe-clusters", "--clusters", "empty", "--query", "[length(clusters), length(failures)]"}, "1\t0"},
				{[]string{"eks", "list-fargate-profiles", "--cluster-name", "empty", "--query", "length(fargateProfileNames)"}, "0"},
				{[]string{"eks", "list-clusters", "--query", "length(clusters)"}, "2"},
			} {
				out, stderr, code := s.awsWith(cli.path, append(c.args, "--output", "text")...)
				if code != 0 || out != c.want {
					t.Errorf("aws %s: exit %d, printed %q, want %q\n%s", strings.Join(c.args, " "), code, out, c.want, stderr)
				}
			}
			// Errors: the CLI exits 254 (v2) or 255 (v1) and names the
			// exception and the operation.
			wantCode := 254
			if cli.name == "v1" {
				wantCode = 255
			}
			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"ecs", "list-tasks", "--cluster", "ghost"}, "An error occurred (ClusterNotFoundException) when calling the ListTasks operation"},
				{[]string{"ecs", "describe-task-definition", "--task-definition", "ghost"}, "An error occurred (ClientException) when calling the DescribeTaskDefinition operation"},
				{[]string{"eks", "describe-fargate-profile", "--cluster-name", "empty", "--fargate-profile-name", "ghost"},
					"An error occurred (ResourceNotFoundException) when calling the DescribeFargateProfile operation"},
			} {
				_, stderr, code := s.awsWith(cli.path, c.args...)
				if code != wantCode || !strings.Contains(stderr, c.want) {
					t.Errorf("aws %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stderr, wantCode, c.want)
				}
			}
		})
	}
}
