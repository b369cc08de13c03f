package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// hostFleet is one control plane (its own bbolt store) and three runc
// hosts, each on a machine of its own, with a service of 6 busybox tasks
// at minimumHealthyPercent 100 and maximumPercent 200, steady.
type hostFleet struct {
	f      *fleet.Fleet
	s      *fleet.Server
	c      *ecs.Client
	agents []*fleet.Agent
}

func newHostFleet(t *testing.T, serverArgs ...string) *hostFleet {
	f := newFleet(t)
	s := f.Server(fleet.ServerConfig{Args: serverArgs})
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	hf := &hostFleet{f: f, s: s, c: s.ECS()}
	for range 3 {
		hf.agents = append(hf.agents, f.Agent([]*fleet.Server{s}, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}}))
	}
	ctx := context.Background()
	if _, err := hf.c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String("web"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}, StopTimeout: aws.Int32(2)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hf.c.CreateService(ctx, &ecs.CreateServiceInput{ServiceName: aws.String("web"), TaskDefinition: aws.String("web"),
		DesiredCount: aws.Int32(6), LaunchType: ecstypes.LaunchTypeFargate,
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(100), MaximumPercent: aws.Int32(200)}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 180*time.Second, func() error {
		svc := describeService(t, hf.c, "web")
		if !serviceSteady(svc) {
			return fmt.Errorf("service web is not steady: running %d pending %d", svc.RunningCount, svc.PendingCount)
		}
		return nil
	})
	return hf
}

// serviceTasks describes the service's tasks, stopped ones included.
func (hf *hostFleet) serviceTasks() ([]ecstypes.Task, error) {
	ctx := context.Background()
	var arns []string
	for _, ds := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		out, err := hf.c.ListTasks(ctx, &ecs.ListTasksInput{ServiceName: aws.String("web"), DesiredStatus: ds})
		if err != nil {
			return nil, err
		}
		arns = append(arns, out.TaskArns...)
	}
	var tasks []ecstypes.Task
	for chunk := range slices.Chunk(arns, 100) {
		out, err := hf.c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: chunk})
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, out.Tasks...)
	}
	return tasks, nil
}

// sampler watches the service while a test acts: the fewest tasks RUNNING
// (and meant to run) at once, and any address held twice in the fleet: by
// two tasks that are not STOPPED, or by two leases in the hosts' lease
// files (what the hosts hold, sandboxes given up but not yet deleted
// included).
type sampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	least   int
	samples int
	twice   []string
	// addresses and leases count the addresses seen held by tasks and in
	// the hosts' lease files, over all samples.
	addresses, leases int
}

// leaseFile reads a host's leases (task ID to address); a file being
// replaced reads as none, and the next sample counts.
func leaseFile(path string) map[string]string {
	var f struct {
		Leases map[string]struct {
			IP string `json:"ip"`
		} `json:"leases"`
	}
	out := map[string]string{}
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &f) == nil {
		for id, l := range f.Leases {
			out[id] = l.IP
		}
	}
	return out
}

func (hf *hostFleet) sample(t *testing.T) *sampler {
	sp := &sampler{stop: make(chan struct{}), done: make(chan struct{}), least: 1 << 30}
	go func() {
		defer close(sp.done)
		for {
			select {
			case <-sp.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			tasks, err := hf.serviceTasks()
			if err != nil {
				continue // a poll that met a closing connection; the next one counts
			}
			running := 0
			held := map[string]string{}
			sp.mu.Lock()
			for _, tk := range tasks {
				if aws.ToString(tk.LastStatus) == "RUNNING" && aws.ToString(tk.DesiredStatus) == "RUNNING" {
					running++
				}
				ip := taskIP(tk)
				if ip == "" || aws.ToString(tk.LastStatus) == "STOPPED" {
					continue
				}
				sp.addresses++
				if other, ok := held[ip]; ok {
					sp.twice = append(sp.twice, fmt.Sprintf("%s held by %s and %s (%s)", ip, other, taskID(aws.ToString(tk.TaskArn)), taskHost(tk)))
				}
				held[ip] = taskID(aws.ToString(tk.TaskArn)) + " (" + taskHost(tk) + ")"
			}
			leased := map[string]string{}
			for _, a := range hf.agents {
				for task, ip := range leaseFile(filepath.Join(a.DataDir, "network", "leases.json")) {
					if other, ok := leased[ip]; ok {
						sp.twice = append(sp.twice, fmt.Sprintf("%s leased to %s and to %s on %s", ip, other, task, a.HostID))
					}
					leased[ip] = task + " on " + a.HostID
					sp.leases++
				}
			}
			sp.least = min(sp.least, running)
			sp.samples++
			sp.mu.Unlock()
		}
	}()
	t.Cleanup(sp.end)
	return sp
}

func (sp *sampler) end() {
	select {
	case <-sp.stop:
	default:
		close(sp.stop)
	}
	<-sp.done
}

// hostInfo is a host as `vessel host ls -o json` prints it.
type hostInfo struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Address  string `json:"address"`
	Tasks    int    `json:"tasks"`
	Draining bool   `json:"draining"`
}

func (hf *hostFleet) hosts(t *testing.T) map[string]hostInfo {
	t.Helper()
	out, _, err := hf.s.Vessel("host", "ls", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Hosts []hostInfo }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("vessel host ls -o json: %v\n%s", err, out)
	}
	m := map[string]hostInfo{}
	for _, h := range list.Hosts {
		m[h.ID] = h
	}
	return m
}

// TestHostDrain: a runc host under a service of 6 tasks spread over three
// hosts is drained (`vessel host drain`). Sampled every 100 ms throughout,
// the service never runs fewer than its 6 tasks and no address is held
// twice in the fleet; it ends steady with no task on the drained host,
// which `vessel host ls` shows drained and `vessel host rm` removes.
func TestHostDrain(t *testing.T) {
	hf := newHostFleet(t)
	victim := hf.agents[0]
	tasks, err := hf.serviceTasks()
	if err != nil {
		t.Fatal(err)
	}
	on := 0
	for _, tk := range tasks {
		if taskHost(tk) == victim.HostID {
			on++
		}
	}
	if on == 0 {
		t.Fatalf("no task of the service on %s: nothing to drain", victim.HostID)
	}
	if h := hf.hosts(t)[victim.HostID]; h.State != "ready" || h.Tasks != on || h.Address != victim.Machine().Addr.String() {
		t.Errorf("vessel host ls before the drain: %+v, want ready with %d tasks at %s", h, on, victim.Machine().Addr)
	}
	if out, _, err := hf.s.Vessel("host", "describe", victim.HostID); err != nil || !strings.Contains(out, "State:           ready") ||
		!strings.Contains(out, fmt.Sprintf("Tasks:           %d", on)) {
		t.Errorf("vessel host describe %s: %v\n%s", victim.HostID, err, out)
	}
	sp := hf.sample(t)
	time.Sleep(300 * time.Millisecond) // a few samples of the steady service
	if _, errOut, err := hf.s.Vessel("host", "drain", victim.HostID); err != nil || !strings.Contains(errOut, "is draining") {
		t.Fatalf("vessel host drain: %v %s", err, errOut)
	}
	testutil.Eventually(t, 180*time.Second, func() error {
		tasks, err := hf.serviceTasks()
		if err != nil {
			return err
		}
		var left []string
		for _, tk := range tasks {
			if taskHost(tk) == victim.HostID && aws.ToString(tk.LastStatus) != "STOPPED" {
				left = append(left, taskID(aws.ToString(tk.TaskArn))+" "+aws.ToString(tk.LastStatus))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("tasks still on %s: %v", victim.HostID, left)
		}
		if svc := describeService(t, hf.c, "web"); !serviceSteady(svc) {
			return fmt.Errorf("service web is not steady: running %d pending %d", svc.RunningCount, svc.PendingCount)
		}
		return nil
	})
	sp.end()
	t.Logf("%d samples of the service during the drain: at least %d tasks RUNNING", sp.samples, sp.least)
	if sp.samples < 10 || sp.least < 6 {
		t.Errorf("during the drain the service ran only %d of its 6 tasks at one point (%d samples)", sp.least, sp.samples)
	}
	if len(sp.twice) > 0 || sp.addresses == 0 || sp.leases == 0 {
		t.Errorf("addresses held twice in the fleet: %v (%d seen held by tasks and %d leased over all samples)", sp.twice, sp.addresses, sp.leases)
	}
	tasks, _ = hf.serviceTasks()
	for _, tk := range tasks {
		if taskHost(tk) == victim.HostID && (tk.StopCode != ecstypes.TaskStopCodeServiceSchedulerInitiated ||
			!strings.Contains(aws.ToString(tk.StoppedReason), "is draining")) {
			t.Errorf("task %s on the drained host stopped with %s %q", taskID(aws.ToString(tk.TaskArn)), tk.StopCode, aws.ToString(tk.StoppedReason))
		}
	}
	if h := hf.hosts(t)[victim.HostID]; h.State != "drained" || h.Tasks != 0 || !h.Draining {
		t.Errorf("vessel host ls after the drain: %+v, want drained", h)
	}
	if out, _, err := hf.s.Vessel("host", "ls"); err != nil || !regexp.MustCompile(victim.HostID+`\s+`+regexp.QuoteMeta(victim.Machine().Addr.String())+`\s+drained\s`).MatchString(out) {
		t.Errorf("vessel host ls: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if cs, err := victim.Containers(); err != nil || len(cs) > 0 {
			return fmt.Errorf("containers left on the drained host: %v %v", cs, err)
		}
		return nil
	})
	if _, errOut, err := hf.s.Vessel("host", "rm", victim.HostID); err != nil {
		t.Fatalf("vessel host rm: %v %s", err, errOut)
	}
	if h := hf.hosts(t)[victim.HostID]; h.State != "revoked" {
		t.Errorf("vessel host ls after rm: %+v, want revoked (it may come back only by joining anew)", h)
	}
	if svc := describeService(t, hf.c, "web"); svc.RunningCount != 6 {
		t.Errorf("after rm the service runs %d tasks", svc.RunningCount)
	}
}

// TestHostCutOff: a runc host under the service is cut off (its link down)
// past --host-timeout: its tasks are STOPPED in the record with
// TerminationNotice and the service replaces them on the other hosts,
// while the cut-off host's sandboxes still run. Healed, the host is told
// at its first answer that those tasks were given up, and its old
// sandboxes are gone within seconds; sampled throughout, no address is
// held twice in the fleet, by tasks not STOPPED nor in the hosts' leases.
func TestHostCutOff(t *testing.T) {
	const hostTimeout = 12 * time.Second   // the agent heartbeats every 5 s
	const agentLongPoll = 40 * time.Second // agentproto.DefaultLongPoll + DefaultCallTimeout
	hf := newHostFleet(t, "--host-timeout", hostTimeout.String())
	victim := hf.agents[1]
	tasks, err := hf.serviceTasks()
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, tk := range tasks {
		if taskHost(tk) == victim.HostID {
			gone = append(gone, taskID(aws.ToString(tk.TaskArn)))
		}
	}
	if len(gone) == 0 {
		t.Fatalf("no task of the service on %s", victim.HostID)
	}
	before, err := victim.Containers()
	if err != nil || len(before) != len(gone) {
		t.Fatalf("containers on %s before the cut: %v %v, want %d", victim.HostID, before, err, len(gone))
	}
	sp := hf.sample(t)
	victim.Machine().Cut()
	cutAt := time.Now()
	healed := false
	t.Cleanup(func() {
		if !healed {
			victim.Machine().Heal() // so that the fleet stops its tasks
		}
	})
	testutil.Eventually(t, hostTimeout+120*time.Second, func() error {
		tasks, err := hf.serviceTasks()
		if err != nil {
			return err
		}
		running := 0
		for _, tk := range tasks {
			id := taskID(aws.ToString(tk.TaskArn))
			if slices.Contains(gone, id) && aws.ToString(tk.LastStatus) != "STOPPED" {
				return fmt.Errorf("task %s of the cut-off host is %s", id, aws.ToString(tk.LastStatus))
			}
			if aws.ToString(tk.LastStatus) == "RUNNING" && taskHost(tk) != victim.HostID {
				running++
			}
		}
		if running < 6 {
			return fmt.Errorf("%d tasks RUNNING on the other hosts, want 6", running)
		}
		return nil
	})
	for _, tk := range mustTasks(t, hf) {
		if id := taskID(aws.ToString(tk.TaskArn)); slices.Contains(gone, id) && tk.StopCode != ecstypes.TaskStopCodeTerminationNotice {
			t.Errorf("task %s of the cut-off host stopped with %s %q, want TerminationNotice", id, tk.StopCode, aws.ToString(tk.StoppedReason))
		}
	}
	if h := hf.hosts(t)[victim.HostID]; h.State != "lost" {
		t.Errorf("vessel host ls while cut off: %+v, want lost", h)
	}
	// Its sandboxes run on, out of reach.
	if cs, err := victim.Containers(); err != nil || len(cs) != len(gone) {
		t.Errorf("containers on the cut-off host: %v %v, want its %d still running", cs, err, len(gone))
	}

	// Stay cut off past the agent's long poll for assignments (30 s, and
	// 10 s for an answer), so that the connection it waits on is dead and
	// given up when the host comes back, as after any long partition.
	time.Sleep(time.Until(cutAt.Add(agentLongPoll + 15*time.Second)))
	victim.Machine().Heal()
	healed = true
	start := time.Now()
	testutil.Eventually(t, 60*time.Second, func() error {
		cs, err := victim.Containers()
		if err != nil {
			return err
		}
		if len(cs) > 0 {
			return fmt.Errorf("the healed host still runs %v", cs)
		}
		return nil
	})
	t.Logf("the healed host's old sandboxes were gone %s after the heal", time.Since(start).Round(100*time.Millisecond))
	testutil.Eventually(t, 30*time.Second, func() error {
		if h := hf.hosts(t)[victim.HostID]; h.State != "ready" {
			return fmt.Errorf("the healed host is %s", h.State)
		}
		return nil
	})
	sp.end()
	if len(sp.twice) > 0 {
		t.Errorf("addresses held twice in the fleet: %v", sp.twice)
	}
	if n := strings.Count(victim.Log(), "task no longer placed on this host"); n != len(gone) {
		t.Errorf("the healed agent says %d times that a task is no longer placed on it, want %d:\n%s", n, len(gone), victim.Log())
	}
	if sp.addresses == 0 || sp.leases == 0 {
		t.Errorf("no sample saw a task's address (%d) or a host's lease (%d)", sp.addresses, sp.leases)
	}
}

func mustTasks(t *testing.T, hf *hostFleet) []ecstypes.Task {
	t.Helper()
	tasks, err := hf.serviceTasks()
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}
