package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/spf13/cobra"
)

// stopOptions holds the flags of `vessel stop`.
type stopOptions struct {
	reason      string
	cluster     string
	wait        bool
	waitTimeout time.Duration
}

func newStopCommand(g *globals) *cobra.Command {
	o := &stopOptions{}
	cmd := &cobra.Command{
		Use:   "stop TASK [--reason TEXT] [--cluster NAME] [--wait]",
		Short: "Stop a task",
		Long: `Stops a task as ECS StopTask does: its containers get SIGTERM, then SIGKILL
after their stop timeout. TASK is a task ID, a unique prefix of one, or an ARN.
Prints the task ID; with --wait, once the task is STOPPED.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.reason, "reason", "", `stoppedReason (default "Task stopped by user"; up to 255 characters)`)
	f.StringVar(&o.cluster, "cluster", "default", "cluster of the task")
	f.BoolVar(&o.wait, "wait", false, "wait until the task is STOPPED")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 0, "with --wait, give up after this long (0: never)")
	return cmd
}

func (o *stopOptions) run(cmd *cobra.Command, g *globals, ref string) error {
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmdContext(cmd)
	arn, err := resolveTask(ctx, c, o.cluster, ref)
	if err != nil {
		return err
	}
	in := &ecs.StopTaskInput{Cluster: aws.String(o.cluster), Task: aws.String(arn)}
	if o.reason != "" {
		in.Reason = aws.String(o.reason)
	}
	out, err := c.StopTask(ctx, in)
	if err != nil {
		return err
	}
	t := out.Task
	id := taskIDOf(aws.ToString(t.TaskArn))
	if o.wait {
		wctx := ctx
		if o.waitTimeout > 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, o.waitTimeout)
			defer cancel()
		}
		_, err := followTask(wctx, c, o.cluster, aws.ToString(t.TaskArn), t, nil, func(t *types.Task) bool {
			return aws.ToString(t.LastStatus) == statusStopped
		})
		if errors.Is(err, context.DeadlineExceeded) && o.waitTimeout > 0 {
			return fmt.Errorf("task %s did not stop within %s", id, o.waitTimeout)
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(cmd.OutOrStdout(), id)
	return nil
}
