package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/spf13/cobra"
)

// Names the CLI shares with the control plane.
const (
	attrHost         = "vessel:host"
	statusRunning    = "RUNNING"
	statusStopped    = "STOPPED"
	defaultContainer = "main"
)

// pollInterval is how often the CLI asks for a task's status while it
// follows one.
const pollInterval = 100 * time.Millisecond

// runOptions holds the flags of `vessel run`.
type runOptions struct {
	cpu         string
	memory      string
	cluster     string
	family      string
	name        string
	env         []string
	runtime     string
	subnets     []string
	stopTimeout time.Duration
	detach      bool
	startedBy   string
	waitTimeout time.Duration
}

func newRunCommand(g *globals) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run IMAGE [-- COMMAND ARGS...]",
		Short: "Run a task from an image",
		Long: `Runs one task with a single container from IMAGE, as ECS RunTask on Fargate.

A task definition is registered in family "run-<image name>" (or --family), or
its latest ACTIVE revision reused when it already says the same: image,
command, environment, cpu, memory, stop timeout and runtime.

Attached (the default), run prints the task ID on stdout, each status the task
reaches on stderr, and exits with the essential container's exit code once the
task has stopped. Ctrl-C stops the task and keeps following it; a second
Ctrl-C leaves it be. With -d it waits until the task is RUNNING and prints its
ID.`,
		Example: `  vessel run busybox:1.36 -- sh -c 'echo hello; exit 3'
  vessel run -d --cpu 1 --memory 2GB nginx:1.27
  vessel run --runtime sim -e MODE=test alpine -- sleep 5`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cpu, "cpu", "0.25", "vCPUs: 0.25, 0.5, 1, 2, 4, 8 or 16")
	f.StringVar(&o.memory, "memory", "0.5GB", `memory: GB ("0.5GB", "2GB") or MiB ("512")`)
	f.StringVar(&o.cluster, "cluster", "default", "cluster to run the task in")
	f.StringVar(&o.family, "family", "", `task definition family (default "run-" and the image name)`)
	f.StringVar(&o.name, "name", defaultContainer, "container name")
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable KEY=VALUE; may be repeated")
	f.StringVar(&o.runtime, "runtime", "", "sandbox runtime, e.g. sim (default: the host's)")
	f.StringArrayVar(&o.subnets, "subnet", nil, "subnet for the task's network interface; may be repeated")
	f.DurationVar(&o.stopTimeout, "stop-timeout", 30*time.Second, "time between SIGTERM and SIGKILL when the task is stopped (2s to 120s)")
	f.BoolVarP(&o.detach, "detach", "d", false, "print the task ID once it is RUNNING and return")
	f.StringVar(&o.startedBy, "started-by", "", "startedBy of the task (up to 128 characters)")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 0, "give up following the task after this long (0: never); the task keeps running")
	return cmd
}

func (o *runOptions) run(cmd *cobra.Command, g *globals, image string, command []string) error {
	cpu, err := parseVCPU(o.cpu)
	if err != nil {
		return err
	}
	mem, err := parseMemory(o.memory)
	if err != nil {
		return err
	}
	env, err := parseEnv(o.env)
	if err != nil {
		return err
	}
	if o.stopTimeout <= 0 {
		return fmt.Errorf("--stop-timeout %s must be positive, e.g. 30s", o.stopTimeout)
	}
	family := o.family
	if family == "" {
		family = familyForImage(image)
	}
	c, err := g.ecsClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = background()
	}
	want := types.ContainerDefinition{
		Name:        aws.String(o.name),
		Image:       aws.String(image),
		Command:     command,
		Environment: env,
		Essential:   aws.Bool(true),
		StopTimeout: aws.Int32(int32((o.stopTimeout + time.Second - 1) / time.Second)),
	}
	defArn, err := o.taskDefinition(ctx, c, family, cpu, mem, want)
	if err != nil {
		return err
	}

	in := &ecs.RunTaskInput{
		Cluster:        aws.String(o.cluster),
		TaskDefinition: aws.String(defArn),
		LaunchType:     types.LaunchTypeFargate,
		Count:          aws.Int32(1),
	}
	if o.startedBy != "" {
		in.StartedBy = aws.String(o.startedBy)
	}
	if len(o.subnets) > 0 {
		in.NetworkConfiguration = &types.NetworkConfiguration{
			AwsvpcConfiguration: &types.AwsVpcConfiguration{Subnets: o.subnets}}
	}
	if o.runtime != "" {
		in.Tags = []types.Tag{{Key: aws.String(task.TagRuntime), Value: aws.String(o.runtime)}}
	}
	out, err := c.RunTask(ctx, in)
	if err != nil {
		return err
	}
	if len(out.Tasks) == 0 {
		for _, f := range out.Failures {
			return fmt.Errorf("RunTask failed: %s: %s", aws.ToString(f.Reason), aws.ToString(f.Detail))
		}
		return errors.New("RunTask started no task and reported no failure")
	}
	t := &out.Tasks[0]
	if o.detach {
		return o.runDetached(ctx, cmd, c, t)
	}
	return o.runAttached(ctx, cmd, g, c, t)
}

// taskDefinition returns the ARN of the latest ACTIVE revision of family if
// it says the same as want, cpu, mem and the runtime; else it registers a
// new revision.
func (o *runOptions) taskDefinition(ctx context.Context, c *ecs.Client, family, cpu, mem string, want types.ContainerDefinition) (string, error) {
	cur, err := c.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: aws.String(family),
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
	var ce *types.ClientException
	switch {
	case errors.As(err, &ce):
		// No ACTIVE revision yet.
	case err != nil:
		return "", err
	case sameDefinition(cur.TaskDefinition, cur.Tags, cpu, mem, o.runtime, want):
		return aws.ToString(cur.TaskDefinition.TaskDefinitionArn), nil
	}
	in := &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(family),
		NetworkMode:             types.NetworkModeAwsvpc,
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		Cpu:                     aws.String(cpu),
		Memory:                  aws.String(mem),
		ContainerDefinitions:    []types.ContainerDefinition{want},
	}
	if o.runtime != "" {
		in.Tags = []types.Tag{{Key: aws.String(task.TagRuntime), Value: aws.String(o.runtime)}}
	}
	reg, err := c.RegisterTaskDefinition(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(reg.TaskDefinition.TaskDefinitionArn), nil
}

// sameDefinition reports whether def runs exactly want with cpu, mem and
// runtime.
func sameDefinition(def *types.TaskDefinition, tags []types.Tag, cpu, mem, runtime string, want types.ContainerDefinition) bool {
	if def == nil || len(def.ContainerDefinitions) != 1 {
		return false
	}
	if !sameNumber(aws.ToString(def.Cpu), cpu) || !sameNumber(aws.ToString(def.Memory), mem) {
		return false
	}
	if tagValue(tags, task.TagRuntime) != runtime {
		return false
	}
	got := def.ContainerDefinitions[0]
	return aws.ToString(got.Name) == aws.ToString(want.Name) &&
		aws.ToString(got.Image) == aws.ToString(want.Image) &&
		slices.Equal(got.EntryPoint, want.EntryPoint) &&
		slices.Equal(got.Command, want.Command) &&
		slices.Equal(envStrings(got.Environment), envStrings(want.Environment)) &&
		aws.ToInt32(got.StopTimeout) == aws.ToInt32(want.StopTimeout) &&
		aws.ToBool(got.Essential)
}

func sameNumber(a, b string) bool {
	x, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	y, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return x == y
}

func tagValue(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// envStrings returns an environment as sorted KEY=VALUE strings.
func envStrings(env []types.KeyValuePair) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		out = append(out, aws.ToString(kv.Name)+"="+aws.ToString(kv.Value))
	}
	slices.Sort(out)
	return out
}

// runDetached waits until the task is RUNNING or STOPPED and prints its ID.
func (o *runOptions) runDetached(ctx context.Context, cmd *cobra.Command, c *ecs.Client, t *types.Task) error {
	if o.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.waitTimeout)
		defer cancel()
	}
	id := taskIDOf(aws.ToString(t.TaskArn))
	final, err := followTask(ctx, c, o.cluster, aws.ToString(t.TaskArn), t, nil, func(t *types.Task) bool {
		s := aws.ToString(t.LastStatus)
		return s == statusRunning || s == statusStopped || aws.ToString(t.DesiredStatus) == statusStopped
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && o.waitTimeout > 0 {
			return fmt.Errorf("task %s did not reach RUNNING within %s; it is still starting (see `vessel describe %s`)", id, o.waitTimeout, psID(id))
		}
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), id)
	if aws.ToString(final.DesiredStatus) == statusStopped && final.StopCode == types.TaskStopCodeTaskFailedToStart {
		return fmt.Errorf("task %s failed to start: %s", id, aws.ToString(final.StoppedReason))
	}
	if aws.ToString(final.LastStatus) == statusStopped {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s  %s\n", shortID(id), stoppedLine(final))
	}
	return nil
}

// runAttached follows the task to STOPPED, printing each status, and
// returns the essential container's exit code.
func (o *runOptions) runAttached(ctx context.Context, cmd *cobra.Command, g *globals, c *ecs.Client, t *types.Task) error {
	arn := aws.ToString(t.TaskArn)
	id := taskIDOf(arn)
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	interrupts := make(chan os.Signal, 2)
	signal.Notify(interrupts, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(interrupts)
	fmt.Fprintln(stderr, id)
	var deadline <-chan time.Time
	if o.waitTimeout > 0 {
		timer := time.NewTimer(o.waitTimeout)
		defer timer.Stop()
		deadline = timer.C
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()

	// Output: once the task runs, its logs stream to stdout until it ends.
	logsDone := make(chan struct{})
	logsStarted := false
	startLogs := func() {
		if logsStarted {
			return
		}
		logsStarted = true
		go func() {
			defer close(logsDone)
			q := agentproto.EncodeLogQuery(agentproto.LogOptions{Follow: true})
			multi := len(t.Containers) > 1
			err := g.streamLogs(ctx, o.cluster, arn, q, func(l agentproto.LogLine) error {
				return printLogLine(stdout, l, false, multi)
			})
			if err != nil && !errdefs.IsNotFound(err) {
				fmt.Fprintf(stderr, "vessel: following the task's output: %v\n", err)
			}
		}()
	}
	lastProgress := ""
	last, sawRunning := "", false
	show := func(t *types.Task) {
		for _, a := range t.Attributes {
			if aws.ToString(a.Name) == "vessel:pull-progress" && aws.ToString(a.Value) != lastProgress {
				lastProgress = aws.ToString(a.Value)
				fmt.Fprintf(stderr, "%s  pulling %s\n", shortID(id), lastProgress)
			}
		}
		if t.StartedAt != nil {
			startLogs()
		}
		s := aws.ToString(t.LastStatus)
		if s != last && t.StartedAt != nil && last != statusRunning && statusAfterRunning(s) && !sawRunning {
			// Polling missed RUNNING, but startedAt says the task got there.
			fmt.Fprintf(stderr, "%s  %s\n", shortID(id), statusRunning)
		}
		sawRunning = sawRunning || s == statusRunning || statusAfterRunning(s)
		if s != last {
			last = s
			line := s
			if s == statusStopped {
				line = stoppedLine(t)
			}
			fmt.Fprintf(stderr, "%s  %s\n", shortID(id), line)
		}
	}
	show(t)
	interrupted := false
	for aws.ToString(t.LastStatus) != statusStopped {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("task %s did not stop within %s (last status %s); it keeps running: stop it with `vessel stop %s`",
				id, o.waitTimeout, last, psID(id))
		case <-interrupts:
			if interrupted {
				fmt.Fprintf(stderr, "%s  still %s; no longer following it\n", shortID(id), last)
				return exitCode(130)
			}
			interrupted = true
			fmt.Fprintf(stderr, "%s  stopping (interrupted; Ctrl-C again to stop following)\n", shortID(id))
			if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(o.cluster), Task: aws.String(arn),
				Reason: aws.String("stopped by vessel run: interrupted")}); err != nil {
				return err
			}
		case <-tick.C:
			next, err := describeTask(ctx, c, o.cluster, arn)
			if err != nil {
				return err
			}
			t = next
			show(t)
		}
	}
	if logsStarted {
		select {
		case <-logsDone:
		case <-time.After(5 * time.Second):
		}
	}
	ec := essentialContainer(ctx, c, newDefCache(), t)
	if ec == nil || ec.ExitCode == nil {
		fmt.Fprintf(stderr, "vessel: task %s stopped without an exit code: %s\n", id, aws.ToString(t.StoppedReason))
		return exitCode(1)
	}
	if code := aws.ToInt32(ec.ExitCode); code != 0 {
		return exitCode(code)
	}
	return nil
}

// statusAfterRunning reports whether a task status comes after RUNNING.
func statusAfterRunning(s string) bool {
	switch s {
	case "DEACTIVATING", "STOPPING", "DEPROVISIONING", statusStopped:
		return true
	}
	return false
}

// stoppedLine is "STOPPED (StopCode: reason)".
func stoppedLine(t *types.Task) string {
	var why []string
	if t.StopCode != "" {
		why = append(why, string(t.StopCode))
	}
	if r := aws.ToString(t.StoppedReason); r != "" {
		why = append(why, r)
	}
	if len(why) == 0 {
		return aws.ToString(t.LastStatus)
	}
	return aws.ToString(t.LastStatus) + " (" + strings.Join(why, ": ") + ")"
}

// followTask polls a task until done reports true, calling seen (if not
// nil) for every new lastStatus, starting with t (which may be nil).
func followTask(ctx context.Context, c *ecs.Client, cluster, arn string, t *types.Task, seen func(*types.Task), done func(*types.Task) bool) (*types.Task, error) {
	last := ""
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if t != nil {
			if s := aws.ToString(t.LastStatus); s != last && seen != nil {
				seen(t)
			}
			last = aws.ToString(t.LastStatus)
			if done(t) {
				return t, nil
			}
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-tick.C:
		}
		next, err := describeTask(ctx, c, cluster, arn)
		if err != nil {
			return t, err
		}
		t = next
	}
}

// describeTask describes one task; a missing one is an error.
func describeTask(ctx context.Context, c *ecs.Client, cluster, ref string) (*types.Task, error) {
	out, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: []string{ref},
		Include: []types.TaskField{types.TaskFieldTags}})
	if err != nil {
		return nil, err
	}
	if len(out.Tasks) == 0 {
		return nil, fmt.Errorf("task %s was not found in cluster %s", ref, cluster)
	}
	return &out.Tasks[0], nil
}

// parseVCPU turns vCPUs ("0.25", "1", "2vCPU") into ECS cpu units ("256").
func parseVCPU(s string) (string, error) {
	t := strings.TrimSpace(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "vcpu"))
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return "", fmt.Errorf("--cpu %q is not a number of vCPUs: use 0.25, 0.5, 1, 2, 4, 8 or 16", s)
	}
	units := v * 1024
	if units != float64(int64(units)) {
		return "", fmt.Errorf("--cpu %q is not a whole number of cpu units (1024 per vCPU): use 0.25, 0.5, 1, 2, 4, 8 or 16", s)
	}
	return strconv.FormatInt(int64(units), 10), nil
}

// parseMemory turns "0.5GB", "2GB", "2GiB", "512MiB" or "512" (MiB) into
// MiB ("512").
func parseMemory(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, suf := range []struct {
		s string
		m float64
	}{{"gib", 1024}, {"gb", 1024}, {"g", 1024}, {"mib", 1}, {"mb", 1}, {"m", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, suf.s)), suf.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return "", fmt.Errorf("--memory %q is not a size: use GB (\"0.5GB\", \"2GB\") or MiB (\"512\")", s)
	}
	mib := v * mult
	if mib != float64(int64(mib)) {
		return "", fmt.Errorf("--memory %q is not a whole number of MiB: use GB (\"0.5GB\", \"2GB\") or MiB (\"512\")", s)
	}
	return strconv.FormatInt(int64(mib), 10), nil
}

// parseEnv turns KEY=VALUE strings into ECS environment entries.
func parseEnv(vals []string) ([]types.KeyValuePair, error) {
	var out []types.KeyValuePair
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-e %q is not KEY=VALUE", v)
		}
		out = append(out, types.KeyValuePair{Name: aws.String(k), Value: aws.String(val)})
	}
	return out, nil
}

// familyForImage returns "run-" and the image's repository name:
// busybox:1.36 → run-busybox, ghcr.io/acme/web@sha256:… → run-acme-web.
func familyForImage(image string) string {
	ref := image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		parts = parts[1:]
	}
	if len(parts) > 1 && parts[0] == "library" {
		parts = parts[1:]
	}
	var b strings.Builder
	for _, r := range strings.Join(parts, "-") {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		name = "image"
	}
	family := "run-" + name
	if len(family) > 255 {
		family = family[:255]
	}
	return family
}

// shortID is the 8-character task ID prefix shown in status lines.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
