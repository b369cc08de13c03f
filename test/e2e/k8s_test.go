package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/k8senv"
)

// kubePod is the part of a pod the tests read.
type kubePod struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		UID         string            `json:"uid"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		NodeName      string `json:"nodeName"`
		SchedulerName string `json:"schedulerName"`
	} `json:"spec"`
	Status struct {
		Phase             string `json:"phase"`
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			Ready        bool   `json:"ready"`
			RestartCount int    `json:"restartCount"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

type kubeNode struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Taints []struct {
			Key    string `json:"key"`
			Effect string `json:"effect"`
		} `json:"taints"`
	} `json:"spec"`
	Status struct {
		Capacity   map[string]string `json:"capacity"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

// bridgeEnv is a real cluster with Vessel's bridge attached.
type bridgeEnv struct {
	t       *testing.T
	cluster *k8senv.Cluster
	server  *server
	image   string
	// webhookPort is the port the bridge serves its webhooks on.
	webhookPort string
}

func freePort(t testing.TB) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return port
}

// startBridge starts kube-apiserver, etcd and kube-controller-manager, a
// Vessel server bridging them, and installs the bridge with the built
// binary. Without runtime flags the server runs as the README starts it,
// on the host's default runtime; with --runtimes it defaults to runc.
func startBridge(t *testing.T, runtimeFlags ...string) *bridgeEnv {
	t.Helper()
	requireRoot(t)
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	webhookPort := freePort(t)
	args := append([]string{"--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1",
		"--webhook-port", webhookPort, "--kubelet-port", freePort(t)}, runtimeFlags...)
	var s *server
	if slices.Contains(runtimeFlags, "--runtimes") {
		s = startRuncServer(t, args...)
	} else {
		// The README's default: every runtime offered, the host's
		// strongest that works at native speed chosen (gvisor here).
		buildTools(t)
		s = startSubnetServer(t, append(args, "--runtimes", "microvm,gvisor,runc,sim")...)
	}
	out, stderr, code := s.vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", webhookPort)
	if code != 0 {
		t.Fatalf("vessel k8s install: exit %d\n%s%s", code, out, stderr)
	}
	e := &bridgeEnv{t: t, cluster: c, server: s, image: img, webhookPort: webhookPort}
	e.eventually(60*time.Second, "the bridge to run", func() (bool, string) {
		return strings.Contains(s.log.String(), "Kubernetes bridge running"), ""
	})
	// Before the server stops (cleanups run last first): remove the
	// workloads, so that no controller starts pods while it goes down.
	t.Cleanup(func() {
		if s.cmd == nil {
			return
		}
		c.Kubectl("delete", "deployments,pods", "--all", "--all-namespaces", "--wait=false")
		testutil.Wait(60*time.Second, func() error {
			out, err := c.Kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "name")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("Vessel nodes left: %v %s", err, out)
			}
			return nil
		})
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vessel server log:\n%s", tail(s.log.String(), 80))
			ev, _ := c.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", tail(ev, 60))
		}
	})
	// The default service account must exist before pods can be created.
	e.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *bridgeEnv) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.cluster.Kubectl(args...)
	if err != nil {
		e.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *bridgeEnv) apply(manifest string) (string, error) {
	return e.cluster.KubectlInput([]byte(manifest), "apply", "-f", "-")
}

func (e *bridgeEnv) eventually(timeout time.Duration, what string, f func() (bool, string)) {
	e.t.Helper()
	began := time.Now()
	testutil.Eventually(e.t, timeout, func() error {
		if ok, msg := f(); !ok {
			return fmt.Errorf("waiting for %s; last: %s", what, msg)
		}
		return nil
	})
	if took := time.Since(began); took > 10*time.Second {
		e.t.Logf("waited %s for %s", took.Round(100*time.Millisecond), what)
	}
}

func (e *bridgeEnv) pods(ns, selector string) []kubePod {
	e.t.Helper()
	var list struct{ Items []kubePod }
	out := e.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("decoding pods: %v\n%s", err, out)
	}
	return list.Items
}

func (e *bridgeEnv) vesselNodes() []kubeNode {
	e.t.Helper()
	var list struct{ Items []kubeNode }
	out := e.kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("decoding nodes: %v\n%s", err, out)
	}
	return list.Items
}

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: %s
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(POD_NAME) > /www/index.html && echo web started on $(POD_IP), metadata endpoint: ${ECS_CONTAINER_METADATA_URI_V4:-none} && exec httpd -f -p 8080 -h /www"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        ports:
        - containerPort: 8080
        resources:
          requests: {cpu: 300m, memory: 1Gi}
`

// TestKubernetesBridge is the bridge end to end, driven by the built
// kubectl: a profile selects default/app=web, a Deployment's pods each run
// in a sandbox on a node of their own, logs, exec and port-forward work,
// other pods are left alone, unsafe pods are refused, and scaling to zero
// removes pods and nodes.
func TestKubernetesBridge(t *testing.T) {
	e := startBridge(t)
	out, stderr, code := e.server.vessel("profile", "create", "web", "--namespace", "default", "--labels", "app=web", "--wait")
	if code != 0 {
		t.Fatalf("profile create: %s%s", out, stderr)
	}

	if out, err := e.apply(fmt.Sprintf(webDeployment, 3, e.image)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	var pods []kubePod
	e.eventually(120*time.Second, "three web pods Running on vessel-ip nodes", func() (bool, string) {
		pods = e.pods("default", "app=web")
		running := 0
		for _, p := range pods {
			if p.Status.Phase == "Running" && strings.HasPrefix(p.Spec.NodeName, "vessel-ip-") {
				running++
			}
		}
		return running == 3 && len(pods) == 3, fmt.Sprintf("%d of %d running", running, len(pods))
	})
	nodeNames := map[string]bool{}
	for _, p := range pods {
		if got := p.Metadata.Annotations["CapacityProvisioned"]; got != "0.5vCPU 2GB" {
			t.Errorf("pod %s: CapacityProvisioned %q, want \"0.5vCPU 2GB\"", p.Metadata.Name, got)
		}
		if p.Spec.SchedulerName != "vessel-scheduler" || p.Metadata.Labels["eks.amazonaws.com/fargate-profile"] != "web" {
			t.Errorf("pod %s: scheduler %q, profile label %q", p.Metadata.Name, p.Spec.SchedulerName, p.Metadata.Labels["eks.amazonaws.com/fargate-profile"])
		}
		if want := "vessel-ip-" + strings.ReplaceAll(p.Status.PodIP, ".", "-"); p.Spec.NodeName != want {
			t.Errorf("pod %s with IP %s is on node %s, want %s", p.Metadata.Name, p.Status.PodIP, p.Spec.NodeName, want)
		}
		nodeNames[p.Spec.NodeName] = true
	}
	if len(nodeNames) != 3 {
		t.Errorf("the three pods share nodes: %v", nodeNames)
	}
	nodes := e.vesselNodes()
	if len(nodes) != 3 {
		t.Fatalf("%d Vessel nodes, want 3", len(nodes))
	}
	for _, n := range nodes {
		if n.Metadata.Labels["eks.amazonaws.com/compute-type"] != "fargate" || n.Status.Capacity["pods"] != "1" ||
			n.Status.Capacity["cpu"] != "500m" || n.Status.Capacity["memory"] != "2Gi" {
			t.Errorf("node %s: labels %v capacity %v", n.Metadata.Name, n.Metadata.Labels, n.Status.Capacity)
		}
		t.Logf("node %s runs its pod under %s", n.Metadata.Name, n.Metadata.Labels["vessel.dev/runtime"])
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == "Ready" && c.Status == "True"
		}
		if !ready {
			t.Errorf("node %s is not Ready: %+v", n.Metadata.Name, n.Status.Conditions)
		}
	}

	pod := pods[0]
	// The events a kubelet emits, from the scheduler and the pod's node.
	e.eventually(30*time.Second, "the pod's events", func() (bool, string) {
		out, _ := e.cluster.Kubectl("get", "events", "--field-selector", "involvedObject.name="+pod.Metadata.Name,
			"-o", "jsonpath={range .items[*]}{.reason}{\" \"}{end}")
		for _, r := range []string{"Scheduled", "Pulling", "Pulled", "Created", "Started"} {
			if !strings.Contains(out, r) {
				return false, out
			}
		}
		return true, out
	})
	// kubectl logs goes through the API server to the bridge's kubelet API.
	e.eventually(30*time.Second, "kubectl logs", func() (bool, string) {
		out, _ := e.cluster.Kubectl("logs", pod.Metadata.Name)
		return strings.Contains(out, "web started on "+pod.Status.PodIP), out
	})
	// Pods get no task metadata endpoint (EKS pods have none; ECS tasks do).
	if out, _ := e.cluster.Kubectl("logs", pod.Metadata.Name); !strings.Contains(out, "metadata endpoint: none") {
		t.Errorf("a pod's container was given ECS_CONTAINER_METADATA_URI_V4; its log: %q", out)
	}
	for _, args := range [][]string{{"--tail=1"}, {"--since=10m", "--timestamps"}, {"--limit-bytes=5"}} {
		out, err := e.cluster.Kubectl(append([]string{"logs", pod.Metadata.Name}, args...)...)
		want := "web started on "
		if args[0] == "--limit-bytes=5" {
			want = "web s"
		}
		if err != nil || !strings.Contains(out, want) || args[0] == "--limit-bytes=5" && len(out) > 6 {
			t.Errorf("kubectl logs %v: %q (err %v)", args, out, err)
		}
	}
	// kubectl exec, with the command's output and exit code.
	cmd := exec.Command(e.cluster.Bin("kubectl"), "--kubeconfig", e.cluster.Kubeconfig, "exec", pod.Metadata.Name, "--",
		"sh", "-c", "cat /www/index.html; exit 3")
	execOut, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(execOut), "hello from "+pod.Metadata.Name) {
		t.Errorf("kubectl exec: err %v, output %q; want exit 3 and the page", err, execOut)
	}
	// The pod's hostname is its name, as a kubelet gives it, in its UTS
	// name, its HOSTNAME and its /etc/hosts.
	if out := e.kubectl("exec", pod.Metadata.Name, "--", "sh", "-c", `echo "$(hostname) $HOSTNAME"; grep -c "^`+pod.Status.PodIP+`[[:space:]].*`+pod.Metadata.Name+`" /etc/hosts`); out != pod.Metadata.Name+" "+pod.Metadata.Name+"\n1\n" {
		t.Errorf("pod %s's hostname, HOSTNAME and /etc/hosts entries for it: %q", pod.Metadata.Name, out)
	}
	// A pod's subdomain qualifies its name in /etc/hosts, as a kubelet
	// writes it; with setHostnameAsFQDN that name is its hostname too.
	e.kubectl("create", "namespace", "peers")
	e.profile("create", "peers", "--namespace", "peers", "--wait")
	if out, err := e.apply(fmt.Sprintf(peerPods, e.image, e.image)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, c := range []struct{ pod, hostname, fqdn, short string }{
		{"peer-0", "db-0", "db-0.cluster.peers.svc.cluster.local", "db-0"},
		{"peer-1", "peer-1.cluster.peers.svc.cluster.local", "peer-1.cluster.peers.svc.cluster.local", "peer-1"},
	} {
		p := e.waitRunning("peers", c.pod)
		want := fmt.Sprintf("%s %s\n%s\t%s %s\n", c.hostname, c.hostname, p.Status.PodIP, c.fqdn, c.short)
		if out := e.kubectl("exec", "-n", "peers", c.pod, "--", "sh", "-c", `echo "$(hostname) $HOSTNAME"; grep "^`+p.Status.PodIP+`[[:space:]]" /etc/hosts`); out != want {
			t.Errorf("pod %s's hostname, HOSTNAME and /etc/hosts entry: %q, want %q", c.pod, out, want)
		}
	}
	e.kubectl("delete", "pod", "-n", "peers", "peer-0", "peer-1", "--wait=false") // their nodes go with them
	// kubectl exec -i with stdin.
	cmd = exec.Command(e.cluster.Bin("kubectl"), "--kubeconfig", e.cluster.Kubeconfig, "exec", "-i", pod.Metadata.Name, "--", "cat")
	cmd.Stdin = strings.NewReader("piped through exec\n")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "piped through exec" {
		t.Errorf("kubectl exec -i cat: err %v, output %q", err, out)
	}
	// kubectl port-forward reaches the pod's port.
	local := freePort(t)
	pf := exec.Command(e.cluster.Bin("kubectl"), "--kubeconfig", e.cluster.Kubeconfig, "port-forward", "pod/"+pod.Metadata.Name, local+":8080")
	pfLog := &strings.Builder{}
	pf.Stdout, pf.Stderr = pfLog, pfLog
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Process.Kill(); pf.Wait() })
	e.eventually(30*time.Second, "kubectl port-forward", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:" + local + "/index.html")
		if err != nil {
			return false, err.Error() + " " + pfLog.String()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "hello from "+pod.Metadata.Name), string(body)
	})

	// A pod no profile selects stays with the default scheduler (and,
	// with no regular node here, Pending).
	e.kubectl("create", "namespace", "other")
	if out, err := e.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: other, labels: {app: web}}
spec:
  containers: [{name: c, image: %s, command: ["sleep", "60"]}]
`, e.image)); err != nil {
		t.Fatalf("creating a pod in other: %v\n%s", err, out)
	}
	e.bridgeLooked("other")
	other := e.pods("other", "app=web")
	if len(other) != 1 || other[0].Spec.NodeName != "" || other[0].Status.Phase != "Pending" ||
		other[0].Spec.SchedulerName != "default-scheduler" {
		t.Errorf("the pod in namespace other: %+v; want Pending for the default scheduler", other)
	}

	// A privileged pod the profile would take is refused.
	out, err = e.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: default, labels: {app: web}}
spec:
  containers:
  - {name: c, image: %s, command: ["sleep", "60"], securityContext: {privileged: true}}
`, e.image))
	if err != nil {
		out += err.Error()
	}
	if err == nil || !strings.Contains(strings.ToLower(out), "privileged") || !strings.Contains(out, "not supported on Fargate") {
		t.Errorf("a privileged pod was not refused with a clear message: err %v\n%s", err, out)
	}

	// Scaling to zero removes the pods and their nodes.
	e.kubectl("scale", "deployment/web", "--replicas=0")
	e.eventually(90*time.Second, "the web pods and their nodes to be gone", func() (bool, string) {
		p, n := e.pods("default", "app=web"), e.vesselNodes()
		return len(p) == 0 && len(n) == 0, fmt.Sprintf("%d pods, %d nodes", len(p), len(n))
	})
}

// podEvents returns the reasons and messages of a pod's events.
func (e *bridgeEnv) podEvents(ns, name string) string {
	out, _ := e.cluster.Kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name,
		"-o", "jsonpath={range .items[*]}{.reason}{\": \"}{.message}{\"\\n\"}{end}")
	return out
}

// bridgeLooked shows that the bridge's scheduler has handled the pods
// created so far, for a test that asserts it left one alone: it creates,
// in namespace ns (which no profile may select), a pod naming Vessel's
// scheduler and waits for the bridge's FailedScheduling event on it (the
// scheduler's queue is first in, first out), then deletes it.
func (e *bridgeEnv) bridgeLooked(ns string) {
	e.t.Helper()
	name := "bridge-looked"
	if out, err := e.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  schedulerName: vessel-scheduler
  containers: [{name: c, image: %s, command: ["sleep", "60"]}]
`, name, ns, e.image)); err != nil {
		e.t.Fatalf("creating pod %s/%s: %v\n%s", ns, name, err, out)
	}
	e.eventually(60*time.Second, "the bridge to look at "+ns+"/"+name, func() (bool, string) {
		ev := e.podEvents(ns, name)
		return strings.Contains(ev, "no ACTIVE Fargate profile matches"), ev
	})
	e.kubectl("delete", "pod", "-n", ns, name)
}

func (e *bridgeEnv) pod(ns, name string) kubePod {
	e.t.Helper()
	var p kubePod
	out := e.kubectl("get", "pod", "-n", ns, name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		e.t.Fatalf("decoding pod: %v\n%s", err, out)
	}
	return p
}

func (e *bridgeEnv) waitRunning(ns, name string) kubePod {
	e.t.Helper()
	var p kubePod
	e.eventually(120*time.Second, "pod "+ns+"/"+name+" Running on a Vessel node", func() (bool, string) {
		p = e.pod(ns, name)
		return p.Status.Phase == "Running" && strings.HasPrefix(p.Spec.NodeName, "vessel-"),
			fmt.Sprintf("phase %s node %q; events:\n%s", p.Status.Phase, p.Spec.NodeName, e.podEvents(ns, name))
	})
	return p
}

func (e *bridgeEnv) profile(args ...string) {
	e.t.Helper()
	out, stderr, code := e.server.vessel(append([]string{"profile"}, args...)...)
	if code != 0 {
		e.t.Fatalf("vessel profile %v: %s%s", args, out, stderr)
	}
}

const simplePod = `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "echo up; exec sleep 3600"]
    resources: {requests: {cpu: %s, memory: 256Mi}}
`

// peerPods are two pods of the subdomain "cluster" (a headless Service's
// name, as a StatefulSet's pods have): peer-0 named db-0 by
// spec.hostname, peer-1 with setHostnameAsFQDN.
const peerPods = `apiVersion: v1
kind: Pod
metadata: {name: peer-0, namespace: peers}
spec:
  hostname: db-0
  subdomain: cluster
  terminationGracePeriodSeconds: 2
  containers:
  - {name: main, image: %s, command: ["sleep", "3600"], resources: {requests: {cpu: 250m, memory: 256Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: peer-1, namespace: peers}
spec:
  subdomain: cluster
  setHostnameAsFQDN: true
  terminationGracePeriodSeconds: 2
  containers:
  - {name: main, image: %s, command: ["sleep", "3600"], resources: {requests: {cpu: 250m, memory: 256Mi}}}
`

// TestKubernetesBridgeBehaviours covers what the scheduler does beyond the
// happy path: pods that arrive before their profile, pods too large for
// any size, profile deletion, and a restart of the bridge.
func TestKubernetesBridgeBehaviours(t *testing.T) {
	e := startBridge(t, "--runtimes", "sim,runc")

	t.Run("PodBeforeProfile", func(t *testing.T) {
		e.t = t
		e.kubectl("create", "namespace", "late")
		if out, err := e.apply(fmt.Sprintf(simplePod, "early", "late", "batch", e.image, "250m")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		e.bridgeLooked("late")
		if p := e.pod("late", "early"); p.Spec.NodeName != "" || p.Spec.SchedulerName != "default-scheduler" {
			t.Fatalf("the pod was placed before any profile matched it: %+v", p)
		}
		e.profile("create", "late", "--namespace", "late", "--wait")
		p := e.waitRunning("late", "early")
		if p.Metadata.Labels["eks.amazonaws.com/fargate-profile"] != "late" || p.Metadata.Annotations["CapacityProvisioned"] != "0.25vCPU 0.5GB" {
			t.Errorf("the late pod: labels %v annotations %v", p.Metadata.Labels, p.Metadata.Annotations)
		}
	})

	t.Run("MissedWebhook", func(t *testing.T) {
		e.t = t
		// A pod created while the webhook is away goes to the default
		// scheduler; with no node for it, the bridge takes it.
		e.kubectl("delete", "mutatingwebhookconfiguration", "vessel-pod-mutator")
		if out, err := e.apply(fmt.Sprintf(simplePod, "unseen", "late", "batch", e.image, "250m")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if p := e.pod("late", "unseen"); p.Spec.SchedulerName != "default-scheduler" {
			t.Fatalf("the webhook changed the pod: %+v", p)
		}
		p := e.waitRunning("late", "unseen")
		if p.Metadata.Labels["eks.amazonaws.com/fargate-profile"] != "late" {
			t.Errorf("the pod the bridge took has labels %v", p.Metadata.Labels)
		}
		if out, stderr, code := e.server.vessel("k8s", "install", "--kubeconfig", e.cluster.Kubeconfig, "--k8s-address", "127.0.0.1",
			"--webhook-port", e.webhookPort); code != 0 {
			t.Fatalf("install again: %s%s", out, stderr)
		}
		e.kubectl("delete", "pod", "-n", "late", "unseen", "--wait=true")
	})

	t.Run("PodFaithfully", func(t *testing.T) {
		e.t = t
		manifest := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: late}
data: {greeting: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret, namespace: late}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: faithful, namespace: late, labels: {app: faithful, tier: web}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: init
    image: %[1]s
    command: ["sh", "-c", "echo written-by-init > /shared/init.txt"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: %[1]s
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"]
    env:
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: podinfo, mountPath: /podinfo}
    - {name: shared, mountPath: /shared}
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["cat", "/www/healthz"]}
      periodSeconds: 2
  volumes:
  - {name: config, configMap: {name: app-config}}
  - {name: shared, emptyDir: {}}
  - name: podinfo
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: late, labels: {app: crasher}}
spec:
  containers:
  - {name: c, image: %[1]s, command: ["sh", "-c", "echo run at $(date +%%s); exit 1"]}
`, e.image)
		e.profile("create", "late2", "--namespace", "late", "--wait")
		if out, err := e.apply(manifest); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		p := e.waitRunning("late", "faithful")
		e.eventually(60*time.Second, "the readiness probe to make the pod Ready", func() (bool, string) {
			out, _ := e.cluster.Kubectl("get", "pod", "-n", "late", "faithful", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
			return out == "True", out
		})
		checks := map[string]string{
			"cat /config/greeting": "hello-from-configmap",
			"echo $PASSWORD":       "s3cret",
			"echo $MY_NODE":        p.Spec.NodeName,
			"cat /shared/init.txt": "written-by-init",
			"cat /podinfo/labels":  `tier="web"`,
			"echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT":                            "10.96.0.1:443",
			"cat /var/run/secrets/kubernetes.io/serviceaccount/namespace":                       "late",
			"test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-present": "token-present",
			"grep -c BEGIN /var/run/secrets/kubernetes.io/serviceaccount/ca.crt":                "1",
			"touch /config/x 2>/dev/null && echo writable || echo read-only":                    "read-only",
		}
		for cmd, want := range checks {
			out, err := e.cluster.Kubectl("exec", "-n", "late", "faithful", "-c", "main", "--", "sh", "-c", cmd)
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("in the pod, %q gave %q (err %v), want %q", cmd, out, err, want)
			}
		}
		// restartPolicy Always: the container is restarted in place, the
		// count shows, and --previous gives the run before.
		e.eventually(60*time.Second, "the crasher restarted", func() (bool, string) {
			out, _ := e.cluster.Kubectl("get", "pod", "-n", "late", "crasher", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
			n, _ := strconv.Atoi(out)
			return n >= 1, out
		})
		prev, err := e.cluster.Kubectl("logs", "-n", "late", "crasher", "--previous")
		if err != nil || !strings.Contains(prev, "run at") {
			t.Errorf("kubectl logs --previous: %q (err %v)", prev, err)
		}
		if cur := e.pod("late", "crasher"); cur.Status.Phase != "Running" {
			t.Errorf("the crasher pod is %s, want Running (it restarts in place)", cur.Status.Phase)
		}
		e.kubectl("delete", "pod", "-n", "late", "crasher", "faithful", "--wait=true")
		e.profile("delete", "late2", "--wait", "--wait-timeout", "60s")
	})

	t.Run("TooLarge", func(t *testing.T) {
		e.t = t
		e.kubectl("create", "namespace", "big")
		e.profile("create", "big", "--namespace", "big", "--wait")
		if out, err := e.apply(fmt.Sprintf(simplePod, "huge", "big", "huge", e.image, "20")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		e.eventually(30*time.Second, "a FailedScheduling event naming the largest size", func() (bool, string) {
			ev := e.podEvents("big", "huge")
			return strings.Contains(ev, "FailedScheduling") && strings.Contains(ev, "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE") &&
				strings.Contains(ev, "16vCPU"), ev
		})
		if p := e.pod("big", "huge"); p.Spec.NodeName != "" || p.Status.Phase != "Pending" {
			t.Errorf("the huge pod is not Pending: %+v", p)
		}
	})

	t.Run("BridgeRestart", func(t *testing.T) {
		e.t = t
		before := e.waitRunning("late", "early")
		e.server.kill(syscall.SIGKILL)
		e.server.start()
		// The new bridge adopts (or deletes) the nodes it finds before it
		// says it runs; then it has looked at the pod's node.
		e.eventually(60*time.Second, "the restarted bridge to run", func() (bool, string) {
			return strings.Contains(e.server.log.String(), "Kubernetes bridge running"), ""
		})
		after := e.waitRunning("late", "early")
		if after.Spec.NodeName != before.Spec.NodeName || after.Status.PodIP != before.Status.PodIP {
			t.Errorf("after a restart the pod moved: %s/%s -> %s/%s", before.Spec.NodeName, before.Status.PodIP,
				after.Spec.NodeName, after.Status.PodIP)
		}
		if n := e.vesselNodes(); len(n) != 1 {
			t.Errorf("%d Vessel nodes after the restart, want 1", len(n))
		}
		e.eventually(30*time.Second, "logs after the restart", func() (bool, string) {
			out, _ := e.cluster.Kubectl("logs", "-n", "late", "early")
			return strings.Contains(out, "up"), out
		})
	})

	t.Run("ProfileDeletion", func(t *testing.T) {
		e.t = t
		if out, err := e.apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: late}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{name: w, image: %s, command: ["sleep", "3600"]}]
`, e.image)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var first string
		e.eventually(60*time.Second, "the worker Running", func() (bool, string) {
			ps := e.pods("late", "app=worker")
			if len(ps) == 1 && ps[0].Status.Phase == "Running" {
				first = ps[0].Metadata.Name
				return true, ""
			}
			return false, fmt.Sprint(ps)
		})
		e.profile("delete", "late", "--wait", "--wait-timeout", "60s")
		// The pods the profile placed are stopped and deleted; the
		// replacement waits for a profile.
		e.eventually(60*time.Second, "the worker replaced by a Pending pod", func() (bool, string) {
			ps := e.pods("late", "app=worker")
			return len(ps) == 1 && ps[0].Metadata.Name != first && ps[0].Spec.NodeName == "" && ps[0].Status.Phase == "Pending",
				fmt.Sprint(ps)
		})
		e.eventually(60*time.Second, "the nodes of deleted pods removed", func() (bool, string) {
			n := e.vesselNodes()
			return len(n) == 0, fmt.Sprint(len(n), " nodes")
		})
	})
}

// TestKubernetesRuntimeClasses runs pods under the RuntimeClasses `vessel
// k8s install` creates: each lands in the runtime it names, as the node's
// label and the kernel the pod sees show.
func TestKubernetesRuntimeClasses(t *testing.T) {
	requireRoot(t)
	buildTools(t)
	// A warm gVisor sandbox for the pods: a pod's hostname is its name,
	// which the claim gives the booted sandbox.
	e := startBridge(t, "--runtimes", "microvm,gvisor,runc,sim", "--warm-pool", "gvisor=1,runc=0")
	t.Cleanup(func() {
		// The pods first (their tasks would come back), then the pool.
		e.cluster.Kubectl("delete", "pods", "--all", "--timeout=60s")
		dropPool(t, e.server)
	})
	waitWarmMetric(t, e.server, "vessel_warm_pool_size", "gvisor", 1)
	e.profile("create", "sandboxes", "--namespace", "default", "--labels", "app=sandboxed", "--wait")
	hostKernel, _ := exec.Command("uname", "-r").Output()
	for _, rc := range []string{"microvm", "gvisor"} {
		manifest := fmt.Sprintf(simplePod, rc, "default", "sandboxed", e.image, "250m")
		manifest = strings.Replace(manifest, "spec:\n", "spec:\n  runtimeClassName: "+rc+"\n", 1)
		if out, err := e.apply(manifest); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	for _, rc := range []string{"microvm", "gvisor"} {
		p := e.waitRunning("default", rc)
		var node kubeNode
		if err := json.Unmarshal([]byte(e.kubectl("get", "node", p.Spec.NodeName, "-o", "json")), &node); err != nil {
			t.Fatal(err)
		}
		if got := node.Metadata.Labels["vessel.dev/runtime"]; got != rc {
			t.Errorf("pod %s runs on a node labelled runtime %q", rc, got)
		}
		kernel := e.kubectl("exec", rc, "--", "uname", "-r")
		if strings.TrimSpace(kernel) == strings.TrimSpace(string(hostKernel)) {
			t.Errorf("pod %s sees the host's kernel %s: it is not in its own sandbox", rc, kernel)
		}
		t.Logf("runtimeClassName %s: node %s, kernel %s", rc, p.Spec.NodeName, strings.TrimSpace(kernel))
		if got := strings.TrimSpace(e.kubectl("exec", rc, "--", "hostname")); got != rc {
			t.Errorf("pod %s has hostname %q, want its name", rc, got)
		}
	}
	if hits := warmMetric(t, e.server, "vessel_warm_pool_hits_total", "gvisor"); hits < 1 {
		t.Errorf("no gVisor pod took the warm sandbox (hits %v); the server's warm pool log:\n%s", hits, logLinesOf(e.server, []string{"warm"}))
	}

	// A profile's vessel:runtime tag is the default of the pods it takes.
	e.profile("create", "isolated", "--namespace", "default", "--labels", "app=isolated", "--tag", "vessel:runtime=gvisor", "--wait")
	if out, err := e.apply(fmt.Sprintf(simplePod, "by-profile", "default", "isolated", e.image, "250m")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := e.waitRunning("default", "by-profile")
	if got := e.kubectl("get", "node", p.Spec.NodeName, "-o", "jsonpath={.metadata.labels.vessel\\.dev/runtime}"); got != "gvisor" {
		t.Errorf("the pod of a profile tagged vessel:runtime=gvisor runs under %q", got)
	}
	if got := strings.TrimSpace(e.kubectl("exec", "by-profile", "--", "hostname")); got != "by-profile" {
		t.Errorf("pod by-profile has hostname %q, want its name", got)
	}
}

// TestKubernetesLostHost: when the host running a pod's sandbox stops
// sending heartbeats, its node turns NotReady, and after the host timeout
// the pod is replaced by its controller; the replacement runs once a host
// is back.
func TestKubernetesLostHost(t *testing.T) {
	e := startBridge(t, "--runtimes", "sim", "--no-agent", "--host-timeout", "8s")
	s := e.server
	var log bytes.Buffer
	agent := exec.Command(vesselBin, "agent", "--server", s.endpoint, "--data-dir", t.TempDir(),
		"--host-id", "far-host", "--runtime", "sim", "--runtimes", "sim", "--token", s.joinToken())
	agent.Env = agentEnv()
	agent.Stdout, agent.Stderr = &log, &log
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGCONT)
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	})
	e.profile("create", "web", "--namespace", "default", "--labels", "app=web", "--wait")
	if out, err := e.apply(fmt.Sprintf(webDeployment, 1, e.image)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var first kubePod
	e.eventually(60*time.Second, "the pod Running on the remote host", func() (bool, string) {
		ps := e.pods("default", "app=web")
		if len(ps) == 1 && ps[0].Status.Phase == "Running" {
			first = ps[0]
			return true, ""
		}
		return false, fmt.Sprint(ps)
	})

	// The node is NotReady only from when the bridge sees the host silent
	// until the host timeout removes it: a watch sees that update however
	// short the window, where polling may miss it.
	var readiness syncBuffer
	watch := exec.Command(e.cluster.Bin("kubectl"), "--kubeconfig="+e.cluster.Kubeconfig, "get", "node", first.Spec.NodeName,
		"--watch", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}{"\n"}`)
	watch.Stdout, watch.Stderr = &readiness, &readiness
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	e.eventually(30*time.Second, "the node watched Ready", func() (bool, string) {
		return strings.Contains(readiness.String(), "True"), readiness.String()
	})
	agent.Process.Signal(syscall.SIGSTOP) // the host goes silent
	e.eventually(30*time.Second, "the node NotReady", func() (bool, string) {
		for _, l := range strings.Split(readiness.String(), "\n") {
			if l == "False" || l == "Unknown" {
				return true, ""
			}
		}
		return false, readiness.String()
	})
	e.eventually(60*time.Second, "the pod replaced", func() (bool, string) {
		ps := e.pods("default", "app=web")
		return len(ps) == 1 && ps[0].Metadata.Name != first.Metadata.Name, fmt.Sprint(ps)
	})
	agent.Process.Signal(syscall.SIGCONT) // the host is back
	e.eventually(60*time.Second, "the replacement Running", func() (bool, string) {
		ps := e.pods("default", "app=web")
		return len(ps) == 1 && ps[0].Metadata.Name != first.Metadata.Name && ps[0].Status.Phase == "Running", fmt.Sprint(ps)
	})
	e.eventually(30*time.Second, "the lost pod's node removed", func() (bool, string) {
		out, _ := e.cluster.Kubectl("get", "node", first.Spec.NodeName, "-o", "name")
		return strings.TrimSpace(out) == "", out
	})
}

// TestKubernetesRemoteBridge runs the bridge as its own process against a
// control plane over its API (`vessel k8s bridge --server URL`).
func TestKubernetesRemoteBridge(t *testing.T) {
	requireRoot(t)
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	s := startRuncServer(t, "--runtimes", "sim,runc")
	id, secret := s.keys()
	bridgeDir, webhookPort := t.TempDir(), freePort(t)
	var log bytes.Buffer
	b := exec.Command(vesselBin, "k8s", "bridge", "--kubeconfig", c.Kubeconfig, "--server", s.endpoint, "--data-dir", bridgeDir,
		"--k8s-address", "127.0.0.1", "--webhook-port", webhookPort, "--kubelet-port", freePort(t))
	b.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret)
	b.Stdout, b.Stderr = &log, &log
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Process.Signal(syscall.SIGTERM)
		b.Wait()
		if t.Failed() {
			t.Logf("bridge log:\n%s", tail(log.String(), 60))
		}
	})
	install := exec.Command(vesselBin, "k8s", "install", "--kubeconfig", c.Kubeconfig, "--data-dir", bridgeDir,
		"--k8s-address", "127.0.0.1", "--webhook-port", webhookPort)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	e := &bridgeEnv{t: t, cluster: c, server: s, image: img, webhookPort: webhookPort}
	e.eventually(60*time.Second, "the bridge to run", func() (bool, string) {
		return strings.Contains(log.String(), "Kubernetes bridge running"), log.String()
	})
	e.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	e.profile("create", "web", "--namespace", "default", "--labels", "app=web", "--wait")
	if out, err := e.apply(fmt.Sprintf(webDeployment, 1, img)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var pod kubePod
	e.eventually(90*time.Second, "the pod Running on a vessel-ip node", func() (bool, string) {
		ps := e.pods("default", "app=web")
		if len(ps) == 1 && ps[0].Status.Phase == "Running" && strings.HasPrefix(ps[0].Spec.NodeName, "vessel-ip-") {
			pod = ps[0]
			return true, ""
		}
		return false, fmt.Sprint(ps)
	})
	e.eventually(30*time.Second, "kubectl logs through the remote bridge", func() (bool, string) {
		out, _ := c.Kubectl("logs", pod.Metadata.Name)
		return strings.Contains(out, "web started on "+pod.Status.PodIP), out
	})
	if out, err := c.Kubectl("exec", pod.Metadata.Name, "--", "cat", "/www/index.html"); err != nil || !strings.Contains(out, "hello from "+pod.Metadata.Name) {
		t.Errorf("kubectl exec through the remote bridge: %q (err %v)", out, err)
	}
	// Port-forward: the remote bridge, the control plane's relay, the
	// in-process agent's connection to the task.
	if body, err := portForwardGet(t, c, pod.Metadata.Name, 8080); err != nil || !strings.Contains(body, "hello from "+pod.Metadata.Name) {
		t.Errorf("kubectl port-forward through the remote bridge: %q (err %v)", body, err)
	}
	e.kubectl("scale", "deployment/web", "--replicas=0")
	e.eventually(60*time.Second, "the pod and its node gone", func() (bool, string) {
		p, n := e.pods("default", "app=web"), e.vesselNodes()
		return len(p) == 0 && len(n) == 0, fmt.Sprintf("%d pods, %d nodes", len(p), len(n))
	})
}

// TestKubernetesServicesOnVesselHost: a host that is only a Vessel host
// runs the real kube-proxy (`vessel server --kube-proxy`), so its pods
// reach ClusterIP Services, here one whose endpoints are other Vessel pods
// on the same bridge.
func TestKubernetesServicesOnVesselHost(t *testing.T) {
	requireRoot(t)
	assets, err := k8senv.Assets(t)
	if err != nil {
		t.Fatal(err)
	}
	kubeProxy := assets + "/kube-proxy"
	e := startBridge(t, "--runtimes", "sim,runc", "--kube-proxy", kubeProxy)
	t.Cleanup(func() {
		// kube-proxy leaves its rules when it stops, as on any node.
		exec.Command(kubeProxy, "--cleanup", "--v=0").Run()
	})
	e.profile("create", "web", "--namespace", "default", "--labels", "app=web", "--wait")
	if out, err := e.apply(fmt.Sprintf(webDeployment, 2, e.image) + `---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: web, role: client}}
spec:
  containers: [{name: c, image: ` + e.image + `, command: ["sleep", "3600"]}]
`); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.waitRunning("default", "client")
	ip := strings.TrimSpace(e.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
	e.eventually(60*time.Second, "the Service's endpoints to be the Vessel pods", func() (bool, string) {
		out, _ := e.cluster.Kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
			"-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}")
		return len(strings.Fields(out)) >= 2, out
	})
	// The client pod (itself on Vessel) reaches the ClusterIP; both
	// backends answer in turn.
	seen := map[string]bool{}
	e.eventually(60*time.Second, "both web pods answering through the ClusterIP", func() (bool, string) {
		out, _ := e.cluster.Kubectl("exec", "client", "--", "sh", "-c",
			fmt.Sprintf(`printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 3 %s 80`, ip))
		if i := strings.Index(out, "hello from "); i >= 0 {
			seen[strings.Fields(out[i:])[2]] = true
		}
		return len(seen) >= 2, out
	})
	t.Logf("ClusterIP %s answered from %v", ip, seen)
}
