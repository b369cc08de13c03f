package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
	"vessel.dev/vessel/test/k8senv"
)

// fleetPod is a bare pod of the fleet test: it serves "hello from NAME"
// on 8080 with busybox httpd. It asks for 13Gi of memory, which Vessel
// sizes as a 14 GB task: a host of this machine's memory (the fleet's
// hosts share it) holds one such task and not two, and pods, not being a
// service's tasks, are bin-packed. So the three pods land on the three
// hosts, one each, whatever the order of the hosts.
const fleetPod = `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: %s
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(POD_NAME) > /www/index.html && echo web started on $(POD_IP) && exec httpd -f -p 8080 -h /www"]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    ports: [{containerPort: 8080}]
    resources: {requests: {cpu: 250m, memory: 13Gi}}
`

// TestKubernetesFleet: the Kubernetes bridge over a fleet of three runc
// hosts, each a machine (network namespace) of its own on the fleet's
// network (with each back end), each running the real kube-proxy (`vessel agent
// --kube-proxy`). The control plane runs the bridge; its own host takes
// no pod (its memory allocation ratio leaves room for none). One pod
// lands on each host; pods reach each other by IP across hosts in both
// directions; a ClusterIP Service is reached from the pod on each host
// through that host's kube-proxy (whose rules are in that host's
// namespace) and answered by pods on other hosts; kubectl logs, exec and
// port-forward work for the pod on each host, with both back ends.
func TestKubernetesFleet(t *testing.T) {
	for _, backend := range []string{"vxlan", "host-gw"} {
		t.Run(backend, func(t *testing.T) {
			testKubernetesFleet(t, backend)
		})
	}
}

func testKubernetesFleet(t *testing.T, backend string) {
	requireRoot(t)
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	kubeProxy := c.Bin("kube-proxy")
	if _, err := os.Stat(kubeProxy); err != nil {
		t.Fatalf("kube-proxy is not among the Kubernetes binaries: %v", err)
	}
	f := newFleet(t)
	// The machines reach kube-apiserver (listening on all addresses) at
	// the fleet bridge's address; its certificate names localhost.
	kubeconfig := fleetKubeconfig(t, c, f.Gateway())
	// The server's machine is the fleet's first: its address is the
	// fleet's .10.
	gw := f.Gateway().As4()
	serverAddr := netip.AddrFrom4([4]byte{gw[0], gw[1], gw[2], 10}).String()
	s := f.Server(fleet.ServerConfig{WithAgent: true, Args: []string{"--fleet-network", backend,
		"--kubeconfig", kubeconfig, "--k8s-address", serverAddr,
		"--memory-allocation-ratio", "0.02"}})
	if !strings.Contains(s.Endpoint, "//"+serverAddr+":") {
		t.Fatalf("the server's endpoint is %s, not on %s", s.Endpoint, serverAddr)
	}
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	var agents []*fleet.Agent
	for range 3 {
		agents = append(agents, f.Agent([]*fleet.Server{s}, fleet.AgentConfig{Runtime: "runc",
			Args: []string{"--insecure-registry", reg.host, "--kube-proxy", kubeProxy, "--kubeconfig", kubeconfig}}))
	}
	if _, _, err := s.Vessel("k8s", "install", "--kubeconfig", c.Kubeconfig, "--k8s-address", serverAddr); err != nil {
		t.Fatal(err)
	}
	e := &bridgeEnv{t: t, cluster: c, image: img}
	// Before the fleet stops (cleanups run last first): the pods go, and
	// with them their tasks and nodes.
	t.Cleanup(func() {
		if t.Failed() {
			logFleetNetwork(t, f, reg.host)
			logStoppedTasks(t, s)
		}
		c.Kubectl("delete", "pods", "--all", "--wait=false")
		waitNoVesselNodes(c)
		if t.Failed() {
			t.Logf("server log:\n%s", tail(s.Log(), 150))
			for _, a := range agents {
				t.Logf("%s log:\n%s", a.Name(), tail(a.Log(), 40))
			}
		}
	})
	e.eventually(60*time.Second, "the bridge to run", func() (bool, string) {
		return strings.Contains(s.Log(), "Kubernetes bridge running"), tail(s.Log(), 20)
	})
	e.eventually(60*time.Second, "the default service account", func() (bool, string) {
		out, err := c.Kubectl("get", "serviceaccount", "default", "-o", "name")
		return err == nil, out
	})
	if _, _, err := s.Vessel("profile", "create", "web", "--namespace", "default", "--labels", "app=web", "--wait"); err != nil {
		t.Fatal(err)
	}
	names := []string{"web-0", "web-1", "web-2"}
	manifest := `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`
	for _, n := range names {
		manifest += "---\n" + fmt.Sprintf(fleetPod, n, img)
	}
	if out, err := e.apply(manifest); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	// One pod on each host: the hosts are told by the tasks the bridge
	// ran (by pod IP).
	ip, host := map[string]string{}, map[string]string{}
	for _, n := range names {
		ip[n] = e.waitRunning("default", n).Status.PodIP
	}
	hostOf := taskHosts(t, s)
	for _, n := range names {
		host[n] = hostOf[ip[n]]
	}
	t.Logf("pods: %v on hosts %v", ip, host)
	var hosts []string
	for _, n := range names {
		hosts = append(hosts, host[n])
	}
	slices.Sort(hosts)
	if want := []string{agents[0].HostID, agents[1].HostID, agents[2].HostID}; !slices.Equal(hosts, want) {
		t.Fatalf("the pods are on hosts %v (by pod %v), want one on each of %v", hosts, host, want)
	}

	// kubectl logs and exec for the pod on each host.
	for _, n := range names {
		e.eventually(30*time.Second, "kubectl logs "+n, func() (bool, string) {
			out, _ := c.Kubectl("logs", n)
			return strings.Contains(out, "web started on "+ip[n]), out
		})
		if out, err := c.Kubectl("exec", n, "--", "cat", "/www/index.html"); err != nil || strings.TrimSpace(out) != "hello from "+n {
			t.Errorf("kubectl exec %s (on %s) -- cat /www/index.html: %q (err %v), want %q", n, host[n], out, err, "hello from "+n)
		}
	}

	// fetch GETs / of addr:port from pod from with nc (the static
	// busybox's wget crashes here) and returns the answer.
	fetch := func(from, addr string, port int) string {
		out, _ := c.Kubectl("exec", from, "--", "sh", "-c",
			fmt.Sprintf(`printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 3 %s %d`, addr, port))
		return out
	}
	// Pod to pod by IP, between every two hosts, both ways.
	for _, from := range names {
		for _, to := range names {
			if from == to {
				continue
			}
			e.eventually(30*time.Second, fmt.Sprintf("%s (on %s) to reach %s (on %s) at %s", from, host[from], to, host[to], ip[to]), func() (bool, string) {
				out := fetch(from, ip[to], 8080)
				return strings.Contains(out, "hello from "+to), out
			})
		}
	}

	// The ClusterIP, from the pod on each host, through that host's
	// kube-proxy: its rules for the Service are in the host's namespace,
	// and pods on the other hosts answer.
	clusterIP := strings.TrimSpace(e.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
	e.eventually(60*time.Second, "the Service's endpoints to be the three pods", func() (bool, string) {
		out, _ := c.Kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
			"-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}")
		return len(strings.Fields(out)) == 3, out
	})
	for _, a := range agents {
		e.eventually(60*time.Second, "kube-proxy's rules for "+clusterIP+" on "+a.HostID, func() (bool, string) {
			out, err := a.Machine().Command("iptables-save", "-t", "nat").CombinedOutput()
			return err == nil && strings.Contains(string(out), "-d "+clusterIP+"/32"), fmt.Sprintf("%v: %s", err, tail(string(out), 10))
		})
	}
	helloFrom := regexp.MustCompile(`hello from (web-\d)`)
	for _, from := range names {
		seen := map[string]bool{}
		e.eventually(90*time.Second, fmt.Sprintf("a pod on another host to answer %s (on %s) at ClusterIP %s", from, host[from], clusterIP), func() (bool, string) {
			out := fetch(from, clusterIP, 80)
			if m := helloFrom.FindStringSubmatch(out); m != nil {
				seen[m[1]] = true
			}
			for n := range seen {
				if host[n] != host[from] {
					return true, ""
				}
			}
			return false, fmt.Sprintf("answered by %v; last: %s", seen, out)
		})
		t.Logf("ClusterIP %s from %s (on %s): answered by %v", clusterIP, from, host[from], seen)
	}

	// kubectl port-forward to the pod on each host: relayed to the agent
	// of the pod's host, which connects to the pod there. (The bridge
	// used to dial the pod from its own host: with VXLAN the pod's answer
	// to a host address left its host outside the tunnel, and the
	// netfilter of the machine the fleet's bridge is on dropped it as
	// invalid.)
	for _, n := range names {
		body, err := portForwardGet(t, c, n, 8080)
		if err != nil || strings.TrimSpace(body) != "hello from "+n {
			t.Errorf("kubectl port-forward %s (on %s): %q (err %v), want %q", n, host[n], body, err, "hello from "+n)
		}
	}
}

// fleetKubeconfig writes a copy of the cluster's kubeconfig that reaches
// kube-apiserver at addr (its port kept), checking its certificate for
// localhost, which it names.
func fleetKubeconfig(t *testing.T, c *k8senv.Cluster, addr netip.Addr) string {
	t.Helper()
	data, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	const loopback = "    server: https://127.0.0.1:"
	if !strings.Contains(string(data), loopback) {
		t.Fatalf("the cluster's kubeconfig names no %q:\n%s", loopback, data)
	}
	out := strings.Replace(string(data), loopback, "    tls-server-name: localhost\n    server: https://"+addr.String()+":", 1)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// taskHosts maps the addresses of the tasks of the server's default
// cluster to their hosts.
func taskHosts(t *testing.T, s *fleet.Server) map[string]string {
	t.Helper()
	ctx := context.Background()
	cl := s.ECS()
	list, err := cl.ListTasks(ctx, &ecs.ListTasksInput{})
	if err != nil || len(list.TaskArns) == 0 {
		t.Fatalf("ListTasks: %v %v", err, list)
	}
	out, err := cl.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: list.TaskArns})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tk := range out.Tasks {
		if aws.ToString(tk.LastStatus) == "RUNNING" {
			m[taskIP(tk)] = taskHost(tk)
		}
	}
	return m
}

// logFleetNetwork logs, for a failed test, whether each machine reaches
// the registry at regHost (on the fleet's gateway) now, and the state of
// every machine's network and of the fleet's bridge.
func logFleetNetwork(t *testing.T, f *fleet.Fleet, regHost string) {
	for _, m := range f.Machines() {
		out, err := m.Command("curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://"+regHost+"/v2/").CombinedOutput()
		t.Logf("%s (%s) to the registry at %s: %s (err %v)", m.Name, m.Addr, regHost, out, err)
	}
	t.Logf("the fleet's bridge:\n%s", f.Diagnose())
	for _, m := range f.Machines() {
		t.Logf("network of %s (%s):\n%s", m.Name, m.Addr, m.Diagnose())
	}
}

// logStoppedTasks logs why the server's stopped tasks stopped.
func logStoppedTasks(t *testing.T, s *fleet.Server) {
	ctx := context.Background()
	cl := s.ECS()
	list, err := cl.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: "STOPPED"})
	if err != nil || len(list.TaskArns) == 0 {
		t.Logf("stopped tasks: %v %v", err, list)
		return
	}
	out, err := cl.DescribeTasks(ctx, &ecs.DescribeTasksInput{Tasks: list.TaskArns})
	if err != nil {
		t.Logf("stopped tasks: %v", err)
		return
	}
	for _, tk := range out.Tasks {
		var reasons []string
		for _, ct := range tk.Containers {
			reasons = append(reasons, aws.ToString(ct.Reason))
		}
		t.Logf("task %s on %s stopped: %s %s; containers: %q", taskID(aws.ToString(tk.TaskArn)), taskHost(tk),
			tk.StopCode, aws.ToString(tk.StoppedReason), reasons)
	}
}

// portForwardGet runs `kubectl port-forward pod/NAME :port`, GETs / through
// the local port it prints and returns the body; kubectl is stopped.
func portForwardGet(t *testing.T, c *k8senv.Cluster, name string, port int) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin("kubectl"), "--kubeconfig", c.Kubeconfig, "port-forward", "pod/"+name, fmt.Sprintf(":%d", port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	local := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				local <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var lport string
	select {
	case lport = <-local:
	case <-ctx.Done():
		return "", fmt.Errorf("kubectl port-forward printed no local port: %s", stderr.String())
	}
	var body string
	err = testutil.Wait(30*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + lport + "/index.html")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s: %s", resp.Status, b)
		}
		body = string(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%w; kubectl: %s", err, stderr.String())
	}
	return body, nil
}
