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
	"vessel.dev/vessel/test/k8senv"
)

// k8sReplica is a `vessel server --no-agent --etcd ... --kubeconfig`
// replica and the ports its bridge serves while it leads.
type k8sReplica struct {
	*server
	webhookPort, kubeletPort string
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
	var rs []*k8sReplica
	for i := range n {
		r := &k8sReplica{webhookPort: freePort(t), kubeletPort: freePort(t)}
		args := []string{"--no-agent", "--etcd", eps, "--leader-lease", lease.String(),
			"--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", r.webhookPort, "--kubelet-port", r.kubeletPort}
		if i > 0 {
			args = append(args, "--encryption-key-file", filepath.Join(rs[0].dataDir, "master.key"))
		}
		r.server = startServer(t, args...)
		rs = append(rs, r)
	}
	return rs
}

// servers are the replicas' servers, for oneLeader.
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
	l := oneLeader(t, servers(rs), timeout)
	for _, r := range rs {
		if r.server == l {
			return r
		}
	}
	panic("oneLeader returned a server that is not a replica")
}

// startReplicatedAgent starts `vessel agent --server URL,...` on runc with a
// subnet of its own, joined with token; its cleanups remove its firewall
// tables and bridges after it stops. Stop its tasks before it stops: an
// agent leaves its sandboxes running when it stops.
func startReplicatedAgent(t *testing.T, urls []string, token string) *syncBuffer {
	t.Helper()
	dir := t.TempDir()
	cidr := freeSubnet(t)
	t.Cleanup(func() { removeBridges(cidr) })
	t.Cleanup(func() {
		if err := network.RemoveFirewall(filepath.Join(dir, "network")); err != nil {
			t.Errorf("remove the agent's firewall tables: %v", err)
		}
	})
	log := &syncBuffer{}
	agent := exec.Command(vesselBin, "agent", "--server", strings.Join(urls, ","), "--data-dir", dir,
		"--host-id", "k8s-replicated-host", "--token", token, "--runtime", "runc", "--runtimes", "runc",
		"--subnet", "subnet-default="+cidr, "--listen", "127.0.0.1:0")
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

// TestKubernetesReplicas: two `vessel server --kubeconfig` replicas on a
// three-member etcd and one agent host on runc. Only the leader runs the
// bridge; a Deployment's three pods run. The Deployment is scaled to four
// and at once the leader is killed with SIGKILL: the other replica leads within the lease and 5 s and adopts the
// pods and their nodes (the webhooks and every node's kubelet endpoint now
// point at it); scaling the Deployment to five works; kubectl logs and
// exec reach every pod; nothing was scheduled twice: the three first pods
// keep their task, node and container (no restart), and each pod has
// exactly one Vessel task.
func TestKubernetesReplicas(t *testing.T) {
	requireRoot(t)
	const lease = 2 * time.Second
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	img := newRegistry(t).push("busybox:1", []string{"sh"}, busyboxLayer(t))
	rs := startK8sReplicas(t, c, 2, lease)
	id, secret := rs[0].keys()
	ecsOf := func(r *k8sReplica) *ecs.Client {
		cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), RetryMaxAttempts: 1,
			HTTPClient: awsclient.HTTPClient(nil)}
		return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(r.endpoint) })
	}
	leader := leadingReplica(t, rs, 30*time.Second)
	var follower *k8sReplica
	for _, r := range rs {
		if r != leader {
			follower = r
		}
	}
	defer func() {
		if t.Failed() {
			for i, r := range rs {
				t.Logf("replica %d (%s) log:\n%s", i, r.endpoint, tail(r.log.String(), 150))
			}
		}
	}()

	if out, stderr, code := leader.vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1",
		"--webhook-port", leader.webhookPort); code != 0 {
		t.Fatalf("vessel k8s install: exit %d\n%s%s", code, out, stderr)
	}
	// The agent talks to the leader first: killing it also moves the
	// agent.
	agentLog := startReplicatedAgent(t, []string{leader.endpoint, follower.endpoint}, leader.joinToken())
	e := &bridgeEnv{t: t, cluster: c, server: leader.server, image: img, webhookPort: leader.webhookPort}
	e.eventually(60*time.Second, "the leader's bridge to run", func() (bool, string) {
		return strings.Contains(leader.log.String(), "Kubernetes bridge running"), ""
	})
	e.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	// First registered, last run: the workloads go, then every task stops
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
		testutil.Wait(60*time.Second, func() error {
			out, err := c.Kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "name")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("Vessel nodes left: %v %s", err, out)
			}
			return nil
		})
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(agentLog.String(), 80))
			ev, _ := c.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", tail(ev, 60))
		}
	})

	e.kubectl("create", "namespace", haNamespace)
	if out, stderr, code := leader.vessel("profile", "create", "ha", "--namespace", haNamespace, "--wait"); code != 0 {
		t.Fatalf("profile create: %s%s", out, stderr)
	}
	if out, err := e.apply(fmt.Sprintf(haDeployment, 3, img)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	before := waitHAPods(e, 3, 120*time.Second)
	if strings.Contains(follower.log.String(), "Kubernetes bridge running") {
		t.Errorf("the follower runs a bridge too:\n%s", tail(follower.log.String(), 40))
	}
	tasksBefore := podTasks(t, ecsOf(follower))
	for _, p := range before {
		if len(tasksBefore[p.Metadata.UID]) != 1 {
			t.Fatalf("pod %s has tasks %v before the failover, want one", p.Metadata.Name, tasksBefore[p.Metadata.UID])
		}
	}

	// Only the leader serves the webhooks and the kubelet API.
	for _, port := range []string{follower.webhookPort, follower.kubeletPort} {
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 2*time.Second); err == nil {
			conn.Close()
			t.Errorf("the follower listens on port %s: it serves a bridge", port)
		}
	}

	// A fourth pod is on its way (created, being placed or bound) when the
	// leader dies.
	e.kubectl("scale", "-n", haNamespace, "deployment/ha", "--replicas=4")
	t.Logf("3 pods Running through the leader %s; a 4th on its way; killing the leader", leader.endpoint)
	leader.kill(syscall.SIGKILL)
	killed := time.Now()
	successor := leadingReplica(t, []*k8sReplica{follower}, lease+5*time.Second)
	t.Logf("%s leads %s after the kill", successor.endpoint, time.Since(killed).Round(100*time.Millisecond))
	e.server = successor.server
	e.eventually(60*time.Second, "the successor's bridge to run", func() (bool, string) {
		return strings.Contains(successor.log.String(), "Kubernetes bridge running"), ""
	})

	// Pods created from now on go through the successor's webhook. (The
	// fourth may have been created while no webhook answered: unchanged,
	// as the mutating webhook fails open, and taken by the bridge after a
	// grace period.)
	e.eventually(30*time.Second, "the webhooks to call the successor", func() (bool, string) {
		url := e.kubectl("get", "mutatingwebhookconfigurations", "-o", "jsonpath={.items[*].webhooks[*].clientConfig.url}")
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", successor.webhookPort), 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil && strings.Contains(url, ":"+successor.webhookPort+"/"), fmt.Sprint(url, err)
	})
	existing := map[string]bool{}
	for _, p := range e.pods(haNamespace, "app=ha") {
		existing[p.Metadata.UID] = true
	}
	e.kubectl("scale", "-n", haNamespace, "deployment/ha", "--replicas=5")
	after := waitHAPods(e, 5, 180*time.Second)
	t.Logf("5 pods Running %s after the kill", time.Since(killed).Round(100*time.Millisecond))

	// The pods of before the failover are the same pods on the same nodes,
	// their containers never restarted.
	for _, old := range before {
		i := slices.IndexFunc(after, func(p kubePod) bool { return p.Metadata.UID == old.Metadata.UID })
		if i < 0 {
			t.Errorf("pod %s (%s) of before the failover is gone", old.Metadata.Name, old.Metadata.UID)
			continue
		}
		if p := after[i]; p.Spec.NodeName != old.Spec.NodeName || restarts(p) != 0 {
			t.Errorf("pod %s: node %s, %d restarts after the failover; it was on %s", p.Metadata.Name, p.Spec.NodeName, restarts(p), old.Spec.NodeName)
		}
	}
	// The pods of the scale to five went through the successor's webhook
	// (which named Vessel's scheduler and the profile).
	for _, p := range after {
		if !existing[p.Metadata.UID] && p.Spec.SchedulerName != "vessel-scheduler" || p.Metadata.Labels["eks.amazonaws.com/fargate-profile"] != "ha" {
			t.Errorf("pod %s: scheduler %q, profile label %q; want the webhook's vessel-scheduler and ha", p.Metadata.Name,
				p.Spec.SchedulerName, p.Metadata.Labels["eks.amazonaws.com/fargate-profile"])
		}
	}
	// Every node's kubelet API is the successor's.
	var nodes struct{ Items []haNode }
	if err := json.Unmarshal([]byte(e.kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 5 {
		t.Errorf("%d Vessel nodes, want 5", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		if port := strconv.Itoa(n.Status.DaemonEndpoints.KubeletEndpoint.Port); port != successor.kubeletPort {
			t.Errorf("node %s advertises kubelet port %s, want the successor's %s", n.Metadata.Name, port, successor.kubeletPort)
		}
	}
	// kubectl logs and exec reach every pod through the successor.
	for _, p := range after {
		e.eventually(30*time.Second, "kubectl logs "+p.Metadata.Name, func() (bool, string) {
			out, err := c.Kubectl("logs", "-n", haNamespace, p.Metadata.Name)
			return err == nil && strings.Contains(out, "started "+p.Metadata.Name), fmt.Sprint(out, err)
		})
		out, err := c.Kubectl("exec", "-n", haNamespace, p.Metadata.Name, "--", "sh", "-c", "echo exec in $POD_NAME")
		if err != nil || strings.TrimSpace(out) != "exec in "+p.Metadata.Name {
			t.Errorf("kubectl exec %s: %q, %v", p.Metadata.Name, out, err)
		}
	}

	// Nothing scheduled twice: each pod has one task, ever, and the pods
	// of before kept theirs.
	tasksAfter := podTasks(t, ecsOf(successor))
	for _, p := range after {
		ts := tasksAfter[p.Metadata.UID]
		if len(ts) != 1 || ts[0].status == "STOPPED" {
			t.Errorf("pod %s has tasks %v, want one that is not STOPPED", p.Metadata.Name, ts)
		}
	}
	for _, p := range before {
		if b, a := tasksBefore[p.Metadata.UID], tasksAfter[p.Metadata.UID]; len(a) != 1 || a[0].arn != b[0].arn {
			t.Errorf("pod %s ran as %v, now as %v", p.Metadata.Name, b, a)
		}
	}
	if n := len(tasksAfter); n != 5 {
		t.Errorf("tasks of %d pods, want 5: %v", n, tasksAfter)
	}
	if strings.Contains(agentLog.String(), "deleting sandbox") {
		t.Errorf("the agent tore a sandbox down:\n%s", tail(agentLog.String(), 40))
	}
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
