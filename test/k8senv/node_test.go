package k8senv_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"vessel.dev/vessel/test/k8senv"
)

// pushBusybox serves an in-process registry holding Debian's busybox-static
// as REGISTRY/busybox:1 and returns the registry's host:port.
func pushBusybox(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static is required (scripts/setup installs it): %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, a := range []string{"sh", "sleep", "httpd", "wget", "mkdir", "echo", "cat"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox"})
	}
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"sleep", "2147483647"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host + "/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return host
}

// TestNode runs a Deployment and its ClusterIP Service on a regular node:
// the kubelet runs the pods through containerd, the API server reaches the
// kubelet (exec), and kube-proxy makes the Service answer on the host.
func TestNode(t *testing.T) {
	c := k8senv.Start(t)
	c.StartControllerManager(t)
	reg := pushBusybox(t)
	n := c.StartNode(t, k8senv.NodeConfig{SandboxImage: reg + "/busybox:1", PlainHTTPRegistries: []string{reg}})

	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %s/busybox:1
        command: ["sh", "-c", "mkdir -p /www && echo hello from the node > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, reg)
	if out, err := c.KubectlInput([]byte(manifest), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := c.Kubectl("wait", "--for=condition=Available", "deployment/web", "--timeout=120s"); err != nil {
		ev, _ := c.Kubectl("get", "events", "-A")
		t.Fatalf("%v\n%s\nevents:\n%s", err, out, ev)
	}
	out, err := c.Kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.nodeName} {.items[0].status.podIP}")
	if err != nil {
		t.Fatal(err)
	}
	var node, ip string
	fmt.Sscan(out, &node, &ip)
	if node != n.Name || !strings.HasPrefix(ip, strings.TrimSuffix(n.PodCIDR, "0/24")) {
		t.Errorf("the pod runs on %q with IP %q; want node %s and an IP in %s", node, ip, n.Name, n.PodCIDR)
	}
	// The API server reaches the kubelet: kubectl exec.
	if out, err := c.Kubectl("exec", "deploy/web", "--", "cat", "/www/index.html"); err != nil || !strings.Contains(out, "hello from the node") {
		t.Errorf("kubectl exec: %v %q", err, out)
	}
	// kube-proxy programs the Service's ClusterIP on the host.
	clusterIP, err := c.Kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + clusterIP + "/index.html")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "hello from the node") {
				break
			}
			err = fmt.Errorf("%s: %q", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Service's ClusterIP %s does not answer from the host: %v", clusterIP, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
