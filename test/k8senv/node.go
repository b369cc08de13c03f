package k8senv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/fsutil"
)

// How long a node may take to become Ready, and kube-scheduler healthy.
const (
	nodeReadyTimeout      = 3 * time.Minute
	schedulerReadyTimeout = 2 * time.Minute
)

// The host programs a regular node needs: Debian's containerd and CNI
// plugins (scripts/setup installs them), and iptables for kube-proxy.
const (
	containerdBin = "/usr/bin/containerd"
	cniBinDir     = "/usr/lib/cni"
)

// NodeConfig describes a regular node of the cluster.
type NodeConfig struct {
	// Name is the node's name; by default the host's address, since the
	// API server reaches a kubelet at its Hostname address first (its
	// default --kubelet-preferred-address-types, which Vessel's nodes rely
	// on), and the name must resolve.
	Name string
	// PodCIDR is the node's pod network (the CNI bridge's subnet);
	// 10.85.0.0/24 by default, outside the service range 10.96.0.0/16 and
	// the 10.90-249.x.0/24 subnets Vessel's tests use.
	PodCIDR string
	// SandboxImage is the pod sandbox ("pause") image: any image whose
	// command runs until killed. Required: nothing is pulled from the
	// internet.
	SandboxImage string
	// PlainHTTPRegistries are registries (host:port) containerd pulls from
	// over plain HTTP, such as a test's in-process registry.
	PlainHTTPRegistries []string
	// ClusterDNS is the kubelet's --cluster-dns; 10.96.0.10 (the kube-dns
	// Service of kubeadm and EKS) by default.
	ClusterDNS string
}

// Node is a regular node: containerd, the kubelet and kube-proxy on this
// host, with its pods on a CNI bridge.
type Node struct {
	Name    string
	PodCIDR string
	// IP is the node's InternalIP, the host's default-route address.
	IP string
	// Dir holds the node's state: containerd's root and state, the
	// kubelet's root, CNI configuration and IPAM leases.
	Dir string
	// Bridge is the CNI bridge the node's pods are attached to.
	Bridge string
	// CgroupRoot is the cgroup (in every v1 hierarchy) the node's pods run
	// under.
	CgroupRoot string

	c          *Cluster
	containerd string // containerd's socket
}

// StartNode starts a regular node on this host and returns once the
// node is Ready: containerd with its own root, state and socket under the
// cluster's Dir (cgroup v1 through cgroupfs); a CNI bridge network for its
// pods; the kubelet (a client certificate for system:node:NAME signed by
// the cluster's CA, x509 and webhook authentication and authorization, so
// the API server can reach it for logs and exec; failCgroupV1: false);
// kube-proxy in iptables mode; and, once per cluster, kube-scheduler, since
// without it nothing places pods on the node.
//
// The host must let pods reach one another across bridges: StartNode turns
// on net.ipv4.ip_forward and net.bridge.bridge-nf-call-iptables (and leaves
// them on, as Vessel's own NAT does), and it fails the test when br_netfilter
// is not loaded. It needs root, Debian's containerd and
// containernetworking-plugins, conntrack and iptables (scripts/setup), and
// the kubelet and kube-proxy next to the other binaries (scripts/build-k8s).
//
// In t.Cleanup, before the cluster stops, everything is undone: the pods'
// processes are killed, containerd and its shims stopped, every mount under
// Dir detached, the CNI bridge deleted, kube-proxy's iptables chains (and
// the kubelet's canary chains) removed and the node's cgroups deleted. One
// node per host at a time: kube-proxy owns the host's KUBE-* chains.
func (c *Cluster) StartNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("k8senv: a regular node needs root")
	}
	if cfg.PodCIDR == "" {
		cfg.PodCIDR = "10.85.0.0/24"
	}
	if cfg.ClusterDNS == "" {
		cfg.ClusterDNS = "10.96.0.10"
	}
	if cfg.SandboxImage == "" {
		t.Fatal("k8senv: NodeConfig.SandboxImage is required (a pause image; nothing is pulled from the internet)")
	}
	_, podNet, err := net.ParseCIDR(cfg.PodCIDR)
	if err != nil {
		t.Fatalf("k8senv: NodeConfig.PodCIDR: %v", err)
	}
	for _, need := range []string{containerdBin, "/usr/bin/containerd-shim-runc-v2", filepath.Join(cniBinDir, "bridge"),
		filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "loopback"),
		c.Bin("kubelet"), c.Bin("kube-proxy"), c.Bin("kube-scheduler")} {
		if _, err := os.Stat(need); err != nil {
			t.Fatalf("k8senv: a regular node needs %s (scripts/setup installs containerd and containernetworking-plugins; scripts/build-k8s builds kubelet, kube-proxy and kube-scheduler): %v", need, err)
		}
	}
	for _, tool := range []string{"iptables", "ip6tables", "conntrack", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("k8senv: a regular node needs %s (scripts/setup installs it): %v", tool, err)
		}
	}
	ip, err := defaultRouteAddr()
	if err != nil {
		t.Fatalf("k8senv: a regular node needs an address to advertise: %v", err)
	}
	if cfg.Name == "" {
		cfg.Name = ip
	}

	gateway := nextIP(podNet.IP)
	n := &Node{Name: cfg.Name, PodCIDR: podNet.String(), IP: ip, Dir: filepath.Join(c.Dir, "node-"+cfg.Name),
		Bridge: "k8senv0", CgroupRoot: "/k8senv-node-" + cfg.Name, c: c}
	n.containerd = filepath.Join(n.Dir, "containerd.sock")
	t.Cleanup(func() { n.stop(t) }) // runs before the cluster's cleanup

	if err := hostNetworking(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.makeCgroupRoot(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.startContainerd(cfg); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.writeCNIConfig(podNet, gateway); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := c.startScheduler(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.startKubelet(cfg); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.startKubeProxy(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	if err := n.waitReady(); err != nil {
		t.Fatalf("k8senv: %v", err)
	}
	return n
}

// defaultRouteAddr is the host's address on its default route. No packet is
// sent: a UDP socket is only connected.
func defaultRouteAddr() (string, error) {
	conn, err := net.Dial("udp4", "192.0.2.254:53")
	if err != nil {
		return "", fmt.Errorf("no default route: %w", err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

func nextIP(ip net.IP) net.IP {
	out := slices.Clone(ip.To4())
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

// hostNetworking turns on what pods on bridges need to reach Services and
// one another through the host: forwarding, and iptables for bridged
// traffic (so that a reply between two pods of one bridge is un-NATed by
// kube-proxy's rules).
func hostNetworking() error {
	const brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(brnf); err != nil {
		return fmt.Errorf("the br_netfilter module is not loaded (modprobe br_netfilter): %w", err)
	}
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", brnf} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enabling %s: %w", f, err)
		}
	}
	return nil
}

// cgroupRoots are the mount points of the host's cgroup v1 hierarchies,
// and with v2 of its cgroup2 one too.
func cgroupRoots(v2 bool) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) || fields[i+1] != "cgroup" && !(v2 && fields[i+1] == "cgroup2") {
			continue
		}
		roots = append(roots, fields[4])
	}
	return roots, sc.Err()
}

// makeCgroupRoot creates the node's cgroup in every v1 hierarchy, with the
// root's CPUs and memory nodes in cpuset, so that the kubelet's pods are
// kept apart from the host's other cgroups and can be removed at the end.
func (n *Node) makeCgroupRoot() error {
	roots, err := cgroupRoots(false)
	if err != nil {
		return err
	}
	if len(roots) == 0 {
		return errors.New("no cgroup v1 hierarchy is mounted: StartNode is written for cgroup v1 hosts")
	}
	for _, r := range roots {
		dir := filepath.Join(r, n.CgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(r, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("setting %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

func (n *Node) startContainerd(cfg NodeConfig) error {
	for _, d := range []string{"root", "state", "opt", "certs.d", "cni/net.d", "cni/ipam", "runc"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, reg := range cfg.PlainHTTPRegistries {
		dir := filepath.Join(n.Dir, "certs.d", reg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", reg, reg)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which a
  # test machine (a container, a restricted VM) may lack: cap pods' scores
  # at containerd's own, as for rootless containerd.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, filepath.Join(n.Dir, "root"), filepath.Join(n.Dir, "state"), n.containerd, filepath.Join(n.Dir, "opt"),
		cfg.SandboxImage, filepath.Join(n.Dir, "runc"), cniBinDir, filepath.Join(n.Dir, "cni/net.d"), filepath.Join(n.Dir, "certs.d"))
	path := filepath.Join(n.Dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := n.c.startBin("containerd", containerdBin, "--config", path)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if conn, err := net.Dial("unix", n.containerd); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return &errExited{name: p.name, log: p.log, err: p.err}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not open %s within a minute; its log:\n%s", n.containerd, tailFile(p.log, 30))
		}
	}
}

// writeCNIConfig gives the node's pods the bridge plugin on podNet, the
// bridge being their gateway. No masquerading: pods reach the rest of the
// cluster (Vessel's subnets, the host) by routing through the host.
func (n *Node) writeCNIConfig(podNet *net.IPNet, gateway net.IP) error {
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "k8senv",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "gateway": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
`, n.Bridge, filepath.Join(n.Dir, "cni/ipam"), podNet.String(), gateway.String())
	return os.WriteFile(filepath.Join(n.Dir, "cni/net.d", "10-k8senv.conflist"), []byte(conf), 0o644)
}

// kubeconfigFor writes a kubeconfig for a client certificate of cn in
// groups and returns its path.
func (c *Cluster) kubeconfigFor(path, cn string, groups ...string) (string, error) {
	certPath, keyPath, err := c.pki.clientCert(path, cn, groups...)
	if err != nil {
		return "", err
	}
	read := func(f string) (string, error) {
		data, err := os.ReadFile(f)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := read(c.pki.caCert)
	if err != nil {
		return "", err
	}
	cert, err := read(certPath)
	if err != nil {
		return "", err
	}
	key, err := read(keyPath)
	if err != nil {
		return "", err
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8senv
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: %s
  user: {client-certificate-data: %s, client-key-data: %s}
contexts:
- name: k8senv
  context: {cluster: k8senv, user: %s}
current-context: k8senv
`, c.URL, ca, cn, cert, key, cn)
	kc := path + ".kubeconfig"
	return kc, os.WriteFile(kc, []byte(config), 0o600)
}

func (n *Node) startKubelet(cfg NodeConfig) error {
	kubeconfig, err := n.c.kubeconfigFor(filepath.Join(n.Dir, "kubelet"), "system:node:"+n.Name, "system:nodes")
	if err != nil {
		return fmt.Errorf("kubelet credentials: %w", err)
	}
	root := filepath.Join(n.Dir, "kubelet-root")
	logs := filepath.Join(n.Dir, "pod-logs")
	for _, d := range []string{root, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return retryPortClash(func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		healthz, err := freePort()
		if err != nil {
			return nil, err
		}
		config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1, which the kubelet refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
address: 0.0.0.0
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[4]d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[5]s}
authorization:
  mode: Webhook
clusterDNS: [%[6]s]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDirectory: %[7]s
failSwapOn: false
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
# A test machine's disk may be fuller than a node's usual thresholds.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
`, n.CgroupRoot, n.containerd, port, healthz, n.c.pki.caCert, cfg.ClusterDNS, logs)
		path := filepath.Join(n.Dir, "kubelet.yaml")
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			return nil, err
		}
		p, err := n.c.start("kubelet",
			"--config="+path,
			"--kubeconfig="+kubeconfig,
			"--root-dir="+root,
			"--cert-dir="+filepath.Join(n.Dir, "kubelet-pki"),
			"--hostname-override="+n.Name,
			"--node-ip="+n.IP,
			"--v=2",
		)
		if err != nil {
			return nil, err
		}
		return p, p.waitHTTP(&http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz), nodeReadyTimeout)
	})
}

func (n *Node) startKubeProxy() error {
	kubeconfig, err := n.c.kubeconfigFor(filepath.Join(n.Dir, "kube-proxy"), "system:kube-proxy")
	if err != nil {
		return fmt.Errorf("kube-proxy credentials: %w", err)
	}
	return retryPortClash(func() (*process, error) {
		healthz, err := freePort()
		if err != nil {
			return nil, err
		}
		metrics, err := freePort()
		if err != nil {
			return nil, err
		}
		config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {syncPeriod: 30s, minSyncPeriod: 0s}
`, kubeconfig, n.Name, healthz, metrics)
		path := filepath.Join(n.Dir, "kube-proxy.yaml")
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			return nil, err
		}
		p, err := n.c.start("kube-proxy", "--config="+path, "--v=2")
		if err != nil {
			return nil, err
		}
		return p, p.waitHTTP(&http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz), nodeReadyTimeout)
	})
}

// waitReady waits for the node's Ready condition.
func (n *Node) waitReady() error {
	deadline := time.Now().Add(nodeReadyTimeout)
	var last string
	for time.Now().Before(deadline) {
		out, err := n.c.Kubectl("get", "node", n.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && strings.TrimSpace(out) == "True" {
			return nil
		}
		last = out
		if err != nil {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("node %s not Ready after %s: %s; kubelet log:\n%s", n.Name, nodeReadyTimeout, last,
		tailFile(filepath.Join(n.c.Dir, "kubelet.log"), 30))
}

// startScheduler starts kube-scheduler once per cluster.
func (c *Cluster) startScheduler() error {
	c.mu.Lock()
	started := c.scheduler
	c.scheduler = true
	c.mu.Unlock()
	if started {
		return nil
	}
	return retryPortClash(func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := c.start("kube-scheduler",
			"--kubeconfig="+c.Kubeconfig,
			"--authentication-kubeconfig="+c.Kubeconfig,
			"--authorization-kubeconfig="+c.Kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(port),
			"--leader-elect=false",
		)
		if err != nil {
			return nil, err
		}
		insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		return p, p.waitHTTP(insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), schedulerReadyTimeout)
	})
}

// stop undoes StartNode, best effort, logging what it could not undo.
func (n *Node) stop(t testing.TB) {
	c := n.c
	// The kubelet and kube-proxy first, so that nothing restarts pods or
	// rewrites rules while they are removed.
	c.mu.Lock()
	var keep, node []*process
	for _, p := range c.procs {
		switch p.name {
		case "kubelet", "kube-proxy", "containerd":
			node = append(node, p)
		default:
			keep = append(keep, p)
		}
	}
	c.procs = keep
	c.mu.Unlock()
	for _, p := range node {
		if p.name != "containerd" {
			p.kill()
		}
	}
	var problems []string
	note := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// The pods' processes: everything in the node's cgroup, in the v1
	// hierarchies and the cgroup2 one a hybrid host also has.
	roots, _ := cgroupRoots(true)
	if err := killCgroupTree(roots, n.CgroupRoot); err != nil {
		note("%v", err)
	}
	// containerd's shims outlive it; they are found by containerd's socket,
	// which names this node's directory.
	for _, pid := range pidsWithArg(n.containerd) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, p := range node {
		if p.name == "containerd" {
			p.kill()
		}
	}
	if err := unmountUnder(n.Dir); err != nil {
		note("%v", err)
	}
	if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "Cannot find device") {
		note("deleting bridge %s: %v: %s", n.Bridge, err, out)
	}
	// libcni's cache of results, outside the node's directory: one file
	// per sandbox and network.
	for _, sub := range []string{"root", "state"} {
		ids, _ := os.ReadDir(filepath.Join(n.Dir, sub, "io.containerd.grpc.v1.cri", "sandboxes"))
		for _, id := range ids {
			cached, _ := filepath.Glob("/var/lib/cni/results/*-" + id.Name() + "-*")
			for _, f := range cached {
				os.Remove(f)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, c.Bin("kube-proxy"), "--cleanup", "--v=0").CombinedOutput(); err != nil {
		note("kube-proxy --cleanup: %v: %s", err, tail(string(out), 10))
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if err := removeKubeChains(ctx, cmd); err != nil {
			note("%v", err)
		}
	}
	if err := removeCgroupTree(roots, n.CgroupRoot); err != nil {
		note("%v", err)
	}
	if len(problems) > 0 {
		t.Errorf("k8senv: node %s left things behind:\n%s", n.Name, strings.Join(problems, "\n"))
	}
}

// killCgroupTree SIGKILLs every process in cgroup rel of every hierarchy and
// its descendants until none is left (up to 30 s).
func killCgroupTree(roots []string, rel string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, r := range roots {
			_ = filepath.WalkDir(filepath.Join(r, rel), func(path string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						left++
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in cgroup %s after 30 s", left, rel)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroupTree removes cgroup rel and its descendants from every
// hierarchy, deepest first.
func removeCgroupTree(roots []string, rel string) error {
	var errs []error
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(r, rel), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ { // a killed process leaves its cgroup a moment later
				if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// pidsWithArg returns the processes one of whose arguments contains s.
func pidsWithArg(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	var errs []error
	for try := 0; try < 5; try++ {
		points := fsutil.MountsUnder(dir)
		if len(points) == 0 {
			return nil
		}
		errs = nil
		for i := len(points) - 1; i >= 0; i-- {
			if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", points[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeKubeChains deletes the KUBE-* chains left in every table (the
// kubelet's canary and hint chains; anything kube-proxy --cleanup missed),
// first the rules that jump to them.
func removeKubeChains(ctx context.Context, cmd string) error {
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.CommandContext(ctx, cmd, "-w", "-t", table, "-S").Output()
		if err != nil {
			continue // the table is not there
		}
		var chains []string
		var jumps [][]string
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-"):
				chains = append(chains, f[1])
			case len(f) > 2 && f[0] == "-A" && !strings.HasPrefix(f[1], "KUBE-"):
				if j := slices.Index(f, "-j"); j >= 0 && j+1 < len(f) && strings.HasPrefix(f[j+1], "KUBE-") {
					jumps = append(jumps, f[1:])
				}
			}
		}
		for _, rule := range jumps {
			args := append([]string{"-w", "-t", table, "-D"}, unquoteRule(rule)...)
			if out, err := exec.CommandContext(ctx, cmd, args...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %v: %s", cmd, strings.Join(args, " "), err, out))
			}
		}
		for _, op := range []string{"-F", "-X"} {
			for _, ch := range chains {
				if out, err := exec.CommandContext(ctx, cmd, "-w", "-t", table, op, ch).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s %s %s: %v: %s", cmd, table, op, ch, err, out))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// unquoteRule strips the quotes iptables -S puts around a comment, joining
// a quoted value split by spaces back into one argument.
func unquoteRule(f []string) []string {
	var out []string
	for i := 0; i < len(f); i++ {
		if strings.HasPrefix(f[i], `"`) {
			parts := []string{f[i]}
			for !strings.HasSuffix(parts[len(parts)-1], `"`) || len(parts[len(parts)-1]) == 1 && len(parts) == 1 {
				i++
				if i >= len(f) {
					break
				}
				parts = append(parts, f[i])
			}
			out = append(out, strings.Trim(strings.Join(parts, " "), `"`))
			continue
		}
		out = append(out, f[i])
	}
	return out
}
