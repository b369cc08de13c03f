package k8senv_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/test/k8senv"
)

const wantVersion = "v1.37.2" // scripts/build-k8s's KUBERNETES_VERSION

func TestCluster(t *testing.T) {
	c := k8senv.Start(t)

	out, err := c.Kubectl("get", "namespaces", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"namespace/default", "namespace/kube-system"} {
		if !strings.Contains(out, ns) {
			t.Errorf("kubectl get namespaces: no %s in:\n%s", ns, out)
		}
	}

	out, err = c.Kubectl("version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var version struct {
		Client struct{ GitVersion string } `json:"clientVersion"`
		Server struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &version); err != nil {
		t.Fatalf("kubectl version -o json: %v\n%s", err, out)
	}
	if version.Client.GitVersion != wantVersion || version.Server.GitVersion != wantVersion {
		t.Errorf("kubectl version: client %q, server %q; want %s for both", version.Client.GitVersion, version.Server.GitVersion, wantVersion)
	}
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: idle
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: idle}
  template:
    metadata:
      labels: {app: idle}
    spec:
      containers:
      - name: idle
        image: example.invalid/idle:1
`

// The controller manager turns a Deployment into a ReplicaSet and pods. With
// no node, the pods stay Pending.
func TestControllerManager(t *testing.T) {
	c := k8senv.Start(t)
	c.StartControllerManager(t)

	if _, err := c.KubectlInput([]byte(deployment), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct{ Phase string }
		}
	}
	get := func(kind string) int {
		out, err := c.Kubectl("get", kind, "-n", "default", "-l", "app=idle", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		list.Items = nil
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("kubectl get %s: %v\n%s", kind, err, out)
		}
		return len(list.Items)
	}
	// The "default" service account must exist before pods are admitted:
	// the controller manager makes it too, and the ReplicaSet controller
	// retries until then.
	deadline := time.Now().Add(2 * time.Minute)
	for get("replicasets") < 1 || get("pods") < 2 {
		if time.Now().After(deadline) {
			out, _ := c.Kubectl("get", "deployments,replicasets,pods,events", "-n", "default")
			t.Fatalf("no ReplicaSet with 2 pods after 2 minutes:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	for _, pod := range list.Items {
		if pod.Status.Phase != "Pending" {
			t.Errorf("pod %s is %q; want Pending (there is no node)", pod.Metadata.Name, pod.Status.Phase)
		}
	}
}
