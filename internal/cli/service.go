package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/task"
)

// serviceWaitInterval is how often service commands poll while they wait.
const serviceWaitInterval = 200 * time.Millisecond

func newServiceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Manage ECS services",
		Long: `A service keeps a desired number of tasks of a task definition running, as
an ECS service on Fargate: it replaces tasks that stop, spreads them across
its subnets and hosts, and rolls out a new task definition as a deployment
bounded by --min-healthy and --max-percent, with an optional circuit breaker.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newServiceCreateCommand(g), newServiceListCommand(g), newServiceScaleCommand(g),
		newServiceDeployCommand(g), newServiceRemoveCommand(g))
	return cmd
}

// serviceCreateOptions holds the flags of `vessel service create`.
type serviceCreateOptions struct {
	cluster        string
	count          int32
	subnets        []string
	minHealthy     int32
	maxPercent     int32
	circuitBreaker bool
	rollback       bool
	runtime        string
	wait           bool
}

func newServiceCreateCommand(g *globals) *cobra.Command {
	o := &serviceCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME TASK_DEFINITION [--count N]",
		Short: "Create a service",
		Long: `Creates a service running --count tasks of TASK_DEFINITION (a family, family:revision
or ARN). With --wait it returns once the service has reached a steady state.`,
		Example: `  vessel service create web web:3 --count 3 --wait
  vessel service create api api --count 2 --circuit-breaker --rollback --subnet subnet-a --subnet subnet-b`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "default", "cluster of the service")
	f.Int32Var(&o.count, "count", 1, "desired number of tasks")
	f.StringArrayVar(&o.subnets, "subnet", nil, "subnet for the service's tasks; may be repeated (default: every subnet)")
	f.Int32Var(&o.minHealthy, "min-healthy", 100, "minimumHealthyPercent of a deployment")
	f.Int32Var(&o.maxPercent, "max-percent", 200, "maximumPercent of a deployment")
	f.BoolVar(&o.circuitBreaker, "circuit-breaker", false, "stop a deployment whose tasks keep failing")
	f.BoolVar(&o.rollback, "rollback", false, "with --circuit-breaker, roll back to the last deployment that completed")
	f.StringVar(&o.runtime, "runtime", "", "sandbox runtime of the service's tasks, e.g. sim (default: the task definition's or the host's)")
	f.BoolVar(&o.wait, "wait", false, "wait until the service reaches a steady state")
	return cmd
}

func (o *serviceCreateOptions) run(cmd *cobra.Command, g *globals, name, taskDef string) error {
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	in := &ecs.CreateServiceInput{Cluster: aws.String(o.cluster), ServiceName: aws.String(name),
		TaskDefinition: aws.String(taskDef), DesiredCount: aws.Int32(o.count), LaunchType: types.LaunchTypeFargate,
		DeploymentConfiguration: &types.DeploymentConfiguration{
			MinimumHealthyPercent: aws.Int32(o.minHealthy), MaximumPercent: aws.Int32(o.maxPercent),
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: o.circuitBreaker, Rollback: o.rollback}}}
	if len(o.subnets) > 0 {
		in.NetworkConfiguration = &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{Subnets: o.subnets}}
	}
	if o.runtime != "" {
		in.Tags = []types.Tag{{Key: aws.String(task.TagRuntime), Value: aws.String(o.runtime)}}
	}
	out, err := c.CreateService(ctx, in)
	if err != nil {
		return err
	}
	s := out.Service
	if o.wait {
		if s, err = waitService(ctx, c, o.cluster, name, serviceSteady); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%d/%d\n", aws.ToString(s.ServiceName), aws.ToString(s.Status), s.RunningCount, s.DesiredCount)
	return nil
}

// serviceSteady reports whether a service has one COMPLETED deployment
// running every desired task; an error when its deployment failed.
func serviceSteady(s *types.Service) (bool, error) {
	if len(s.Deployments) > 0 && s.Deployments[0].RolloutState == types.DeploymentRolloutStateFailed {
		return false, fmt.Errorf("service %s: deployment %s failed: %s", aws.ToString(s.ServiceName),
			aws.ToString(s.Deployments[0].Id), aws.ToString(s.Deployments[0].RolloutStateReason))
	}
	return len(s.Deployments) == 1 && s.Deployments[0].RolloutState == types.DeploymentRolloutStateCompleted &&
		s.RunningCount == s.DesiredCount && s.PendingCount == 0, nil
}

// waitService polls a service until done says so.
func waitService(ctx context.Context, c *ecs.Client, cluster, name string, done func(*types.Service) (bool, error)) (*types.Service, error) {
	for {
		out, err := c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{name}})
		if err != nil {
			return nil, err
		}
		if len(out.Services) == 0 {
			return nil, fmt.Errorf("service %s is gone", name)
		}
		s := &out.Services[0]
		ok, err := done(s)
		if err != nil || ok {
			return s, err
		}
		if err := sleepContext(ctx, serviceWaitInterval); err != nil {
			return nil, err
		}
	}
}

// serviceListOptions holds the flags of `vessel service ls`.
type serviceListOptions struct {
	cluster string
}

func newServiceListCommand(g *globals) *cobra.Command {
	o := &serviceListOptions{}
	cmd := &cobra.Command{
		Use:     "ls [--cluster NAME] [-o json]",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, g)
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster whose services to list")
	addOutputFlag(cmd, g)
	return cmd
}

func (o *serviceListOptions) run(cmd *cobra.Command, g *globals) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	var names []string
	p := ecs.NewListServicesPaginator(c, &ecs.ListServicesInput{Cluster: aws.String(o.cluster)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		names = append(names, out.ServiceArns...)
	}
	services := []types.Service{}
	for i := 0; i < len(names); i += 10 {
		out, err := c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(o.cluster), Services: names[i:min(i+10, len(names))]})
		if err != nil {
			return err
		}
		services = append(services, out.Services...)
	}
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), services)
	}
	t := newTable(cmd.OutOrStdout(), "NAME", "STATUS", "DESIRED", "RUNNING", "PENDING", "TASK DEFINITION", "DEPLOYMENT")
	for _, s := range services {
		rollout := ""
		if len(s.Deployments) > 0 {
			rollout = string(s.Deployments[0].RolloutState)
			if len(s.Deployments) > 1 {
				rollout += fmt.Sprintf(" (+%d)", len(s.Deployments)-1)
			}
		}
		t.row(aws.ToString(s.ServiceName), aws.ToString(s.Status), strconv.Itoa(int(s.DesiredCount)),
			strconv.Itoa(int(s.RunningCount)), strconv.Itoa(int(s.PendingCount)), lastPart(aws.ToString(s.TaskDefinition)), rollout)
	}
	return t.flush()
}

// lastPart is what follows the last "/" of an ARN.
func lastPart(arn string) string {
	for i := len(arn) - 1; i >= 0; i-- {
		if arn[i] == '/' {
			return arn[i+1:]
		}
	}
	return arn
}

// serviceUpdateOptions holds the flags of `vessel service scale` and
// `vessel service deploy`.
type serviceUpdateOptions struct {
	cluster string
	force   bool
	wait    bool
}

func newServiceScaleCommand(g *globals) *cobra.Command {
	o := &serviceUpdateOptions{}
	cmd := &cobra.Command{
		Use:     "scale NAME COUNT",
		Short:   "Change a service's desired count",
		Example: `  vessel service scale web 10 --wait`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[1], 10, 32)
			if err != nil || n < 0 {
				return fmt.Errorf("COUNT %q is not a number of tasks (0 or more)", args[1])
			}
			return o.update(cmd, g, &ecs.UpdateServiceInput{Service: aws.String(args[0]), DesiredCount: aws.Int32(int32(n))})
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the service")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the service reaches a steady state")
	return cmd
}

func newServiceDeployCommand(g *globals) *cobra.Command {
	o := &serviceUpdateOptions{}
	cmd := &cobra.Command{
		Use:   "deploy NAME [TASK_DEFINITION] [--force]",
		Short: "Roll out a task definition to a service",
		Long: `Starts a deployment of TASK_DEFINITION (a family, family:revision or ARN), or with
--force a new deployment of the current one. With --wait it returns once the
deployment has completed, and fails if it failed.`,
		Example: `  vessel service deploy web web:4 --wait
  vessel service deploy web --force`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := &ecs.UpdateServiceInput{Service: aws.String(args[0]), ForceNewDeployment: o.force}
			if len(args) == 2 {
				in.TaskDefinition = aws.String(args[1])
			} else if !o.force {
				return fmt.Errorf("give a TASK_DEFINITION to deploy, or --force to redeploy the current one")
			}
			return o.update(cmd, g, in)
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the service")
	cmd.Flags().BoolVar(&o.force, "force", false, "start a new deployment even if nothing changed")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the deployment completes")
	return cmd
}

func (o *serviceUpdateOptions) update(cmd *cobra.Command, g *globals, in *ecs.UpdateServiceInput) error {
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	in.Cluster = aws.String(o.cluster)
	out, err := c.UpdateService(ctx, in)
	if err != nil {
		return err
	}
	s := out.Service
	if o.wait {
		if s, err = waitService(ctx, c, o.cluster, aws.ToString(in.Service), serviceSteady); err != nil {
			return err
		}
	}
	dep := ""
	if len(s.Deployments) > 0 {
		dep = aws.ToString(s.Deployments[0].Id) + " " + string(s.Deployments[0].RolloutState)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d/%d\t%s\t%s\n", aws.ToString(s.ServiceName), s.RunningCount, s.DesiredCount,
		lastPart(aws.ToString(s.TaskDefinition)), dep)
	return nil
}

// serviceRemoveOptions holds the flags of `vessel service rm`.
type serviceRemoveOptions struct {
	cluster string
	force   bool
	wait    bool
}

func newServiceRemoveCommand(g *globals) *cobra.Command {
	o := &serviceRemoveOptions{}
	cmd := &cobra.Command{
		Use:   "rm NAME [--force]",
		Short: "Delete a service",
		Long: `Deletes a service: it drains (its tasks are stopped) and becomes INACTIVE. A
service still scaled above 0 is deleted only with --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.ecsClient()
			if err != nil {
				return err
			}
			ctx := cmdContext(cmd)
			out, err := c.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: aws.String(o.cluster), Service: aws.String(args[0]),
				Force: aws.Bool(o.force)})
			if err != nil {
				return err
			}
			s := out.Service
			if o.wait {
				s, err = waitService(ctx, c, o.cluster, args[0], func(s *types.Service) (bool, error) {
					return aws.ToString(s.Status) == "INACTIVE", nil
				})
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", aws.ToString(s.ServiceName), aws.ToString(s.Status))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.cluster, "cluster", "default", "cluster of the service")
	cmd.Flags().BoolVar(&o.force, "force", false, "delete even if the service is scaled above 0")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the service is INACTIVE")
	return cmd
}
