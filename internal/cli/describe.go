package cli

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/task"
)

// describeOptions holds the flags of `vessel describe`.
type describeOptions struct {
	cluster string
}

func newDescribeCommand(g *globals) *cobra.Command {
	o := &describeOptions{}
	cmd := &cobra.Command{
		Use:   "describe TASK [--cluster NAME] [-o json]",
		Short: "Show a task in detail",
		Long: `Shows one task: its status, size, runtime, host, network and containers.
TASK is a task ID, a unique prefix of one (as ps shows), or a task ARN.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the task")
	addOutputFlag(cmd, g)
	return cmd
}

func (o *describeOptions) run(cmd *cobra.Command, g *globals, ref string) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	arn, err := resolveTask(ctx, c, o.cluster, ref)
	if err != nil {
		return err
	}
	t, err := describeTask(ctx, c, o.cluster, arn)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if g.output == "json" {
		return printJSON(out, wireJSON(t))
	}

	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	line := func(key, value string) {
		if value == "" {
			value = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", key, value)
	}
	when := func(p *time.Time) string {
		if p == nil || p.IsZero() {
			return ""
		}
		return p.Local().Format(time.RFC3339) + " (" + formatAge(time.Since(*p)) + " ago)"
	}
	line("Task", taskIDOf(aws.ToString(t.TaskArn)))
	line("ARN", aws.ToString(t.TaskArn))
	line("Cluster", taskIDOf(aws.ToString(t.ClusterArn)))
	line("Definition", familyRevision(aws.ToString(t.TaskDefinitionArn)))
	line("Status", aws.ToString(t.LastStatus)+" (desired "+aws.ToString(t.DesiredStatus)+")")
	line("CPU", formatVCPU(aws.ToString(t.Cpu))+" vCPU")
	line("Memory", formatGB(aws.ToString(t.Memory)))
	line("Runtime", taskAttribute(t, task.TagRuntime))
	line("Host", taskAttribute(t, attrHost))
	line("IP", taskENIDetail(t, "privateIPv4Address"))
	line("Subnet", taskENIDetail(t, "subnetId"))
	line("Started by", aws.ToString(t.StartedBy))
	line("Created", when(t.CreatedAt))
	line("Started", when(t.StartedAt))
	line("Stopping", when(t.StoppingAt))
	line("Stopped", when(t.StoppedAt))
	line("Stop code", string(t.StopCode))
	line("Stopped reason", aws.ToString(t.StoppedReason))
	fmt.Fprintln(tw, "Containers:")
	if err := tw.Flush(); err != nil {
		return err
	}
	ct := newTable(&indent{w: out}, "NAME", "IMAGE", "STATUS", "EXIT", "REASON")
	for _, k := range t.Containers {
		exit := ""
		if k.ExitCode != nil {
			exit = strconv.Itoa(int(*k.ExitCode))
		}
		ct.row(aws.ToString(k.Name), aws.ToString(k.Image), aws.ToString(k.LastStatus), exit, aws.ToString(k.Reason))
	}
	return ct.flush()
}

// indent prefixes every line written with two spaces.
type indent struct {
	w   interface{ Write([]byte) (int, error) }
	mid bool
}

func (in *indent) Write(p []byte) (int, error) {
	var b []byte
	for _, c := range p {
		if !in.mid {
			b = append(b, ' ', ' ')
			in.mid = true
		}
		b = append(b, c)
		if c == '\n' {
			in.mid = false
		}
	}
	if _, err := in.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// resolveTask turns a task ID, a unique ID prefix or an ARN into something
// DescribeTasks and StopTask accept. Prefixes are matched against every task
// the cluster lists, stopped ones included.
func resolveTask(ctx context.Context, c *ecs.Client, cluster, ref string) (string, error) {
	if ref == "" {
		return "", errors.New("no task given: use a task ID, a unique prefix of one, or an ARN")
	}
	if strings.HasPrefix(ref, "arn:") || len(ref) >= 32 {
		return ref, nil
	}
	arns, err := listTaskARNs(ctx, c, cluster, true)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, a := range arns {
		if strings.HasPrefix(taskIDOf(a), ref) {
			matches = append(matches, a)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no task in cluster %s has an ID starting with %q (see `vessel ps -a --cluster %s`)", cluster, ref, cluster)
	case 1:
		return matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = taskIDOf(m)
	}
	return "", fmt.Errorf("%q matches %d tasks (%s): give more of the ID", ref, len(matches), strings.Join(ids, ", "))
}

// wireJSON turns an SDK value into the JSON shape AWS tools show: field
// names in lowerCamelCase, absent fields left out, times in RFC 3339.
func wireJSON(v any) any { return wireValue(reflect.ValueOf(v)) }

var timeType = reflect.TypeFor[time.Time]()

func wireValue(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return wireValue(v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			return v.Interface().(time.Time).Format(time.RFC3339Nano)
		}
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			fv := v.Field(i)
			if !f.IsExported() || f.Anonymous {
				continue
			}
			switch fv.Kind() {
			case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
				if fv.IsNil() {
					continue
				}
			case reflect.String:
				if fv.Len() == 0 {
					continue
				}
			}
			m[lowerFirst(f.Name)] = wireValue(fv)
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Bytes()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = wireValue(v.Index(i))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		it := v.MapRange()
		for it.Next() {
			m[fmt.Sprint(it.Key().Interface())] = wireValue(it.Value())
		}
		return m
	case reflect.String:
		return v.String()
	}
	return v.Interface()
}

func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[n:]
}
