package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// sliceLogRE finds the slice an agent logs at its start.
var sliceLogRE = regexp.MustCompile(`msg="task addresses come from this host's slice" subnet=subnet-default cidr=\S+ slice=(\S+)`)

// TestFleetAddressesFromSlices: one control plane and three runc hosts,
// each on a machine of its own. The fleet's subnet has slices of /28 (13
// or 14 task addresses a host), so 30 tasks need all three hosts: every
// task's address is distinct and inside its host's slice. Every agent is
// then killed with SIGKILL and started again: each keeps its slice, and
// every task its address; 6 more tasks get addresses no task holds.
func TestFleetAddressesFromSlices(t *testing.T) {
	f := newFleet(t)
	srv := f.Server(fleet.ServerConfig{Args: []string{"--subnet", "subnet-default=10.89.0.0/16,slice=/28"}})
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	var hosts []*fleet.Agent
	for range 3 {
		hosts = append(hosts, f.Agent([]*fleet.Server{srv}, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}}))
	}
	slices := map[string]netip.Prefix{} // host ID → its slice
	for _, h := range hosts {
		m := sliceLogRE.FindAllStringSubmatch(h.Log(), -1)
		if len(m) != 1 {
			t.Fatalf("%s does not log its slice once:\n%s", h.HostID, h.Log())
		}
		p := netip.MustParsePrefix(m[0][1])
		for other, q := range slices {
			if q.Overlaps(p) {
				t.Fatalf("hosts %s and %s have overlapping slices %s and %s", other, h.HostID, q, p)
			}
		}
		if p.Bits() != 28 {
			t.Fatalf("%s has slice %s, want a /28", h.HostID, p)
		}
		slices[h.HostID] = p
	}

	c := srv.ECS()
	ctx := context.Background()
	if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("sliced"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"}, StopTimeout: aws.Int32(2)}}}); err != nil {
		t.Fatal(err)
	}
	run := func(n int) []string {
		var arns []string
		for n > 0 {
			count := min(n, 10)
			out, err := c.RunTask(ctx, &ecs.RunTaskInput{TaskDefinition: aws.String("sliced"), Count: aws.Int32(int32(count))})
			if err != nil || len(out.Tasks) != count {
				t.Fatalf("RunTask of %d: %v %+v", count, err, out)
			}
			for _, tk := range out.Tasks {
				arns = append(arns, aws.ToString(tk.TaskArn))
			}
			n -= count
		}
		return arns
	}
	type placed struct {
		host string
		ip   netip.Addr
	}
	// running waits until every task runs and returns its host and address.
	running := func(arns []string) map[string]placed {
		out := map[string]placed{}
		testutil.Eventually(t, 5*time.Minute, func() error {
			for i := 0; i < len(arns); i += 100 {
				d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: arns[i:min(i+100, len(arns))]})
				if err != nil {
					return err
				}
				for _, tk := range d.Tasks {
					arn := aws.ToString(tk.TaskArn)
					if s := aws.ToString(tk.LastStatus); s != "RUNNING" {
						if s == "STOPPED" {
							t.Fatalf("task %s stopped: %s", arn, aws.ToString(tk.StoppedReason))
						}
						return fmt.Errorf("task %s is %s", arn, s)
					}
					var p placed
					for _, a := range tk.Attributes {
						if aws.ToString(a.Name) == "vessel:host" {
							p.host = aws.ToString(a.Value)
						}
					}
					for _, ct := range tk.Containers {
						for _, ni := range ct.NetworkInterfaces {
							p.ip, _ = netip.ParseAddr(aws.ToString(ni.PrivateIpv4Address))
						}
					}
					if p.host == "" || !p.ip.IsValid() {
						return fmt.Errorf("task %s runs with no host or address: %+v", arn, p)
					}
					out[arn] = p
				}
			}
			return nil
		})
		return out
	}
	// check holds the rules: one address per task, inside its host's slice.
	check := func(what string, got map[string]placed) {
		t.Helper()
		holder := map[netip.Addr]string{}
		perHost := map[string]int{}
		for arn, p := range got {
			if other, dup := holder[p.ip]; dup {
				t.Fatalf("%s: address %s is held by %s and %s", what, p.ip, other, arn)
			}
			holder[p.ip] = arn
			perHost[p.host]++
			if s, ok := slices[p.host]; !ok || !s.Contains(p.ip) {
				t.Fatalf("%s: task %s on %s has %s, outside the host's slice %s", what, arn, p.host, p.ip, s)
			}
		}
		t.Logf("%s: %d tasks, by host %v", what, len(got), perHost)
	}

	first := running(run(30))
	check("30 tasks", first)
	used := map[string]bool{}
	for _, p := range first {
		used[p.host] = true
	}
	if len(used) != 3 {
		t.Fatalf("30 tasks ran on %d hosts, want 3 (a /28 slice holds at most 14)", len(used))
	}

	for _, h := range hosts {
		h.Kill()
		h.Start()
	}
	for _, h := range hosts {
		testutil.Eventually(t, 60*time.Second, func() error {
			if n := strings.Count(h.Log(), "host registered"); n < 2 {
				return fmt.Errorf("%s has not registered again:\n%s", h.HostID, tail(h.Log(), 3000))
			}
			return nil
		})
		m := sliceLogRE.FindAllStringSubmatch(h.Log(), -1)
		if len(m) != 2 || netip.MustParsePrefix(m[1][1]) != slices[h.HostID] {
			t.Fatalf("%s after its restart: slices logged %v, want %s again", h.HostID, m, slices[h.HostID])
		}
	}
	var arns []string
	for arn := range first {
		arns = append(arns, arn)
	}
	after := running(arns)
	for arn, p := range first {
		if after[arn] != p {
			t.Fatalf("task %s had %s on %s, after the agents' restart %s on %s", arn, p.ip, p.host, after[arn].ip, after[arn].host)
		}
	}
	more := running(append(arns, run(6)...))
	check("36 tasks after the restart", more)
}
