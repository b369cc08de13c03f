package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
)

// buildTools runs the project's scripts that build the gVisor and micro-VM
// pieces into the cache (idempotent, reused when present).
func buildTools(t testing.TB) {
	t.Helper()
	for _, script := range []string{"build-runsc", "build-guest-kernel"} {
		cmd := exec.Command(repoRoot + "/scripts/" + script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scripts/%s: %v\n%s", script, err, out)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 is required (scripts/setup installs qemu-system-x86): %v", err)
	}
}

// TestEveryRuntime runs the same image under each runtime with `vessel run
// --runtime X` and expects the same output; then a gVisor task and a
// micro-VM task talk over TCP.
func TestEveryRuntime(t *testing.T) {
	requireRoot(t)
	buildTools(t)
	s := startRuncServer(t, "--runtimes", "microvm,gvisor,runc,sim")
	// The server answers before its agent has probed the runtimes.
	testutil.Eventually(t, 90*time.Second, func() error {
		if !strings.Contains(s.log.String(), "Runtimes on this host") {
			return fmt.Errorf("the server has not reported its runtimes:\n%s", s.log)
		}
		return nil
	})
	if !strings.Contains(s.log.String(), "microvm: works") || !strings.Contains(s.log.String(), "gvisor: works") {
		t.Fatalf("the server does not report microvm and gvisor working:\n%s", s.log)
	}
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"true"}, busyboxLayer(t))
	want := "same output in every sandbox: 42"
	for _, rt := range []string{"runc", "gvisor", "microvm"} {
		stdout, stderr, code := s.vessel("run", "--runtime", rt, img, "--", "sh", "-c", "echo same output in every sandbox: $((6*7))")
		if code != 0 || strings.TrimSpace(stdout) != want {
			t.Fatalf("runtime %s: exit %d, stdout %q, want %q\nstderr:\n%s", rt, code, stdout, want, stderr)
		}
		ps, _, _ := s.vessel("ps", "-a")
		if !strings.Contains(ps, rt) {
			t.Errorf("vessel ps does not show runtime %s:\n%s", rt, ps)
		}
	}

	c := s.ecsClient()
	run := func(family, rt string, cmd ...string) string {
		_, err := c.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img), Command: cmd}},
			Tags:                 []ecstypes.Tag{{Key: aws.String("vessel:runtime"), Value: aws.String(rt)}}})
		if err != nil {
			t.Fatal(err)
		}
		return runOne(t, c, family)
	}
	listener := run("gvisor-listener", "gvisor", "sh", "-c", "echo pong | nc -l -p 7171")
	st := waitFor(t, c, listener, "RUNNING", 90*time.Second)
	ip := taskIP(st)
	dialer := run("microvm-dialer", "microvm", "sh", "-c", fmt.Sprintf("sleep 1; echo ping | nc %s 7171", ip))
	done := waitFor(t, c, dialer, "STOPPED", 120*time.Second)
	if code := done.Containers[0].ExitCode; code == nil || *code != 0 {
		t.Fatalf("the micro-VM dialer exited with %v: %s", code, aws.ToString(done.StoppedReason))
	}
	for _, a := range done.Attributes {
		if aws.ToString(a.Name) == "vessel:runtime" && aws.ToString(a.Value) != "microvm" {
			t.Fatalf("the dialer ran under %s, want microvm", aws.ToString(a.Value))
		}
	}
	out, _, _ := s.vessel("logs", dialer)
	if !strings.Contains(out, "pong") {
		t.Fatalf("the micro-VM task did not get the gVisor task's answer; its log:\n%s", out)
	}
}
