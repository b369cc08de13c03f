package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// TestDNSServiceNames runs two real runc tasks of service "web" and looks
// them up from a third with busybox's nslookup, through the DNS server
// vessel server runs on the subnet's gateway; a stopped task drops out of
// the answers within seconds.
func TestDNSServiceNames(t *testing.T) {
	s := startRuncServer(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	ctx := context.Background()
	for family, cmd := range map[string][]string{
		"web":    {"sleep", "1000"},
		"lookup": {"sh", "-c", "cat /etc/resolv.conf; nslookup web.default.vessel.local; nslookup nothere.default.vessel.local || echo NXDOMAIN-OK"},
	} {
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				Command: cmd, StopTimeout: aws.Int32(2)}}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String("web"), Count: aws.Int32(2), Group: aws.String("service:web")})
	if err != nil || len(out.Tasks) != 2 {
		t.Fatalf("RunTask: %v %+v", err, out)
	}
	var arns, ips []string
	for _, tk := range out.Tasks {
		arn := aws.ToString(tk.TaskArn)
		ip := taskIP(waitFor(t, c, arn, "RUNNING", 60*time.Second))
		if ip == "" {
			t.Fatalf("task %s runs without an IP", arn)
		}
		arns, ips = append(arns, arn), append(ips, ip)
	}

	// lookup runs one lookup task and returns the service's addresses it
	// saw, and its whole output.
	lookup := func() ([]string, string) {
		t.Helper()
		arn := runOne(t, c, "lookup")
		st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
		if code := st.Containers[0].ExitCode; code == nil || *code != 0 {
			t.Fatalf("lookup exited with %v: %s", code, aws.ToString(st.StoppedReason))
		}
		log, _, _ := s.vessel("logs", arn)
		var seen []string
		name := ""
		for _, line := range strings.Split(log, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[0] == "[app]" { // vessel logs' container prefix
				f = f[1:]
			}
			switch {
			case len(f) == 2 && f[0] == "Server:": // a new lookup
				name = ""
			case len(f) == 2 && f[0] == "Name:":
				name = f[1]
			case len(f) == 2 && f[0] == "Address:" && name == "web.default.vessel.local":
				seen = append(seen, f[1])
			}
		}
		slices.Sort(seen)
		return seen, log
	}
	seen, log := lookup()
	if !strings.Contains(log, "search default.vessel.local") || !strings.Contains(log, "NXDOMAIN-OK") {
		t.Fatalf("lookup's resolv.conf or unknown name wrong:\n%s", log)
	}
	want := slices.Sorted(slices.Values(ips))
	if !slices.Equal(seen, want) {
		t.Fatalf("web.default.vessel.local = %v, want %v; lookup's output:\n%s\nserver log:\n%s", seen, want, log, s.log)
	}

	// Stop one: it leaves the answers at once (desired STOPPED), even
	// while its sleep ignores SIGTERM for the 2 s stop timeout.
	if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arns[0])}); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for {
		seen, log = lookup()
		if slices.Equal(seen, []string{ips[1]}) {
			break
		}
		if time.Since(stopped) > 15*time.Second {
			t.Fatalf("15 s after the stop, web.default.vessel.local = %v, want [%s]:\n%s", seen, ips[1], log)
		}
	}
	t.Logf("the stopped task left the answers within %s", time.Since(stopped).Round(100*time.Millisecond))
}
