package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
	"vessel.dev/vessel/test/k8senv"
)

// k8sReplica is a `vessel server --no-agent --etcd ... --kubeconfig`
// replica and the ports its bridge serves while it leads.
type k8sReplica struct {
	*server
	webhookPort, kubeletPort string
	// subnet is the task subnet the replicas define (a host's agent
	// serves it).
	subnet string
}

// startK8sReplicas starts n replicas of `vessel server --no-agent
// --kubeconfig` on a three-member etcd, with a leader lease of lease, all
// on 127.0.0.1, each with webhook and kubelet ports of its own (as
// replicas on machines of their own have addresses of their own: a new
// leader must point the webhooks and nodes at itself). The first replica's
// master key is every replica's. (The fleet harness will replace this.)
func startK8sReplicas(t *testing.T, c *k8senv.Cluster, n int, lease time.Duration) []*k8sReplica {
	t.Helper()
	eps := strings.Join(etcdtest.Start(t, 3).Endpoints(), ",")
	// Ports free now, and distinct: one replica's port must not be
	// another's when it binds it later.
	taken := map[string]bool{}
	port := func() string {
		for {
			if p := freePort(t); !taken[p] {
				taken[p] = true
				return p
			}
		}
	}
	var rs []*k8sReplica
	cidr := freeSubnet(t)
	t.Cleanup(func() { removeBridges(cidr) })
	for i := range n {
		r := &k8sReplica{webhookPort: port(), kubeletPort: port(), subnet: cidr}
		args := []string{"--no-agent", "--etcd", eps, "--subnet", "subnet-default=" + cidr, "--leader-lease", lease.String(),
			"--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", r.webhookPort, "--kubelet-port", r.kubeletPort}
		if i > 0 {
			args = append(args, "--encryption-key-file", filepath.Join(rs[0].dataDir, "master.key"))
		}
		r.server = startServer(t, args...)
		rs = append(rs, r)
	}
	return rs
}

// servers are the replicas' servers, for fleet.Leader.
func servers(rs []*k8sReplica) []*server {
	out := make([]*server, len(rs))
	for i, r := range rs {
		out[i] = r.server
	}
	return out
}

// leadingReplica waits until exactly one of rs leads and returns it.
func leadingReplica(t *testing.T, rs []*k8sReplica, timeout time.Duration) *k8sReplica {
	t.Helper()
	l := fleet.Leader(t, servers(rs), timeout)
	for _, r := range rs {
		if r.server == l {
			return r
		}
	}
	panic("fleet.Leader returned a server that is not a replica")
}

// startReplicatedAgent starts `vessel agent --server URL,...` on runc with a
// subnet of its own, joined with token; its cleanups remove its firewall
// tables and bridges after it stops. Stop its tasks before it stops: an
// agent leaves its sandboxes running when it stops.
func startReplicatedAgent(t *testing.T, urls []string, token, cidr string) *syncBuffer {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := network.RemoveFirewall(filepath.Join(dir, "network")); err != nil {
			t.Errorf("remove the agent's firewall tables: %v", err)
		}
	})
	log := &syncBuffer{}
	agent := exec.Command(vesselBin, "agent", "--server", strings.Join(urls, ","), "--data-dir", dir,
		"--host-id", "k8s-replicated-host", "--token", token, "--runtime", "runc", "--runtimes", "runc",
		"--subnet", "subnet-default="+cidr, "--listen", "127.0.0.1:0")
	agent.Args = append(agent.Args, noWarmPools...)
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = log, log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})
	return log
}

// haNode is the part of a node the replicas test reads.
type haNode struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
		DaemonEndpoints struct {
			KubeletEndpoint struct {
				Port int `json:"Port"`
			} `json:"kubeletEndpoint"`
		} `json:"daemonEndpoints"`
	} `json:"status"`
}

const haNamespace = "ha"

const haDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ha
  namespace: ha
spec:
  replicas: %d
  selector:
    matchLabels: {app: ha}
  template:
    metadata:
      labels: {app: ha}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: ha
        image: %s
        command: ["sh", "-c", "echo started $(POD_NAME); trap 'exit 0' TERM; while true; do sleep 1; done"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        resources:
          requests: {cpu: 250m, memory: 512Mi}
`

// haEnv is a Kubernetes cluster bridged by replicas of Vessel on etcd,
// with one agent host on runc, a profile that selects namespace ha, and
// the default service account ready.
type haEnv struct {
	*bridgeEnv
	rs       []*k8sReplica
	agentLog *syncBuffer
	id       string
	secret   string
}

// startHA starts the cluster, n replicas with leader lease lease, the
// bridge's install through the leader and an agent that talks to the
// leader first (or last, !agentOnLeader), and returns the env and the
// leader.
func startHA(t *testing.T, n int, lease time.Duration, agentOnLeader bool) (*haEnv, *k8sReplica) {
	t.Helper()
	requireRoot(t)
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	img := newRegistry(t).push("busybox:1", []string{"sh"}, busyboxLayer(t))
	rs := startK8sReplicas(t, c, n, lease)
	h := &haEnv{rs: rs}
	h.id, h.secret = rs[0].keys()
	leader := leadingReplica(t, rs, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range rs {
				t.Logf("replica %d (%s) log:\n%s", i, r.endpoint, tail(r.log.String(), 150))
			}
		}
	})
	if out, stderr, code := leader.vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1",
		"--webhook-port", leader.webhookPort); code != 0 {
		t.Fatalf("vessel k8s install: exit %d\n%s%s", code, out, stderr)
	}
	var urls []string
	for _, r := range rs {
		if r != leader {
			urls = append(urls, r.endpoint)
		}
	}
	if agentOnLeader {
		urls = append([]string{leader.endpoint}, urls...)
	} else {
		urls = append(urls, leader.endpoint)
	}
	h.agentLog = startReplicatedAgent(t, urls, leader.joinToken(), leader.subnet)
	h.bridgeEnv = &bridgeEnv{t: t, cluster: c, server: leader.server, image: img, webhookPort: leader.webhookPort}
	h.waitBridge(leader, 1)
	h.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	// Registered before the next, so run after it: every task stops
	// (through whichever replica still runs) before the agent does.
	t.Cleanup(func() {
		for _, r := range rs {
			if r.cmd != nil {
				// Signed with the admin key of the first replica's data
				// directory (the others have none of their own).
				stopAll(t, &server{t: t, dataDir: rs[0].dataDir, endpoint: r.endpoint})
				return
			}
		}
	})
	t.Cleanup(func() {
		c.Kubectl("delete", "namespace", haNamespace, "--wait=false")
		waitNoVesselNodes(c)
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(h.agentLog.String(), 80))
			ev, _ := c.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", tail(ev, 60))
		}
	})
	h.kubectl("create", "namespace", haNamespace)
	if out, stderr, code := leader.vessel("profile", "create", "ha", "--namespace", haNamespace, "--wait"); code != 0 {
		t.Fatalf("profile create: %s%s", out, stderr)
	}
	return h, leader
}

// ecs is an ECS client of replica r.
func (h *haEnv) ecs(r *k8sReplica) *ecs.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(h.id, h.secret, ""), RetryMaxAttempts: 1,
		HTTPClient: awsclient.HTTPClient(nil)}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(r.endpoint) })
}

// others are the replicas but r.
func (h *haEnv) others(r *k8sReplica) []*k8sReplica {
	var out []*k8sReplica
	for _, o := range h.rs {
		if o != r {
			out = append(out, o)
		}
	}
	return out
}

// waitBridge waits until r has started its bridge for the nth time.
func (h *haEnv) waitBridge(r *k8sReplica, n int) {
	h.t.Helper()
	h.eventually(60*time.Second, fmt.Sprintf("bridge %d of %s to run", n, r.endpoint), func() (bool, string) {
		got := strings.Count(r.log.String(), "Kubernetes bridge running")
		return got >= n, strconv.Itoa(got)
	})
}

// leads makes r the replica the test talks to once it leads and its
// bridge's webhooks answer, so that pods created from then on go through
// its webhook.
func (h *haEnv) leads(r *k8sReplica, term int) {
	h.t.Helper()
	h.server = r.server
	h.waitBridge(r, term)
	h.eventually(30*time.Second, "the webhooks to call "+r.endpoint, func() (bool, string) {
		url := h.kubectl("get", "mutatingwebhookconfigurations", "-o", "jsonpath={.items[*].webhooks[*].clientConfig.url}")
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", r.webhookPort), 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil && strings.Contains(url, ":"+r.webhookPort+"/"), fmt.Sprint(url, err)
	})
}

// scale scales the ha Deployment to n and waits for n pods Running. It
// returns the pods, and checks that those it created went through the
// webhook (which names Vessel's scheduler and the profile).
func (h *haEnv) scale(n int) []kubePod {
	h.t.Helper()
	existing := map[string]bool{}
	for _, p := range h.pods(haNamespace, "app=ha") {
		existing[p.Metadata.UID] = true
	}
	h.kubectl("scale", "-n", haNamespace, "deployment/ha", "--replicas="+strconv.Itoa(n))
	pods := waitHAPods(h.bridgeEnv, n, 180*time.Second)
	for _, p := range pods {
		if !existing[p.Metadata.UID] && (p.Spec.SchedulerName != "vessel-scheduler" || p.Metadata.Labels["eks.amazonaws.com/fargate-profile"] != "ha") {
			h.t.Errorf("pod %s: scheduler %q, profile label %q; want the webhook's vessel-scheduler and ha", p.Metadata.Name,
				p.Spec.SchedulerName, p.Metadata.Labels["eks.amazonaws.com/fargate-profile"])
		}
	}
	return pods
}

// onlyLeaderServes checks that no replica but leader listens on its
// webhook or kubelet API port.
func (h *haEnv) onlyLeaderServes(leader *k8sReplica) {
	h.t.Helper()
	for _, r := range h.others(leader) {
		for _, port := range []string{r.webhookPort, r.kubeletPort} {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 2*time.Second); err == nil {
				conn.Close()
				h.t.Errorf("follower %s listens on port %s: it serves a bridge", r.endpoint, port)
			}
		}
	}
}

// servedBy checks that every pod is served by leader: every Vessel node
// advertises its kubelet API, and kubectl logs and exec reach every pod.
func (h *haEnv) servedBy(leader *k8sReplica, pods []kubePod) {
	h.t.Helper()
	var nodes struct{ Items []haNode }
	if err := json.Unmarshal([]byte(h.kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "json")), &nodes); err != nil {
		h.t.Fatal(err)
	}
	if len(nodes.Items) != len(pods) {
		h.t.Errorf("%d Vessel nodes, want %d", len(nodes.Items), len(pods))
	}
	for _, n := range nodes.Items {
		if port := strconv.Itoa(n.Status.DaemonEndpoints.KubeletEndpoint.Port); port != leader.kubeletPort {
			h.t.Errorf("node %s advertises kubelet port %s, want the leader's %s", n.Metadata.Name, port, leader.kubeletPort)
		}
	}
	for _, p := range pods {
		h.eventually(30*time.Second, "kubectl logs "+p.Metadata.Name, func() (bool, string) {
			out, err := h.cluster.Kubectl("logs", "-n", haNamespace, p.Metadata.Name)
			return err == nil && strings.Contains(out, "started "+p.Metadata.Name), fmt.Sprint(out, err)
		})
		out, err := h.cluster.Kubectl("exec", "-n", haNamespace, p.Metadata.Name, "--", "sh", "-c", "echo exec in $POD_NAME")
		if err != nil || strings.TrimSpace(out) != "exec in "+p.Metadata.Name {
			h.t.Errorf("kubectl exec %s: %q, %v", p.Metadata.Name, out, err)
		}
	}
}

// keptTasks checks that nothing was scheduled twice: each of pods has one
// task ever, not STOPPED, and no other pod has any; each pod of before
// kept its task, its node and its containers (no restart).
func (h *haEnv) keptTasks(r *k8sReplica, pods, before []kubePod, tasksBefore map[string][]haTask) {
	h.t.Helper()
	tasks := podTasks(h.t, h.ecs(r))
	for _, p := range pods {
		if ts := tasks[p.Metadata.UID]; len(ts) != 1 || ts[0].status == "STOPPED" {
			h.t.Errorf("pod %s has tasks %v, want one that is not STOPPED", p.Metadata.Name, ts)
		}
	}
	if len(tasks) != len(pods) {
		h.t.Errorf("tasks of %d pods, want %d: %v", len(tasks), len(pods), tasks)
	}
	for _, old := range before {
		if b, a := tasksBefore[old.Metadata.UID], tasks[old.Metadata.UID]; len(a) != 1 || len(b) != 1 || a[0].arn != b[0].arn {
			h.t.Errorf("pod %s ran as %v, now as %v", old.Metadata.Name, b, a)
		}
		i := slices.IndexFunc(pods, func(p kubePod) bool { return p.Metadata.UID == old.Metadata.UID })
		if i < 0 {
			h.t.Errorf("pod %s (%s) is gone", old.Metadata.Name, old.Metadata.UID)
			continue
		}
		if p := pods[i]; p.Spec.NodeName != old.Spec.NodeName || restarts(p) != 0 {
			h.t.Errorf("pod %s: node %s, %d restarts; it was on %s", p.Metadata.Name, p.Spec.NodeName, restarts(p), old.Spec.NodeName)
		}
	}
	if strings.Contains(h.agentLog.String(), "deleting sandbox") {
		h.t.Errorf("the agent tore a sandbox down:\n%s", tail(h.agentLog.String(), 40))
	}
}

// TestKubernetesReplicas: two `vessel server --kubeconfig` replicas on a
// three-member etcd and one agent host on runc. Only the leader runs the
// bridge; a Deployment's three pods run. The Deployment is scaled to four
// and at once the leader is killed with SIGKILL: the other replica leads
// within the lease and 5 s and adopts the pods and their nodes (the
// webhooks and every node's kubelet endpoint now point at it); scaling the
// Deployment to five works; kubectl logs and exec reach every pod; nothing
// was scheduled twice: the three first pods keep their task, node and
// container (no restart), and each pod has exactly one Vessel task.
func TestKubernetesReplicas(t *testing.T) {
	const lease = 2 * time.Second
	// The agent talks to the leader first: when the leader goes, so does
	// the agent, to the other replica.
	h, leader := startHA(t, 2, lease, true)
	if out, err := h.apply(fmt.Sprintf(haDeployment, 3, h.image)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	before := waitHAPods(h.bridgeEnv, 3, 120*time.Second)
	h.onlyLeaderServes(leader)
	tasksBefore := podTasks(t, h.ecs(h.others(leader)[0]))

	// A fourth pod is on its way (created, being placed or bound) when the
	// leader dies. (It may be created while no webhook answers: unchanged,
	// as the mutating webhook fails open, and taken by the bridge after a
	// grace period.)
	h.kubectl("scale", "-n", haNamespace, "deployment/ha", "--replicas=4")
	t.Logf("3 pods Running through the leader %s; a 4th on its way; killing the leader", leader.endpoint)
	leader.kill(syscall.SIGKILL)
	killed := time.Now()
	successor := leadingReplica(t, h.others(leader), lease+5*time.Second)
	t.Logf("%s leads %s after the kill", successor.endpoint, time.Since(killed).Round(100*time.Millisecond))
	h.leads(successor, 1)

	after := h.scale(5)
	t.Logf("5 pods Running %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	h.servedBy(successor, after)
	h.keptTasks(successor, after, before, tasksBefore)
}

// TestKubernetesReplicasLeaderPaused: the leader of two `vessel server
// --kubeconfig` replicas is paused (SIGSTOP) until the other leads and
// serves the pods, then resumed: it follows, and leaves the pods, nodes
// and webhooks to the successor. The successor is killed: the first
// replica leads again, a second term in the same process, and its new
// bridge adopts and serves every pod; nothing was scheduled twice.
func TestKubernetesReplicasLeaderPaused(t *testing.T) {
	const lease = 2 * time.Second
	// The agent talks to the other replica (how an agent leaves a paused
	// replica is TestAgentMovesBetweenReplicas's).
	h, first := startHA(t, 2, lease, false)
	if out, err := h.apply(fmt.Sprintf(haDeployment, 2, h.image)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	before := waitHAPods(h.bridgeEnv, 2, 120*time.Second)
	tasksBefore := podTasks(t, h.ecs(first))

	if err := first.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if first.cmd != nil {
			first.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	second := leadingReplica(t, h.others(first), lease+5*time.Second)
	h.leads(second, 1)
	pods := h.scale(3)
	h.servedBy(second, pods)

	if err := first.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if l := leadingReplica(t, h.rs, lease+5*time.Second); l != second {
		t.Fatalf("after SIGCONT %s leads, want %s", l.endpoint, second.endpoint)
	}
	h.eventually(30*time.Second, "the resumed replica to stop its bridge", func() (bool, string) {
		return strings.Contains(first.log.String(), "leadership lost"), ""
	})
	h.onlyLeaderServes(second)
	h.leads(second, 1)
	h.servedBy(second, pods)

	second.kill(syscall.SIGKILL)
	if l := leadingReplica(t, h.others(second), lease+5*time.Second); l != first {
		t.Fatalf("%s leads, want %s", l.endpoint, first.endpoint)
	}
	h.leads(first, 2)
	pods = h.scale(4)
	h.servedBy(first, pods)
	h.keptTasks(first, pods, before, tasksBefore)
}

// waitHAPods waits until n pods of the ha Deployment are Running on Vessel
// nodes, and returns them.
func waitHAPods(e *bridgeEnv, n int, timeout time.Duration) []kubePod {
	e.t.Helper()
	var pods []kubePod
	e.eventually(timeout, fmt.Sprintf("%d ha pods Running on Vessel nodes", n), func() (bool, string) {
		pods = e.pods(haNamespace, "app=ha")
		running := 0
		for _, p := range pods {
			if p.Status.Phase == "Running" && strings.HasPrefix(p.Spec.NodeName, "vessel-ip-") {
				running++
			}
		}
		return running == n && len(pods) == n, fmt.Sprintf("%d of %d running", running, len(pods))
	})
	return pods
}

func restarts(p kubePod) int {
	n := 0
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// haTask is a task of a pod as ECS describes it.
type haTask struct{ arn, status string }

// podTasks returns every task (running or stopped) the bridge's scheduler
// started, by pod UID.
func podTasks(t *testing.T, c *ecs.Client) map[string][]haTask {
	t.Helper()
	ctx := context.Background()
	var arns []string
	for _, desired := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		p := ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{StartedBy: aws.String("vessel-scheduler"), DesiredStatus: desired})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListTasks: %v", err)
			}
			arns = append(arns, out.TaskArns...)
		}
	}
	byPod := map[string][]haTask{}
	for chunk := range slices.Chunk(arns, 100) {
		out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: chunk, Include: []ecstypes.TaskField{ecstypes.TaskFieldTags}})
		if err != nil {
			t.Fatalf("DescribeTasks: %v", err)
		}
		for _, tk := range out.Tasks {
			uid := ""
			for _, tag := range tk.Tags {
				if aws.ToString(tag.Key) == "vessel:pod-uid" {
					uid = aws.ToString(tag.Value)
				}
			}
			if uid == "" {
				t.Errorf("task %s started by the scheduler has no pod UID tag", aws.ToString(tk.TaskArn))
			}
			byPod[uid] = append(byPod[uid], haTask{aws.ToString(tk.TaskArn), aws.ToString(tk.LastStatus)})
		}
	}
	return byPod
}

// waitNoVesselNodes waits up to a minute until the bridge has removed the
// nodes of Vessel's pods (their pods deleted), so that the cluster is left
// as found.
func waitNoVesselNodes(c *k8senv.Cluster) {
	testutil.Wait(60*time.Second, func() error {
		out, err := c.Kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("Vessel nodes left: %v %s", err, out)
		}
		return nil
	})
}
