package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/spf13/cobra"
)

// DefaultPodExecutionRole is the role `vessel profile create` names unless
// told otherwise; Vessel does not check it against IAM.
const DefaultPodExecutionRole = "arn:aws:iam::000000000000:role/vessel-pod-execution"

// profileWaitInterval is how often profile commands poll while they wait.
const profileWaitInterval = 200 * time.Millisecond

func newProfileCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Manage Fargate profiles",
		Long: `Fargate profiles decide which pods of a cluster run as Vessel tasks, as on EKS:
a pod matches a profile when its namespace and labels match one of the
profile's selectors. Vessel clusters are the EKS clusters; "default" always
exists.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newProfileCreateCommand(g), newProfileListCommand(g),
		newProfileDescribeCommand(g), newProfileDeleteCommand(g))
	return cmd
}

// profileCreateOptions holds the flags of `vessel profile create`.
type profileCreateOptions struct {
	cluster   string
	namespace string
	labels    string
	selectors []string
	subnets   []string
	role      string
	tags      []string
	wait      bool
}

func newProfileCreateCommand(g *globals) *cobra.Command {
	o := &profileCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --namespace NS [--labels k=v,...] [--selector 'NS:k=v,...' ...]",
		Short: "Create a Fargate profile",
		Long: `Creates a Fargate profile. --namespace and --labels make its first selector;
each --selector adds one more, written NAMESPACE or NAMESPACE:k=v,k2=v2.
A profile has 1 to 5 selectors and cannot be changed once created.`,
		Example: `  vessel profile create web --namespace default --labels app=web
  vessel profile create batch --namespace jobs --selector 'etl:tier=batch'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "default", "cluster of the profile")
	f.StringVar(&o.namespace, "namespace", "", "namespace of the first selector")
	f.StringVar(&o.labels, "labels", "", "labels of the first selector, k=v,k2=v2")
	f.StringArrayVar(&o.selectors, "selector", nil, "another selector, NAMESPACE or NAMESPACE:k=v,k2=v2; may be repeated")
	f.StringArrayVar(&o.subnets, "subnet", nil, "subnet for the profile's pods; may be repeated (default: every subnet)")
	f.StringVar(&o.role, "role", DefaultPodExecutionRole, "pod execution role ARN")
	f.StringArrayVar(&o.tags, "tag", nil, "tag k=v; may be repeated")
	f.BoolVar(&o.wait, "wait", false, "wait until the profile is ACTIVE")
	return cmd
}

func (o *profileCreateOptions) run(cmd *cobra.Command, g *globals, name string) error {
	var selectors []ekstypes.FargateProfileSelector
	if o.namespace != "" {
		labels, err := parseLabels(o.labels)
		if err != nil {
			return fmt.Errorf("--labels: %w", err)
		}
		selectors = append(selectors, ekstypes.FargateProfileSelector{Namespace: aws.String(o.namespace), Labels: labels})
	} else if o.labels != "" {
		return errors.New("--labels needs --namespace: labels belong to the selector --namespace starts")
	}
	for _, s := range o.selectors {
		ns, rest, _ := strings.Cut(s, ":")
		if ns == "" {
			return fmt.Errorf("--selector %q has no namespace: write NAMESPACE or NAMESPACE:k=v,k2=v2", s)
		}
		labels, err := parseLabels(rest)
		if err != nil {
			return fmt.Errorf("--selector %q: %w", s, err)
		}
		selectors = append(selectors, ekstypes.FargateProfileSelector{Namespace: aws.String(ns), Labels: labels})
	}
	if len(selectors) == 0 {
		return errors.New("a profile needs a selector: give --namespace (and --labels), or --selector")
	}
	var tags map[string]string
	for _, t := range o.tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return fmt.Errorf("--tag %q is not k=v", t)
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[k] = v
	}
	c, err := g.eksClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	out, err := c.CreateFargateProfile(ctx, &eks.CreateFargateProfileInput{
		ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name),
		PodExecutionRoleArn: aws.String(o.role), Selectors: selectors, Subnets: o.subnets, Tags: tags,
	})
	if err != nil {
		return err
	}
	p := out.FargateProfile
	for o.wait && p.Status != ekstypes.FargateProfileStatusActive {
		if p.Status == ekstypes.FargateProfileStatusCreateFailed {
			return fmt.Errorf("profile %s: %s", name, p.Status)
		}
		if err := sleepContext(ctx, profileWaitInterval); err != nil {
			return err
		}
		d, err := c.DescribeFargateProfile(ctx, &eks.DescribeFargateProfileInput{
			ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name)})
		if err != nil {
			return err
		}
		p = d.FargateProfile
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", aws.ToString(p.FargateProfileName), p.Status)
	return nil
}

// parseLabels parses "k=v,k2=v2"; "" is no labels.
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not k=v", kv)
		}
		out[k] = v
	}
	return out, nil
}

// profileListOptions holds the flags of `vessel profile list`.
type profileListOptions struct {
	cluster string
}

func newProfileListCommand(g *globals) *cobra.Command {
	o := &profileListOptions{}
	cmd := &cobra.Command{
		Use:   "list [--cluster NAME] [-o json]",
		Short: "List Fargate profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, g)
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster whose profiles to list")
	addOutputFlag(cmd, g)
	return cmd
}

func (o *profileListOptions) run(cmd *cobra.Command, g *globals) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.eksClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	var profiles []*ekstypes.FargateProfile
	p := eks.NewListFargateProfilesPaginator(c, &eks.ListFargateProfilesInput{ClusterName: aws.String(o.cluster)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, name := range page.FargateProfileNames {
			d, err := c.DescribeFargateProfile(ctx, &eks.DescribeFargateProfileInput{
				ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name)})
			var nf *ekstypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				continue // deleted since it was listed
			}
			if err != nil {
				return err
			}
			profiles = append(profiles, d.FargateProfile)
		}
	}
	out := cmd.OutOrStdout()
	if g.output == "json" {
		list := make([]any, 0, len(profiles))
		for _, pr := range profiles {
			list = append(list, wireJSON(pr))
		}
		return printJSON(out, list)
	}
	tw := newTable(out, "NAME", "STATUS", "SELECTORS", "SUBNETS", "CREATED")
	for _, pr := range profiles {
		tw.row(aws.ToString(pr.FargateProfileName), string(pr.Status), summariseSelectors(pr.Selectors),
			strings.Join(pr.Subnets, ","), formatAge(time.Since(aws.ToTime(pr.CreatedAt))))
	}
	return tw.flush()
}

// summariseSelectors writes selectors as "ns{k=v,k2=v2} ns2".
func summariseSelectors(sels []ekstypes.FargateProfileSelector) string {
	parts := make([]string, 0, len(sels))
	for _, s := range sels {
		part := aws.ToString(s.Namespace)
		if len(s.Labels) > 0 {
			part += "{" + labelString(s.Labels) + "}"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, " ")
}

// labelString is "k=v,k2=v2", sorted by key.
func labelString(labels map[string]string) string {
	kvs := make([]string, 0, len(labels))
	for k, v := range labels {
		kvs = append(kvs, k+"="+v)
	}
	slices.Sort(kvs)
	return strings.Join(kvs, ",")
}

// profileDescribeOptions holds the flags of `vessel profile describe`.
type profileDescribeOptions struct {
	cluster string
}

func newProfileDescribeCommand(g *globals) *cobra.Command {
	o := &profileDescribeOptions{}
	cmd := &cobra.Command{
		Use:   "describe NAME [--cluster NAME] [-o json]",
		Short: "Show a Fargate profile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the profile")
	addOutputFlag(cmd, g)
	return cmd
}

func (o *profileDescribeOptions) run(cmd *cobra.Command, g *globals, name string) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.eksClient()
	if err != nil {
		return err
	}
	d, err := c.DescribeFargateProfile(cmdContext(cmd), &eks.DescribeFargateProfileInput{
		ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name)})
	if err != nil {
		return err
	}
	p := d.FargateProfile
	out := cmd.OutOrStdout()
	if g.output == "json" {
		return printJSON(out, wireJSON(p))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	line := func(key, value string) {
		if value == "" {
			value = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", key, value)
	}
	line("Name", aws.ToString(p.FargateProfileName))
	line("ARN", aws.ToString(p.FargateProfileArn))
	line("Cluster", aws.ToString(p.ClusterName))
	line("Status", string(p.Status))
	line("Pod execution role", aws.ToString(p.PodExecutionRoleArn))
	line("Subnets", strings.Join(p.Subnets, ", "))
	if p.CreatedAt != nil {
		line("Created", p.CreatedAt.Local().Format(time.RFC3339)+" ("+formatAge(time.Since(*p.CreatedAt))+" ago)")
	}
	if len(p.Tags) > 0 {
		line("Tags", labelString(p.Tags))
	}
	for i, s := range p.Selectors {
		v := "namespace " + aws.ToString(s.Namespace)
		if len(s.Labels) > 0 {
			v += ", labels " + labelString(s.Labels)
		}
		line(fmt.Sprintf("Selector %d", i+1), v)
	}
	if p.Health != nil {
		for _, is := range p.Health.Issues {
			line("Health issue", string(is.Code)+": "+aws.ToString(is.Message))
		}
	}
	return tw.Flush()
}

// profileDeleteOptions holds the flags of `vessel profile delete`.
type profileDeleteOptions struct {
	cluster     string
	wait        bool
	waitTimeout time.Duration
}

func newProfileDeleteCommand(g *globals) *cobra.Command {
	o := &profileDeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete NAME [--cluster NAME] [--wait]",
		Short: "Delete a Fargate profile",
		Long: `Deletes a Fargate profile: it turns DELETING, the tasks it placed are stopped,
and then it is gone. With --wait, returns once it is gone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the profile")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the profile is gone")
	cmd.Flags().DurationVar(&o.waitTimeout, "wait-timeout", 0, "with --wait, give up after this long (0: never)")
	return cmd
}

func (o *profileDeleteOptions) run(cmd *cobra.Command, g *globals, name string) error {
	c, err := g.eksClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	if _, err := c.DeleteFargateProfile(ctx, &eks.DeleteFargateProfileInput{
		ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name)}); err != nil {
		return err
	}
	if o.wait {
		if o.waitTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.waitTimeout)
			defer cancel()
		}
		for {
			_, err := c.DescribeFargateProfile(ctx, &eks.DescribeFargateProfileInput{
				ClusterName: aws.String(o.cluster), FargateProfileName: aws.String(name)})
			var nf *ekstypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				break
			}
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && o.waitTimeout > 0 {
					return fmt.Errorf("profile %s was not gone within %s", name, o.waitTimeout)
				}
				return err
			}
			if err := sleepContext(ctx, profileWaitInterval); err != nil {
				if o.waitTimeout > 0 {
					return fmt.Errorf("profile %s was not gone within %s", name, o.waitTimeout)
				}
				return err
			}
		}
	}
	fmt.Fprintln(cmd.OutOrStdout(), name)
	return nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
