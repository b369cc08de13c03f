package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

// TestKubeProxyFlags: `vessel server` and `vessel agent` refuse kube-proxy
// flags that cannot work before they start anything, saying what is wrong.
func TestKubeProxyFlags(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kube-proxy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	garbled := filepath.Join(dir, "garbled")
	if err := os.WriteFile(garbled, []byte("clusters: {{{"), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := []string{"agent", "--server", "https://192.0.2.1:8600"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"agent kube-proxy without kubeconfig", append(agent, "--kube-proxy", bin), "--kube-proxy needs --kubeconfig"},
		{"agent kubeconfig without kube-proxy", append(agent, "--kubeconfig", kubeconfig), "--kubeconfig is given without --kube-proxy"},
		{"agent missing binary", append(agent, "--kube-proxy", filepath.Join(dir, "none"), "--kubeconfig", kubeconfig), "give the path of the kube-proxy executable"},
		{"agent binary not executable", append(agent, "--kube-proxy", notExec, "--kubeconfig", kubeconfig), "is not an executable file"},
		{"agent directory as binary", append(agent, "--kube-proxy", dir, "--kubeconfig", kubeconfig), "is not an executable file"},
		{"agent missing kubeconfig", append(agent, "--kube-proxy", bin, "--kubeconfig", filepath.Join(dir, "none")), "give a readable kubeconfig"},
		{"agent garbled kubeconfig", append(agent, "--kube-proxy", bin, "--kubeconfig", garbled), "give a readable kubeconfig"},
		{"server kube-proxy without kubeconfig", []string{"server", "--kube-proxy", bin}, "--kube-proxy needs --kubeconfig"},
		{"server kube-proxy without an own host", []string{"server", "--no-agent", "--kube-proxy", bin, "--kubeconfig", kubeconfig}, "--kube-proxy is given with --no-agent"},
		{"server missing binary", []string{"server", "--kube-proxy", filepath.Join(dir, "none"), "--kubeconfig", kubeconfig}, "give the path of the kube-proxy executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			root := NewRootCommand()
			root.SetArgs(append(tc.args, "--data-dir", data))
			var out strings.Builder
			root.SetOut(&out)
			root.SetErr(&out)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("vessel %s: error %v, want one saying %q", strings.Join(tc.args, " "), err, tc.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %v is not InvalidArgument", err)
			}
			// Refused before anything started: the data directory is
			// as it was (empty).
			if entries, _ := os.ReadDir(data); len(entries) != 0 {
				t.Errorf("the data directory holds %d entries after a refused start", len(entries))
			}
		})
	}
}
