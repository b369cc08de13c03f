package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/task"
)

// psOptions holds the flags of `vessel ps`.
type psOptions struct {
	all     bool
	cluster string
}

func newPsCommand(g *globals) *cobra.Command {
	o := &psOptions{}
	cmd := &cobra.Command{
		Use:   "ps [-a] [--cluster NAME] [-o json]",
		Short: "List tasks",
		Long: `Lists the tasks of a cluster that should be running, newest first; with -a
also the stopped tasks the control plane still remembers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, g)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "include stopped tasks")
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster whose tasks to list")
	addOutputFlag(cmd, g)
	return cmd
}

func (o *psOptions) run(cmd *cobra.Command, g *globals) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	arns, err := listTaskARNs(ctx, c, o.cluster, o.all)
	if err != nil {
		return err
	}
	tasks, err := describeTasks(ctx, c, o.cluster, arns)
	if err != nil {
		return err
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		return aws.ToTime(tasks[i].CreatedAt).After(aws.ToTime(tasks[j].CreatedAt))
	})
	out := cmd.OutOrStdout()
	if g.output == "json" {
		list := make([]any, 0, len(tasks))
		for i := range tasks {
			list = append(list, wireJSON(&tasks[i]))
		}
		return printJSON(out, list)
	}
	defs := newDefCache()
	now := time.Now()
	tw := newTable(out, "TASK", "FAMILY", "STATUS", "DESIRED", "CPU", "MEMORY", "RUNTIME", "IP", "AGE", "EXIT")
	for i := range tasks {
		t := &tasks[i]
		exit := ""
		if ec := essentialContainer(ctx, c, defs, t); ec != nil && ec.ExitCode != nil {
			exit = strconv.Itoa(int(*ec.ExitCode))
		}
		tw.row(psID(taskIDOf(aws.ToString(t.TaskArn))), familyRevision(aws.ToString(t.TaskDefinitionArn)),
			aws.ToString(t.LastStatus), aws.ToString(t.DesiredStatus), formatVCPU(aws.ToString(t.Cpu)),
			formatGB(aws.ToString(t.Memory)), taskAttribute(t, task.TagRuntime), taskENIDetail(t, "privateIPv4Address"),
			formatAge(now.Sub(aws.ToTime(t.CreatedAt))), exit)
	}
	return tw.flush()
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return background()
}

// listTaskARNs lists every task whose desired status is RUNNING, and with
// all also STOPPED, following every page.
func listTaskARNs(ctx context.Context, c *ecs.Client, cluster string, all bool) ([]string, error) {
	statuses := []types.DesiredStatus{types.DesiredStatusRunning}
	if all {
		statuses = append(statuses, types.DesiredStatusStopped)
	}
	seen := map[string]bool{}
	var arns []string
	for _, st := range statuses {
		p := ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{Cluster: aws.String(cluster), DesiredStatus: st})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, a := range page.TaskArns {
				if !seen[a] {
					seen[a] = true
					arns = append(arns, a)
				}
			}
		}
	}
	return arns, nil
}

// describeTasks describes tasks in batches of 100; tasks gone in between
// are left out.
func describeTasks(ctx context.Context, c *ecs.Client, cluster string, arns []string) ([]types.Task, error) {
	var tasks []types.Task
	for len(arns) > 0 {
		n := min(len(arns), 100)
		out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: arns[:n],
			Include: []types.TaskField{types.TaskFieldTags}})
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, out.Tasks...)
		arns = arns[n:]
	}
	return tasks, nil
}

// defCache remembers task definitions by ARN.
type defCache map[string]*types.TaskDefinition

func newDefCache() defCache { return defCache{} }

// get returns the task definition, or nil if it cannot be described.
func (d defCache) get(ctx context.Context, c *ecs.Client, arn string) *types.TaskDefinition {
	if def, ok := d[arn]; ok {
		return def
	}
	out, err := c.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(arn)})
	var def *types.TaskDefinition
	if err == nil {
		def = out.TaskDefinition
	}
	d[arn] = def
	return def
}

// essentialContainer returns the task's essential container: its only
// container, or the first essential one (preferring one that exited) as
// its task definition says. Nil if the task has no container.
func essentialContainer(ctx context.Context, c *ecs.Client, defs defCache, t *types.Task) *types.Container {
	switch len(t.Containers) {
	case 0:
		return nil
	case 1:
		return &t.Containers[0]
	}
	essential := map[string]bool{}
	if def := defs.get(ctx, c, aws.ToString(t.TaskDefinitionArn)); def != nil {
		for _, cd := range def.ContainerDefinitions {
			essential[aws.ToString(cd.Name)] = cd.Essential == nil || *cd.Essential
		}
	}
	var first *types.Container
	for i := range t.Containers {
		ct := &t.Containers[i]
		if len(essential) > 0 && !essential[aws.ToString(ct.Name)] {
			continue
		}
		if ct.ExitCode != nil {
			return ct
		}
		if first == nil {
			first = ct
		}
	}
	if first == nil {
		first = &t.Containers[0]
	}
	return first
}

// taskIDOf returns the ID at the end of a task ARN.
func taskIDOf(arn string) string {
	if i := strings.LastIndex(arn, "/"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// psID is the 12-character task ID prefix `vessel ps` shows.
func psID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// familyRevision returns "family:revision" from a task definition ARN.
func familyRevision(arn string) string {
	if i := strings.Index(arn, ":task-definition/"); i >= 0 {
		return arn[i+len(":task-definition/"):]
	}
	return arn
}

// formatVCPU turns cpu units ("256") into vCPUs ("0.25").
func formatVCPU(units string) string {
	n, err := strconv.ParseInt(units, 10, 64)
	if err != nil {
		return units
	}
	return strconv.FormatFloat(float64(n)/1024, 'f', -1, 64)
}

// formatGB turns MiB ("512") into GB ("0.5GB").
func formatGB(mib string) string {
	n, err := strconv.ParseInt(mib, 10, 64)
	if err != nil {
		return mib
	}
	return strconv.FormatFloat(float64(n)/1024, 'f', -1, 64) + "GB"
}

// formatAge is a short duration: 5s, 3m, 2h, 4d.
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// taskAttribute returns an attribute's value, e.g. vessel:runtime.
func taskAttribute(t *types.Task, name string) string {
	for _, a := range t.Attributes {
		if aws.ToString(a.Name) == name {
			return aws.ToString(a.Value)
		}
	}
	return ""
}

// taskENIDetail returns a detail of the task's awsvpc network interface,
// e.g. privateIPv4Address or subnetId.
func taskENIDetail(t *types.Task, name string) string {
	for _, at := range t.Attachments {
		if aws.ToString(at.Type) != "ElasticNetworkInterface" {
			continue
		}
		for _, d := range at.Details {
			if aws.ToString(d.Name) == name {
				return aws.ToString(d.Value)
			}
		}
	}
	return ""
}
