package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// TestNamesOnEveryHost: one control plane and three runc hosts, each
// answering DNS on its subnet's gateway, fed by the control plane. A
// service of three tasks is spread over the hosts, and three standalone
// tasks run wherever they are placed. From the service's task on each
// host, `<service>.<cluster>.vessel.local` resolves to the service's tasks
// on all three hosts and `<task-id>.<cluster>.vessel.local` to every task,
// on whichever host it runs. A stopped task's names go away on every host.
//
// Each host has a slice of the fleet's subnet of its own, so that no two
// tasks share an address; the subnet's gateway, where every host answers
// DNS, is the same on every host.
func TestNamesOnEveryHost(t *testing.T) {
	f := newFleet(t)
	s := f.Server(fleet.ServerConfig{})
	s.WaitHealthy(60 * time.Second)
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	gateways := map[string]string{} // a host's ID to its subnet's gateway
	for range 3 {
		a := f.Agent([]*fleet.Server{s}, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}})
		gateways[a.HostID] = "10.89.0.1" // the servers' default subnet-default=10.89.0.0/16
	}
	c := s.ECS()
	ctx := context.Background()
	if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("names"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}, StopTimeout: aws.Int32(2)}}}); err != nil {
		t.Fatal(err)
	}
	run := func(group string) []string {
		t.Helper()
		in := &ecs.RunTaskInput{TaskDefinition: aws.String("names"), Count: aws.Int32(3)}
		if group != "" {
			in.Group = aws.String(group)
		}
		out, err := c.RunTask(ctx, in)
		if err != nil || len(out.Tasks) != 3 {
			t.Fatalf("RunTask %q: %v %+v", group, err, out)
		}
		var arns []string
		for _, tk := range out.Tasks {
			arns = append(arns, aws.ToString(tk.TaskArn))
		}
		return arns
	}
	// A service's tasks are spread over the hosts.
	web, solo := run("service:web"), run("")
	ips, hosts := map[string]string{}, map[string]string{} // task ARN to IP, and to host
	for _, arn := range append(slices.Clone(web), solo...) {
		tk := waitFor(t, c, arn, "RUNNING", 120*time.Second)
		if ips[arn] = taskIP(tk); ips[arn] == "" {
			t.Fatalf("task %s runs without an IP", arn)
		}
		for _, a := range tk.Attributes {
			if aws.ToString(a.Name) == "vessel:host" {
				hosts[arn] = aws.ToString(a.Value)
			}
		}
	}
	hostOf := func(arn string) string { return hosts[arn] }
	onHost := map[string]string{} // a host's ID to the service's task there
	for _, arn := range web {
		onHost[hostOf(arn)] = arn
	}
	if len(onHost) != 3 {
		t.Fatalf("the service's tasks are not one on each host: %v", ips)
	}
	webIPs := func(arns []string) []string {
		var out []string
		for _, a := range arns {
			out = append(out, ips[a])
		}
		slices.Sort(out)
		return out
	}

	// Every task names its own host's gateway.
	for host, arn := range onHost {
		out, stderr, err := s.Vessel("exec", arn, "--", "cat", "/etc/resolv.conf")
		if err != nil || !strings.Contains(out, "nameserver "+gateways[host]+"\n") || !strings.Contains(out, "search default.vessel.local") {
			t.Fatalf("resolv.conf of %s on %s: %v %s\n%s\nwant nameserver %s and search default.vessel.local", arn, host, err, stderr, out, gateways[host])
		}
	}

	// resolve asks name of the DNS server of from's host, through
	// nslookup in from, and returns the addresses it answers (none for
	// NXDOMAIN).
	resolve := func(from, name string) ([]string, string) {
		t.Helper()
		out, stderr, err := s.Vessel("exec", from, "--", "sh", "-c", "nslookup -type=a "+name+" 2>&1; true")
		if err != nil {
			t.Fatalf("vessel exec %s: %v %s", from, err, stderr)
		}
		return nslookupAddrs(out, name), out
	}
	// names checks, from a task on every host (onHost), that the service
	// resolves to want, every task of tasks to its address, and those of
	// gone to nothing.
	names := func(want []string, tasks, gone []string) error {
		for host, from := range onHost {
			if got, out := resolve(from, "web.default.vessel.local"); !slices.Equal(got, want) {
				return fmt.Errorf("from %s, web.default.vessel.local = %v, want %v:\n%s", host, got, want, out)
			}
			for _, arn := range tasks {
				name := taskID(arn) + ".default.vessel.local"
				if got, out := resolve(from, name); !slices.Equal(got, []string{ips[arn]}) {
					return fmt.Errorf("from %s, %s (on %s) = %v, want [%s]:\n%s", host, name, hostOf(arn), got, ips[arn], out)
				}
			}
			for _, arn := range gone {
				name := taskID(arn) + ".default.vessel.local"
				if got, out := resolve(from, name); len(got) != 0 || !strings.Contains(out, "NXDOMAIN") {
					return fmt.Errorf("from %s, the stopped task's %s = %v, want NXDOMAIN:\n%s", host, name, got, out)
				}
			}
		}
		return nil
	}
	all := append(slices.Clone(web), solo...)
	testutil.Eventually(t, 30*time.Second, func() error { return names(webIPs(web), all, nil) })

	// Stop one of the service's tasks and a standalone task on another
	// host (or the same, if all standalone tasks run there): their names go
	// away on every host.
	stopWeb := web[0]
	stopSolo := solo[0]
	for _, arn := range solo {
		if hostOf(arn) != hostOf(stopWeb) {
			stopSolo = arn
			break
		}
	}
	for _, arn := range []string{stopWeb, stopSolo} {
		if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Task: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
	}
	left := slices.DeleteFunc(slices.Clone(all), func(a string) bool { return a == stopWeb || a == stopSolo })
	// The stopped task's host asks through a standalone task of its own,
	// if one still runs there.
	delete(onHost, hostOf(stopWeb))
	for _, arn := range left {
		if _, ok := onHost[hostOf(arn)]; !ok {
			onHost[hostOf(arn)] = arn
		}
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		return names(webIPs(web[1:]), left, []string{stopWeb, stopSolo})
	})
}

// nslookupAddrs returns the addresses busybox nslookup printed for name,
// sorted.
func nslookupAddrs(out, name string) []string {
	var addrs []string
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Server:":
			cur = ""
		case len(f) == 2 && f[0] == "Name:":
			cur = f[1]
		case len(f) == 2 && f[0] == "Address:" && strings.EqualFold(strings.TrimSuffix(cur, "."), name):
			addrs = append(addrs, f[1])
		}
	}
	slices.Sort(addrs)
	return addrs
}
