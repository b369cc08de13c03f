package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"vessel.dev/vessel/internal/sizing"
)

// sizeOptions holds the flags of `vessel size`.
type sizeOptions struct {
	files  []string
	output string
}

// NewSizeCommand returns `vessel size -f FILE`: it reads Kubernetes
// manifests and prints the Fargate size each pod, or each workload's pod
// template, would be provisioned with.
func NewSizeCommand() *cobra.Command {
	o := &sizeOptions{}
	cmd := &cobra.Command{
		Use:   "size -f FILE [-f FILE ...] [-o json]",
		Short: "Show the Fargate size pods in manifests would be provisioned with",
		Long: `Reads Kubernetes manifests (multi-document YAML or JSON) and prints, for each
Pod and for the pod template of each Deployment, StatefulSet, ReplicaSet, Job
and CronJob, what the pod needs (CPU in vCPU, MEMORY) and the Fargate size it
would be provisioned with, as in the CapacityProvisioned annotation. The need is
max(largest init container, sum of containers) per resource; 256 MiB is added
for Fargate's own components before rounding up. DaemonSets are reported as
not supported; other kinds are skipped. A missing namespace is shown as
"default".`,
		Example: `  vessel size -f deploy.yaml
  kubectl get deploy -o yaml | vessel size -f -
  vessel size -f a.yaml -f b.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, "manifest file to read; - reads stdin; may be repeated")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: json (default: a table)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// sizeRow is one line of output.
type sizeRow struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// CPU and Memory are the pod's need before the overhead, e.g. "0.3", "1Gi".
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Provisioned is the size as annotated, e.g. "0.5vCPU 2GB".
	Provisioned          string `json:"provisioned,omitempty"`
	ProvisionedMilliCPU  int64  `json:"provisionedMilliCPU,omitempty"`
	ProvisionedMemoryMiB int64  `json:"provisionedMemoryMiB,omitempty"`
	// Reason is a machine-readable code, e.g. POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE.
	Reason string `json:"reason,omitempty"`
	Note   string `json:"note,omitempty"`
}

func (o *sizeOptions) run(cmd *cobra.Command) error {
	if o.output != "" && o.output != "json" {
		return fmt.Errorf("unsupported output format %q: use -o json, or no -o for a table", o.output)
	}
	cmd.SilenceUsage = true // from here on, errors are about the input
	var rows []sizeRow
	for _, f := range o.files {
		r, err := o.readFile(cmd, f)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	out := cmd.OutOrStdout()
	if o.output == "json" {
		if rows == nil {
			rows = []sizeRow{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	return writeSizeTable(out, rows)
}

// readFile reads every document of one -f argument.
func (o *sizeOptions) readFile(cmd *cobra.Command, name string) ([]sizeRow, error) {
	var in io.Reader
	if name == "-" {
		in = cmd.InOrStdin()
		name = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	var rows []sizeRow
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, n, err)
		}
		r, err := sizeDocument(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, n, err)
		}
		rows = append(rows, r...)
	}
}

// sizeDocument returns the rows for one YAML or JSON document: none for an
// empty document, one per item for a List.
func sizeDocument(doc []byte) ([]sizeRow, error) {
	js, err := sigsyaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return nil, nil // empty, or comments only
	}
	var head struct {
		Kind     string            `json:"kind"`
		Metadata objectName        `json:"metadata"`
		Items    []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	row := sizeRow{Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
	if row.Namespace == "" {
		row.Namespace = "default"
	}

	var spec *corev1.PodSpec
	switch head.Kind {
	case "":
		return nil, errors.New("object has no kind")
	case "List":
		var rows []sizeRow
		for _, item := range head.Items {
			r, err := sizeDocument(item)
			if err != nil {
				return nil, err
			}
			rows = append(rows, r...)
		}
		return rows, nil
	case "Pod":
		var obj corev1.Pod
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec
	case "Deployment":
		var obj appsv1.Deployment
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.Template.Spec
	case "StatefulSet":
		var obj appsv1.StatefulSet
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.Template.Spec
	case "ReplicaSet":
		var obj appsv1.ReplicaSet
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.Template.Spec
	case "Job":
		var obj batchv1.Job
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.Template.Spec
	case "CronJob":
		var obj batchv1.CronJob
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.JobTemplate.Spec.Template.Spec
	case "DaemonSet":
		var obj appsv1.DaemonSet
		err = json.Unmarshal(js, &obj)
		spec = &obj.Spec.Template.Spec
	default:
		row.Note = "skipped: a " + head.Kind + " has no pod to size"
		return []sizeRow{row}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", head.Kind, row.Name, err)
	}

	need := sizing.PodSpecNeeds(spec)
	row.CPU = strconv.FormatFloat(float64(need.MilliCPU)/1000, 'f', -1, 64)
	row.Memory = resource.NewQuantity(need.MemoryMiB<<20, resource.BinarySI).String()
	if head.Kind == "DaemonSet" {
		row.Note = "not supported: DaemonSet pods cannot run on Fargate"
		return []sizeRow{row}, nil
	}
	size, err := sizing.RoundUp(need)
	var tooLarge *sizing.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		row.Reason = tooLarge.Reason
		row.Note = tooLarge.Reason + ": " + tooLarge.Error()
	case err != nil:
		row.Note = err.Error()
	default:
		row.Provisioned = size.String()
		row.ProvisionedMilliCPU = size.MilliCPU
		row.ProvisionedMemoryMiB = size.MemoryMiB
	}
	return []sizeRow{row}, nil
}

// objectName is the part of metadata the table shows.
type objectName struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// writeSizeTable writes rows as an aligned table; empty cells are "-" and
// lines carry no trailing spaces.
func writeSizeTable(out io.Writer, rows []sizeRow) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tCPU\tMEMORY\tPROVISIONED\tNOTE")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Kind, dash(r.Namespace), dash(r.Name), dash(r.CPU), dash(r.Memory), dash(r.Provisioned), r.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(out, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}
