// Package k8senv starts a real, throwaway Kubernetes control plane for tests:
// etcd and kube-apiserver (and, on request, kube-controller-manager) as child
// processes on free loopback ports, with certificates made in Go, an admin
// kubeconfig, and everything stopped and removed in t.Cleanup.
//
// The binaries come from $KUBEBUILDER_ASSETS when set (a directory holding
// etcd, kube-apiserver, kube-controller-manager and kubectl, as envtest lays
// it out), else from scripts/build-k8s, which builds them into the project's
// cache the first time (6 to 12 minutes: more than go test's default
// -timeout, so run the script first or raise -timeout).
//
// There is no node: pods are created and stay Pending. Tests that need a
// running container use Vessel's own runtimes, not this package.
//
// It imports only the standard library; it must not import Vessel's packages,
// so that any of them can use it in its tests.
//
//	func TestBridge(t *testing.T) {
//		c := k8senv.Start(t) // skips when VESSEL_SKIP_K8S=1
//		c.StartControllerManager(t)
//		out, err := c.Kubectl("get", "namespaces")
//		// ... or point a client at c.Kubeconfig
//	}
package k8senv
