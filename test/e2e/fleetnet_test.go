package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// TestFleetServiceAcrossHosts: one control plane and three runc hosts as
// one network, with each back end. A service of six tasks serving HTTP is
// spread over the hosts; from a task on each host, a task on every other
// host answers by its IP and by `<task-id>.default.vessel.local`, the
// service answers by `web.default.vessel.local`, and 20 MB cross from
// another host whole (the tunnel's MTU). The boundary holds across hosts:
// no task reaches a host's address or the control plane's port, and tasks
// of another subnet reach neither the service's tasks, on their host or
// another, while they reach each other across hosts.
func TestFleetServiceAcrossHosts(t *testing.T) {
	for _, backend := range []string{"vxlan", "host-gw"} {
		t.Run(backend, func(t *testing.T) { testFleetServiceAcrossHosts(t, backend) })
	}
}

func testFleetServiceAcrossHosts(t *testing.T, backend string) {
	f := newFleet(t)
	s := f.Server(fleet.ServerConfig{Args: []string{"--fleet-network", backend,
		"--subnet", "subnet-default=10.89.0.0/16", "--subnet", "other=10.90.0.0/16"}})
	s.WaitHealthy(60 * time.Second)
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	var agents []*fleet.Agent
	for range 3 {
		agents = append(agents, f.Agent([]*fleet.Server{s}, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}}))
	}
	c := s.ECS()
	ctx := context.Background()
	register := func(family, script string) {
		t.Helper()
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				Command: []string{"sh", "-c", script}, StopTimeout: aws.Int32(2)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Each task serves its own ID (its hostname) and 20 MB.
	register("web", "mkdir -p /www && hostname > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=20 2>/dev/null && exec httpd -f -p 8080 -h /www")
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String("web"), TaskDefinition: aws.String("web"),
		DesiredCount: aws.Int32(6), LaunchType: ecstypes.LaunchTypeFargate,
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"subnet-default"}}}}); err != nil {
		t.Fatal(err)
	}
	// Three tasks of the other subnet, spread by their group.
	out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String("web"), Count: aws.Int32(3), Group: aws.String("service:probe"),
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"other"}}}})
	if err != nil || len(out.Tasks) != 3 {
		t.Fatalf("RunTask in subnet other: %v %+v", err, out)
	}
	var others []string
	for _, tk := range out.Tasks {
		others = append(others, aws.ToString(tk.TaskArn))
	}
	testutil.Eventually(t, 180*time.Second, func() error {
		if svc := describeService(t, c, "web"); !serviceSteady(svc) {
			return fmt.Errorf("service web is not steady: running %d pending %d", svc.RunningCount, svc.PendingCount)
		}
		return nil
	})
	type placed struct{ arn, ip, host string }
	where := func(arns []string) []placed {
		t.Helper()
		var out []placed
		for _, arn := range arns {
			tk := waitFor(t, c, arn, "RUNNING", 120*time.Second)
			out = append(out, placed{arn: arn, ip: taskIP(tk), host: taskHost(tk)})
		}
		return out
	}
	web := where(serviceTaskARNs(t, c, "web"))
	other := where(others)
	byHost := map[string][]placed{}
	for _, p := range web {
		byHost[p.host] = append(byHost[p.host], p)
		if !strings.HasPrefix(p.ip, "10.89.") {
			t.Fatalf("task %s of the service (subnet-default) has address %s", p.arn, p.ip)
		}
	}
	otherOn := map[string]placed{}
	for _, p := range other {
		otherOn[p.host] = p
		if !strings.HasPrefix(p.ip, "10.90.") {
			t.Fatalf("task %s of subnet other has address %s", p.arn, p.ip)
		}
	}
	if len(byHost) != 3 || len(otherOn) != 3 {
		t.Fatalf("the tasks are not spread over the three hosts: service %v, other %v", web, other)
	}

	// sh runs script in task arn and returns its output and whether it
	// exited 0.
	sh := func(arn, script string) (string, bool) {
		t.Helper()
		out, stderr, err := s.Vessel("exec", arn, "--", "sh", "-c", script)
		return strings.TrimSpace(out + stderr), err == nil
	}
	// fetch GETs / of addr:8080 (an IP or a name) from task from with nc
	// (the static busybox's wget crashes here) and returns the body.
	fetch := func(from, addr string) (string, bool) {
		out, ok := sh(from, `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 `+addr+` 8080`)
		head, body, found := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
		return strings.TrimSpace(body), ok && found && strings.HasPrefix(head, "HTTP/1.1 200")
	}

	// Every task on every host, by address and by name, from every host.
	idOf := map[string]string{} // a task's IP to what it serves (its hostname)
	for _, p := range web {
		id, ok := sh(p.arn, "cat /www/index.html")
		if !ok || id == "" {
			t.Fatalf("task %s serves %q", p.arn, id)
		}
		idOf[p.ip] = id
	}
	served := slices.Collect(func(yield func(string) bool) {
		for _, id := range idOf {
			if !yield(id) {
				return
			}
		}
	})
	for host, local := range byHost {
		from := local[0]
		for _, to := range web {
			if to.host == host {
				continue
			}
			testutil.Eventually(t, 30*time.Second, func() error {
				if got, ok := fetch(from.arn, to.ip); !ok || got != idOf[to.ip] {
					return fmt.Errorf("from %s on %s, http://%s:8080/ (on %s) answered %q (ok %v), want %q", taskID(from.arn), host, to.ip, to.host, got, ok, idOf[to.ip])
				}
				name := taskID(to.arn) + ".default.vessel.local"
				if got, ok := fetch(from.arn, name); !ok || got != idOf[to.ip] {
					return fmt.Errorf("from %s on %s, http://%s:8080/ answered %q (ok %v), want %q", taskID(from.arn), host, name, got, ok, idOf[to.ip])
				}
				return nil
			})
		}
		if got, ok := fetch(from.arn, "web.default.vessel.local"); !ok || !slices.Contains(served, got) {
			t.Errorf("from %s on %s, http://web.default.vessel.local:8080/ answered %q (ok %v), want one of %v", taskID(from.arn), host, got, ok, served)
		}
	}

	// 20 MB from a task on another host, whole.
	var a, b placed
	for _, p := range web {
		if p.host != web[0].host {
			a, b = web[0], p
			break
		}
	}
	got, ok := sh(a.arn, `printf 'GET /big HTTP/1.0\r\n\r\n' | nc -w 30 `+b.ip+` 8080 > /tmp/big.http; head -n 1 /tmp/big.http; grep -c -m 1 'Content-Length: 20971520' /tmp/big.http; ls -l /tmp/big.http`)
	size := regexp.MustCompile(`\s(\d+)\s+\w+\s+\d+\s+[\d:]+\s+/tmp/big.http`).FindStringSubmatch(got)
	n := 0
	if size != nil {
		n, _ = strconv.Atoi(size[1])
	}
	if !ok || !strings.HasPrefix(got, "HTTP/1.1 200") || n < 20971520 || n > 20971520+512 {
		t.Errorf("20 MB from %s (%s) to %s (%s): want the whole 20971520 bytes and their headers: %v\n%s", b.ip, b.host, a.ip, a.host, ok, got)
	}

	// The boundary across hosts: no host's address, no control-plane port.
	addrs := map[string]string{s.Machine().Name: s.Machine().Addr.String()}
	for _, ag := range agents {
		addrs[ag.HostID] = ag.Machine().Addr.String()
	}
	for host, local := range byHost {
		from := local[0].arn
		for name, addr := range addrs {
			port := "8700" // an agent's endpoint
			if name == s.Machine().Name {
				port = "8600"
			}
			if got, ok := sh(from, "nc -w 2 "+addr+" "+port+" </dev/null && echo connected"); ok || strings.Contains(got, "connected") {
				t.Errorf("task %s on %s reached %s (%s:%s): ok %v, %q", taskID(from), host, name, addr, port, ok, got)
			}
		}
	}

	// Another subnet: its tasks reach each other across hosts, and no
	// task of the service, on their host or another.
	for host, p := range otherOn {
		for _, q := range other {
			if q.host == host {
				continue
			}
			testutil.Eventually(t, 30*time.Second, func() error {
				if _, ok := fetch(p.arn, q.ip); !ok {
					return fmt.Errorf("task %s of subnet other on %s does not reach %s of the same subnet on %s", taskID(p.arn), host, q.ip, q.host)
				}
				return nil
			})
		}
		for _, to := range []placed{byHost[host][0], web[slices.IndexFunc(web, func(w placed) bool { return w.host != host })]} {
			if got, ok := sh(p.arn, "nc -w 2 "+to.ip+" 8080 </dev/null && echo connected"); ok || strings.Contains(got, "connected") {
				t.Errorf("task %s of subnet other on %s reached %s of subnet-default on %s: %q", taskID(p.arn), host, to.ip, to.host, got)
			}
		}
	}
}
