// Package k8senv starts a real, throwaway Kubernetes control plane for tests:
// etcd and kube-apiserver (and, on request, kube-controller-manager) as child
// processes on free ports, with certificates made in Go, an admin
// kubeconfig, and everything stopped and removed in t.Cleanup.
//
// The binaries come from $KUBEBUILDER_ASSETS when set (a directory holding
// etcd, kube-apiserver, kube-controller-manager and kubectl, as envtest lays
// it out, and for StartNode kube-scheduler, kubelet and kube-proxy), else
// from scripts/build-k8s, which builds them into the project's cache the
// first time (longer than go test's default -timeout: run the script first
// or raise -timeout; docs/benchmarks.md has the time). Under go test -short
// Start skips the test.
//
// By default there is no node: pods are created and stay Pending. StartNode
// adds a regular node on this host (root only): Debian's containerd with its
// own root, state and socket, the bridge CNI plugin on its own pod CIDR, the
// real kubelet (cgroup v1 through cgroupfs, failCgroupV1: false) and
// kube-proxy in iptables mode, and kube-scheduler for the cluster; all of
// it, iptables chains, bridge, mounts and cgroups included, is removed in
// t.Cleanup. kube-apiserver listens on all addresses and advertises the
// default route's, so pods reach it through the kubernetes Service.
//
// It imports nothing of Vessel's but fsutil and testenv (its tests also use
// go-containerregistry's in-process registry), so that any package can use
// it in its tests.
//
//	func TestBridge(t *testing.T) {
//		c := k8senv.Start(t) // skips when VESSEL_SKIP_K8S=1
//		c.StartControllerManager(t)
//		node := c.StartNode(t, k8senv.NodeConfig{SandboxImage: pause,
//			PlainHTTPRegistries: []string{registryHost}})
//		out, err := c.Kubectl("get", "namespaces")
//		// ... or point a client at c.Kubeconfig
//	}
package k8senv
