package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"vessel.dev/vessel/test/k8senv"
)

// corednsImage pushes the CoreDNS image scripts/build-coredns makes (an OCI
// layout; $VESSEL_COREDNS_IMAGE when set, else the script is run, which
// reuses its cache) to reg and returns its reference.
func corednsImage(t *testing.T, reg *testRegistry) string {
	t.Helper()
	dir := os.Getenv("VESSEL_COREDNS_IMAGE")
	if dir == "" {
		script := filepath.Join(repoRoot, "scripts", "build-coredns")
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(script)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, tail(stderr.String(), 30))
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("built CoreDNS in %s", d.Round(time.Second))
		}
		dir = strings.TrimSpace(stdout.String())
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading the CoreDNS image layout %s: %v", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("the CoreDNS image layout %s: %v (%d manifests, want 1)", dir, err, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.host + "/coredns:v1.15.0"
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parsed, img); err != nil {
		t.Fatalf("pushing CoreDNS: %v", err)
	}
	return ref
}

// fetchLayer is a layer with /bin/fetch, a static Go program that prints
// the body of a URL: Debian's busybox-static crashes resolving a name with
// DNS (static glibc), while Go's resolver follows resolv.conf as a pod's
// libc would (nameservers, search domains, ndots).
func fetchLayer(t *testing.T) v1.Layer {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, resp.Status)
		os.Exit(1)
	}
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fetch\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "fetch", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building fetch: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "fetch"))
	if err != nil {
		t.Fatal(err)
	}
	return layerFrom(t, []tarEntry{
		{hdr: tar.Header{Name: "bin/", Typeflag: tar.TypeDir}},
		{hdr: tar.Header{Name: "bin/fetch", Typeflag: tar.TypeReg}, body: bin},
	})
}

// hybridSubnet is a free task subnet outside the cluster's service range
// (10.96.0.0/16) and the regular node's pod network (10.85.0.0/24).
func hybridSubnet(t *testing.T) string {
	t.Helper()
	for {
		if cidr := freeSubnet(t); !strings.HasPrefix(cidr, "10.96.") {
			return cidr
		}
	}
}

// The standard CoreDNS of kubeadm and EKS: RBAC, the Corefile, a
// Deployment of two replicas with dnsPolicy Default, and the kube-dns
// Service at 10.96.0.10. Two changes: no NET_BIND_SERVICE capability added
// (Vessel's admission, as Fargate's, allows only SYS_PTRACE; the container
// runs as root with the default capabilities, which include it), and no
// loop plugin (the host's resolver may be a local one).
const corednsManifest = `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        forward . /etc/resolv.conf {
            max_concurrent 1000
        }
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 2
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      priorityClassName: system-cluster-critical
      serviceAccountName: coredns
      tolerations:
      - {key: CriticalAddonsOnly, operator: Exists}
      nodeSelector:
        kubernetes.io/os: linux
      containers:
      - name: coredns
        image: %s
        imagePullPolicy: IfNotPresent
        resources:
          limits: {memory: 170Mi}
          requests: {cpu: 100m, memory: 70Mi}
        args: ["-conf", "/etc/coredns/Corefile"]
        volumeMounts:
        - {name: config-volume, mountPath: /etc/coredns, readOnly: true}
        ports:
        - {containerPort: 53, name: dns, protocol: UDP}
        - {containerPort: 53, name: dns-tcp, protocol: TCP}
        - {containerPort: 9153, name: metrics, protocol: TCP}
        livenessProbe:
          httpGet: {path: /health, port: 8080, scheme: HTTP}
          initialDelaySeconds: 60
          timeoutSeconds: 5
          successThreshold: 1
          failureThreshold: 5
        readinessProbe:
          httpGet: {path: /ready, port: 8181, scheme: HTTP}
          periodSeconds: 2
      dnsPolicy: Default
      volumes:
      - name: config-volume
        configMap:
          name: coredns
          items: [{key: Corefile, path: Corefile}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: 10.96.0.10
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
`

// An HTTP server and its ClusterIP Service: NAME in NAMESPACE, serving
// "hello from NAME in NAMESPACE" on port 80 of the Service.
const httpServerManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: %[3]s
        command: ["sh", "-c", "mkdir -p /www && echo hello from %[1]s in %[2]s > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {app: %[1]s}
  ports: [{port: 80, targetPort: 8080}]
`

// A pod that waits to be exec'd into.
const clientPod = `apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: %[2]s, labels: {app: %[1]s}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: %[3]s, command: ["sleep", "3600"]}
`

// TestHybridCluster is the seed's demo end to end, on a hybrid cluster: a
// regular node (the real kubelet with containerd, and kube-proxy) beside
// Vessel, which runs the profiled namespaces. CoreDNS runs on Vessel in
// kube-system as on EKS; a web server in demo runs on the regular node; a
// busybox pod in default on Vessel looks it up and fetches its page through
// the Service name; and a pod on the regular node reaches, by name, a
// Service whose pod runs on Vessel.
func TestHybridCluster(t *testing.T) {
	requireRoot(t)
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	reg := newRegistry(t)
	busybox := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t), fetchLayer(t))
	pause := reg.push("pause:1", []string{"sleep", "2147483647"}, busyboxLayer(t))
	coredns := corednsImage(t, reg)

	node := c.StartNode(t, k8senv.NodeConfig{SandboxImage: pause, PlainHTTPRegistries: []string{reg.host}})
	t.Logf("regular node %s is Ready, pods on %s", node.Name, node.PodCIDR)

	// Vessel, bridged to the cluster, on a subnet of its own.
	cidr := hybridSubnet(t)
	webhookPort := freePort(t)
	s := startServer(t, "--subnet", "subnet-default="+cidr, "--runtime", "runc", "--runtimes", "runc",
		"--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", webhookPort, "--kubelet-port", freePort(t))
	s.subnet = cidr
	t.Cleanup(func() {
		if s.cmd != nil {
			stopAll(t, s)
		}
		removeBridges(cidr)
	})
	if out, stderr, code := s.vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", webhookPort); code != 0 {
		t.Fatalf("vessel k8s install: exit %d\n%s%s", code, out, stderr)
	}
	e := &bridgeEnv{t: t, cluster: c, server: s, image: busybox, webhookPort: webhookPort}
	// Before the tasks are stopped: the workloads on Vessel go, or the
	// bridge would start new tasks for their replacement pods.
	t.Cleanup(func() {
		for _, ns := range []string{"default", "kube-system"} {
			c.Kubectl("delete", "deployment,pod", "--all", "-n", ns, "--wait=false", "--grace-period=1")
		}
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			out, err := c.Kubectl("get", "nodes", "-l", "vessel.dev/compute-type=vessel", "-o", "name")
			if err == nil && strings.TrimSpace(out) == "" {
				return
			}
			time.Sleep(time.Second)
		}
		t.Logf("Vessel nodes left after deleting the workloads")
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vessel server log:\n%s", tail(s.log.String(), 80))
			ev, _ := c.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", tail(ev, 60))
			pods, _ := c.Kubectl("get", "pods", "-A", "-o", "wide")
			t.Logf("pods:\n%s", pods)
		}
	})
	e.eventually(60*time.Second, "the bridge to run", func() (bool, string) {
		return strings.Contains(s.log.String(), "Kubernetes bridge running"), ""
	})
	e.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	// As on EKS: a profile takes CoreDNS, another the default namespace.
	e.profile("create", "coredns", "--namespace", "kube-system", "--labels", "k8s-app=kube-dns", "--wait")
	e.profile("create", "default", "--namespace", "default", "--wait")

	// CoreDNS on Vessel.
	if out, err := e.apply(fmt.Sprintf(corednsManifest, coredns)); err != nil {
		t.Fatalf("applying CoreDNS: %v\n%s", err, out)
	}
	// The web server in demo, on the regular node.
	e.kubectl("create", "namespace", "demo")
	if out, err := e.apply(fmt.Sprintf(httpServerManifest, "web", "demo", busybox)); err != nil {
		t.Fatalf("applying web: %v\n%s", err, out)
	}
	// A web server in default, on Vessel, for the way back.
	if out, err := e.apply(fmt.Sprintf(httpServerManifest, "hello", "default", busybox)); err != nil {
		t.Fatalf("applying hello: %v\n%s", err, out)
	}
	// The clients: busybox in default on Vessel, and one in demo on the node.
	if out, err := e.apply(fmt.Sprintf(clientPod, "client", "default", busybox)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := e.apply(fmt.Sprintf(clientPod, "client", "demo", busybox)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	ready := func(ns, selector string, want int, onVessel bool) []kubePod {
		var pods []kubePod
		e.eventually(150*time.Second, fmt.Sprintf("%d ready pods %s in %s", want, selector, ns), func() (bool, string) {
			pods = e.pods(ns, selector)
			n := 0
			for _, p := range pods {
				ok := p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0
				for _, cs := range p.Status.ContainerStatuses {
					ok = ok && cs.Ready
				}
				if onVessel {
					ok = ok && strings.HasPrefix(p.Spec.NodeName, "vessel-ip-")
				} else {
					ok = ok && p.Spec.NodeName == node.Name
				}
				if ok {
					n++
				}
			}
			return n == want && len(pods) == want, fmt.Sprintf("%d of %d ready: %s", n, len(pods), podSummary(pods))
		})
		return pods
	}
	dns := ready("kube-system", "k8s-app=kube-dns", 2, true)
	web := ready("demo", "app=web", 1, false)
	hello := ready("default", "app=hello", 1, true)
	ready("default", "app=client", 1, true)
	ready("demo", "app=client", 1, false)
	t.Logf("CoreDNS on %s and %s; web on %s (%s); hello on %s (%s)", dns[0].Spec.NodeName, dns[1].Spec.NodeName,
		web[0].Spec.NodeName, web[0].Status.PodIP, hello[0].Spec.NodeName, hello[0].Status.PodIP)

	// Vessel pods' IPs are in their Services' EndpointSlices.
	e.eventually(60*time.Second, "the hello and kube-dns EndpointSlices", func() (bool, string) {
		out, _ := c.Kubectl("get", "endpointslices", "-A", "-o",
			`jsonpath={range .items[*]}{.metadata.labels.kubernetes\.io/service-name}={.endpoints[*].addresses[*]} {end}`)
		return strings.Contains(out, "hello="+hello[0].Status.PodIP) &&
			strings.Contains(out, dns[0].Status.PodIP) && strings.Contains(out, dns[1].Status.PodIP), out
	})

	// The Vessel pod's resolv.conf is the cluster's.
	resolv := e.kubectl("exec", "-n", "default", "client", "--", "cat", "/etc/resolv.conf")
	for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("the Vessel pod's resolv.conf lacks %q:\n%s", want, resolv)
		}
	}

	exec := func(ns, script string) (string, error) {
		return c.Kubectl("exec", "-n", ns, "client", "--", "sh", "-c", script)
	}
	// Vessel → CoreDNS on Vessel → the Service's ClusterIP → the regular node.
	webIP := e.kubectl("get", "service", "-n", "demo", "web", "-o", "jsonpath={.spec.clusterIP}")
	e.eventually(60*time.Second, "nslookup web.demo.svc.cluster.local from Vessel", func() (bool, string) {
		out, err := exec("default", "nslookup web.demo.svc.cluster.local")
		return err == nil && strings.Contains(out, webIP), fmt.Sprint(out, err)
	})
	e.eventually(60*time.Second, "the demo page through the Service name from Vessel", func() (bool, string) {
		out, err := exec("default", "fetch http://web.demo.svc.cluster.local/ && fetch http://web.demo/")
		return err == nil && strings.Count(out, "hello from web in demo") == 2, fmt.Sprint(out, err)
	})
	// And back: the regular node → CoreDNS on Vessel → a Service of Vessel pods.
	helloIP := e.kubectl("get", "service", "-n", "default", "hello", "-o", "jsonpath={.spec.clusterIP}")
	e.eventually(60*time.Second, "nslookup hello.default from the regular node", func() (bool, string) {
		out, err := exec("demo", "nslookup hello.default.svc.cluster.local")
		return err == nil && strings.Contains(out, helloIP), fmt.Sprint(out, err)
	})
	e.eventually(60*time.Second, "the Vessel page through the Service name from the regular node", func() (bool, string) {
		out, err := exec("demo", "fetch http://hello.default.svc.cluster.local/ && fetch http://hello.default/")
		return err == nil && strings.Count(out, "hello from hello in default") == 2, fmt.Sprint(out, err)
	})
	// Pod to pod across the two, by IP.
	if out, err := exec("demo", "fetch http://"+hello[0].Status.PodIP+":8080/"); err != nil || !strings.Contains(out, "hello from hello") {
		t.Errorf("regular pod → Vessel pod %s: %v %q", hello[0].Status.PodIP, err, out)
	}
	if out, err := exec("default", "fetch http://"+web[0].Status.PodIP+":8080/"); err != nil || !strings.Contains(out, "hello from web") {
		t.Errorf("Vessel pod → regular pod %s: %v %q", web[0].Status.PodIP, err, out)
	}
}

func podSummary(pods []kubePod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s %s on %q; ", p.Metadata.Name, p.Status.Phase, p.Spec.NodeName)
	}
	return b.String()
}
