//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/test/k8senv"
)

// Pods go through the Kubernetes bridge of `vessel server --kubeconfig`
// against a real kube-apiserver and etcd (test/k8senv, binaries from
// KUBEBUILDER_ASSETS or scripts/build-k8s), so killing the server also
// kills the bridge, which must adopt its pods when it comes back.
const podNamespace = "chaos"

type pods struct {
	cluster     *k8senv.Cluster
	webhookPort string
}

func freePort(t *testing.T) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return port
}

// startCluster starts the Kubernetes control plane and gives the server
// the flags of its bridge.
func startCluster(t *testing.T, in *instance) *pods {
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	p := &pods{cluster: c, webhookPort: freePort(t)}
	in.serverExtra = append(in.serverExtra, "--kubeconfig", c.Kubeconfig, "--k8s-address", "127.0.0.1",
		"--webhook-port", p.webhookPort, "--kubelet-port", freePort(t))
	return p
}

// install installs the bridge's objects, a profile for the namespace and
// the namespace, and waits until pods can be made there.
func (p *pods) install(t *testing.T, in *instance) {
	vessel := func(args ...string) {
		full := append([]string{args[0], "--data-dir", in.server, "--endpoint", in.endpoint()}, args[1:]...)
		cmd := exec.Command(in.vessel, full...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("vessel %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	vessel("k8s", "install", "--kubeconfig", p.cluster.Kubeconfig, "--k8s-address", "127.0.0.1", "--webhook-port", p.webhookPort)
	if out, err := p.cluster.Kubectl("create", "namespace", podNamespace); err != nil {
		t.Fatalf("kubectl create namespace: %v\n%s", err, out)
	}
	vessel("profile", "create", "chaos", "--namespace", podNamespace, "--wait")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if _, err := p.cluster.Kubectl("-n", podNamespace, "get", "serviceaccount", "default"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the namespace's default service account did not appear within 2 minutes")
		}
	}
}

// create makes a pod: "pe-c<code>-s<seconds>-<n>" exits with code after
// that long, "pl-<n>" sleeps until deleted. restartPolicy Never: the
// pod's task ends when its container does.
func (p *pods) create(ctx context.Context, name, runtime, script string) error {
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  restartPolicy: Never
  runtimeClassName: %s
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: busybox:chaos
    command: ["sh", "-c", %q]
    resources: {requests: {cpu: 250m, memory: 256Mi}}
`, name, podNamespace, runtime, script)
	out, err := p.kubectl(ctx, []byte(manifest), "create", "-f", "-")
	if err != nil {
		return fmt.Errorf("kubectl create pod %s: %v: %s", name, err, out)
	}
	return nil
}

func (p *pods) delete(ctx context.Context, name string) error {
	out, err := p.kubectl(ctx, nil, "-n", podNamespace, "delete", "pod", name, "--wait=false")
	if err != nil && !strings.Contains(out, "NotFound") {
		return fmt.Errorf("kubectl delete pod %s: %v: %s", name, err, out)
	}
	return nil
}

func (p *pods) kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, p.cluster.Bin("kubectl"), append([]string{"--kubeconfig", p.cluster.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
