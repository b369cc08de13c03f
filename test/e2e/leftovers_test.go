package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/vishvananda/netlink"
)

// hostState is what sandboxes could leave behind on the host.
type hostState struct {
	processes []string // conmon and container processes naming the data dir
	mounts    []string
	cgroups   []string
	netns     []string
	veths     []string
	leases    int
}

func (h hostState) String() string {
	return fmt.Sprintf("processes %v\nmounts %v\ncgroups %v\nnetns %v\nveths %v\nleases %d",
		h.processes, h.mounts, h.cgroups, h.netns, h.veths, h.leases)
}

// snapshotHost looks at what the server on dataDir could leave behind.
// Veths count only on the bridges of subnet: other test packages running at
// the same time make their own.
func snapshotHost(t *testing.T, dataDir, subnet string) hostState {
	t.Helper()
	var h hostState
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, dataDir) && !strings.Contains(cmd, "vessel server") {
			h.processes = append(h.processes, cmd)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, dataDir) {
				h.mounts = append(h.mounts, line)
			}
		}
	}
	// Cgroups of this server's tasks (other packages' sandboxes come and go).
	tasks := map[string]bool{}
	if entries, err := os.ReadDir(filepath.Join(dataDir, "logs")); err == nil {
		for _, e := range entries {
			tasks[e.Name()] = true
		}
	}
	for _, root := range []string{"/sys/fs/cgroup/memory/vessel", "/sys/fs/cgroup/pids/vessel", "/sys/fs/cgroup/cpu/vessel", "/sys/fs/cgroup/cpu,cpuacct/vessel", "/sys/fs/cgroup/vessel"} {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.IsDir() && tasks[e.Name()] {
				h.cgroups = append(h.cgroups, filepath.Join(root, e.Name()))
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "network", "netns"))
	for _, e := range entries {
		h.netns = append(h.netns, e.Name())
	}
	_, cidr, _ := net.ParseCIDR(subnet)
	links, _ := netlink.LinkList()
	ours := map[int]bool{}
	for _, l := range links {
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if cidr != nil && cidr.Contains(a.IP) {
				ours[l.Attrs().Index] = true
			}
		}
	}
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, "vh") && ours[l.Attrs().MasterIndex] {
			h.veths = append(h.veths, l.Attrs().Name)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "network", "leases.json")); err == nil {
		var v struct {
			Leases map[string]json.RawMessage `json:"leases"`
		}
		if json.Unmarshal(b, &v) == nil {
			h.leases = len(v.Leases)
		} else {
			var list []json.RawMessage
			if json.Unmarshal(b, &list) == nil {
				h.leases = len(list)
			}
		}
	}
	return h
}

// TestNothingLeftBehind runs 50 tasks to their end and checks that no
// process, mount, cgroup, network namespace, veth or IP lease remains.
func TestNothingLeftBehind(t *testing.T) {
	s := startRuncServer(t, "--cpu-allocation-ratio", "16", "--memory-allocation-ratio", "4")
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"true"}, busyboxLayer(t))
	c := s.ecsClient()
	before := snapshotHost(t, s.dataDir, s.subnet)

	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String("many"),
		Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", "echo hi; sleep 0.5"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for i := 0; i < 5; i++ {
		out, err := c.RunTask(context.Background(), &ecs.RunTaskInput{TaskDefinition: aws.String("many"), Count: aws.Int32(10)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range out.Tasks {
			arns = append(arns, aws.ToString(tk.TaskArn))
		}
	}
	for _, arn := range arns {
		st := waitFor(t, c, arn, "STOPPED", 120*time.Second)
		if code := st.Containers[0].ExitCode; code == nil || *code != 0 {
			t.Fatalf("task %s: exit %v, reason %q", arn, code, aws.ToString(st.StoppedReason))
		}
	}
	after := snapshotHost(t, s.dataDir, s.subnet)
	if len(after.processes) > 0 || len(after.mounts) > 0 || len(after.cgroups) > 0 || len(after.netns) > 0 ||
		len(after.veths) > 0 || after.leases > 0 {
		t.Fatalf("left behind after 50 tasks:\nbefore:\n%s\nafter:\n%s\nserver log of those tasks:\n%s",
			before, after, logLinesOf(s, after.netns))
	}
}

// logLinesOf returns the server's log lines that name one of ids.
func logLinesOf(s *server, ids []string) string {
	var out []string
	for _, line := range strings.Split(s.log.String(), "\n") {
		for _, id := range ids {
			if strings.Contains(line, id) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
