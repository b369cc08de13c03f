package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const manifest = `# a comment-only document first
---
apiVersion: v1
kind: Pod
metadata:
  name: small
  namespace: apps
spec:
  containers:
  - name: app
    image: nginx
    resources:
      requests:
        cpu: 250m
        memory: 256Mi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
      - name: migrate
        image: migrate
        resources:
          requests: {cpu: "2", memory: 3Gi}
      containers:
      - name: app
        image: web
        resources:
          requests: {cpu: 300m, memory: 512Mi}
      - name: sidecar
        image: proxy
        resources:
          limits: {cpu: 200m, memory: 512Mi}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: fluent-bit
        resources:
          requests: {cpu: 100m, memory: 128Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  containers:
  - name: a
    image: big
    resources:
      requests: {cpu: "16", memory: 120Gi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
`

// runSize executes the command with args and stdin and returns its output.
func runSize(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := NewSizeCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeManifest(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var cellSep = regexp.MustCompile(`\s{2,}`)

// table splits the output into rows of cells (columns are at least two
// spaces apart; a size such as "0.5vCPU 2GB" has one).
func parseTable(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, cellSep.Split(line, 7))
	}
	return rows
}

func TestSizeTable(t *testing.T) {
	out, err := runSize(t, "", "-f", writeManifest(t, manifest))
	if err != nil {
		t.Fatalf("size: %v\n%s", err, out)
	}
	want := [][]string{
		{"KIND", "NAMESPACE", "NAME", "CPU", "MEMORY", "PROVISIONED", "NOTE"},
		{"Pod", "apps", "small", "0.25", "256Mi", "0.25vCPU 0.5GB"},
		// init container (2 vCPU, 3 GiB) beats the sum (0.5 vCPU, 1 GiB);
		// 3 GiB + 256 MiB rounds to 4 GiB.
		{"Deployment", "default", "web", "2", "3Gi", "2vCPU 4GB"},
		{"DaemonSet", "kube-system", "agent", "0.1", "128Mi", "-", "not supported: DaemonSet pods cannot run on Fargate"},
		{"Pod", "default", "huge", "16", "120Gi", "-", "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE: Your pod's cpu/memory requirements exceed the max Fargate configuration"},
		{"Service", "default", "web", "-", "-", "-", "skipped: a Service has no pod to size"},
	}
	got := parseTable(out)
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		for j := range want[i] {
			if j >= len(got[i]) {
				t.Errorf("line %d = %q, missing cell %d %q", i, got[i], j, want[i][j])
				continue
			}
			cell := got[i][j]
			if j == 6 && i == 4 {
				if !strings.HasPrefix(cell, want[i][j]) || !strings.Contains(cell, "16vCPU 120GB") {
					t.Errorf("line %d note = %q", i, cell)
				}
				continue
			}
			if cell != want[i][j] {
				t.Errorf("line %d cell %d = %q, want %q\n%s", i, j, cell, want[i][j], out)
			}
		}
		if len(got[i]) > len(want[i]) {
			t.Errorf("line %d has extra cells %q", i, got[i][len(want[i]):])
		}
	}
	// Columns are aligned: PROVISIONED starts at the same offset everywhere.
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	col := strings.Index(lines[0], "PROVISIONED")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("line %q is not aligned at column %d", l, col)
		}
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %q has trailing spaces", l)
		}
	}
}

func TestSizeWorkloadKindsStdinAndSeveralFiles(t *testing.T) {
	const tmpl = `
  template:
    spec:
      containers:
      - name: a
        resources:
          requests: {cpu: "1", memory: 8Gi}`
	workloads := "kind: StatefulSet\nmetadata: {name: ss}\nspec:" + tmpl + "\n---\n" +
		"kind: ReplicaSet\nmetadata: {name: rs}\nspec:" + tmpl + "\n---\n" +
		"kind: Job\nmetadata: {name: job}\nspec:" + tmpl + "\n---\n" +
		"kind: CronJob\nmetadata: {name: cron}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:" +
		strings.ReplaceAll(tmpl, "\n", "\n    ") + "\n"
	list := `{"apiVersion": "v1", "kind": "List", "items": [
	  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "x"},
	   "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}]}}]}`
	out, err := runSize(t, list, "-f", writeManifest(t, workloads), "-f", "-")
	if err != nil {
		t.Fatalf("size: %v\n%s", err, out)
	}
	got := parseTable(out)
	want := [][]string{
		{"StatefulSet", "default", "ss", "1", "8Gi", "2vCPU 9GB"}, // the documented example
		{"ReplicaSet", "default", "rs", "1", "8Gi", "2vCPU 9GB"},
		{"Job", "default", "job", "1", "8Gi", "2vCPU 9GB"},
		{"CronJob", "default", "cron", "1", "8Gi", "2vCPU 9GB"},
		{"Pod", "x", "p1", "1", "2Gi", "1vCPU 3GB"}, // from stdin, limits as requests
	}
	if len(got) != len(want)+1 {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want)+1, out)
	}
	for i, w := range want {
		if strings.Join(got[i+1], "|") != strings.Join(w, "|") {
			t.Errorf("line %d = %q, want %q", i+1, got[i+1], w)
		}
	}
}

func TestSizeJSON(t *testing.T) {
	out, err := runSize(t, manifest, "-f", "-", "-o", "json")
	if err != nil {
		t.Fatalf("size: %v\n%s", err, out)
	}
	var rows []sizeRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(rows) != 5 {
		t.Fatalf("got %d rows, want 5: %s", len(rows), out)
	}
	web := rows[1]
	if web.Kind != "Deployment" || web.Provisioned != "2vCPU 4GB" || web.ProvisionedMilliCPU != 2000 || web.ProvisionedMemoryMiB != 4096 {
		t.Errorf("web row = %+v", web)
	}
	if rows[3].Reason != "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE" || rows[3].Provisioned != "" {
		t.Errorf("huge row = %+v", rows[3])
	}
	if !strings.Contains(out, `"provisioned": "0.25vCPU 0.5GB"`) {
		t.Errorf("JSON field names changed:\n%s", out)
	}
}

func TestSizeErrors(t *testing.T) {
	tests := []struct {
		name    string
		stdin   string
		args    []string
		wantErr string
	}{
		{"no file", "", nil, `"filename" not set`},
		{"missing file", "", []string{"-f", filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		{"bad output", "", []string{"-f", "-", "-o", "yaml"}, `unsupported output format "yaml"`},
		{"bad yaml", "kind: Pod\nspec: [\n", []string{"-f", "-"}, "stdin: document 1"},
		{"no kind", "metadata: {name: a}\n", []string{"-f", "-"}, "no kind"},
		{"bad field type", "kind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n", []string{"-f", "-"}, `Pod "p"`},
		{"args", "", []string{"-f", "-", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		out, err := runSize(t, tt.stdin, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want one containing %q\n%s", tt.name, err, tt.wantErr, out)
		}
	}
}
