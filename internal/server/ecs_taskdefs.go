package server

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

var (
	familyRE        = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
)

// MaxContainersPerTask is ECS's limit of containers in a task definition.
const MaxContainersPerTask = 10

// Ephemeral storage bounds, in GiB.
const (
	DefaultEphemeralStorageGiB = task.DefaultEphemeralStorageGiB
	MinEphemeralStorageGiB     = task.MinEphemeralStorageGiB
	MaxEphemeralStorageGiB     = task.MaxEphemeralStorageGiB
)

// validateTaskDefinition checks a registration against Fargate's rules and
// returns the task's cpu units and memory MiB.
func validateTaskDefinition(in *api.RegisterTaskDefinitionInput) (int64, int64, error) {
	family := deref(in.Family)
	if !familyRE.MatchString(family) {
		return 0, 0, errdefs.InvalidArgument("family %q is not valid: use 1 to 255 letters, digits, hyphens and underscores", family)
	}
	if in.NetworkMode != "" && in.NetworkMode != api.NetworkModeAwsvpc {
		return 0, 0, clientException(errdefs.InvalidArgument(
			"networkMode %q is not supported: tasks run with networkMode awsvpc (one private IP per task)", in.NetworkMode))
	}
	for _, c := range in.RequiresCompatibilities {
		if c != api.CompatibilityFargate {
			return 0, 0, clientException(errdefs.InvalidArgument(
				"requiresCompatibilities %q is not supported: the accepted value is FARGATE", c))
		}
	}
	if err := validateTaskFields(in); err != nil {
		return 0, 0, err
	}
	if in.Cpu == nil || in.Memory == nil {
		return 0, 0, clientException(errdefs.InvalidArgument(
			"task-level cpu and memory are required, e.g. cpu \"256\" with memory \"512\"; valid pairs follow the Fargate size table"))
	}
	cpu, err := sizing.ParseECSCPU(*in.Cpu)
	if err != nil {
		return 0, 0, clientException(err)
	}
	mem, err := sizing.ParseECSMemory(*in.Memory)
	if err != nil {
		return 0, 0, clientException(err)
	}
	if err := sizing.ValidateTask(cpu, mem); err != nil {
		return 0, 0, clientException(err)
	}
	if es := in.EphemeralStorage; es != nil && (es.SizeInGiB < MinEphemeralStorageGiB || es.SizeInGiB > MaxEphemeralStorageGiB) {
		return 0, 0, errdefs.InvalidArgument("ephemeralStorage.sizeInGiB %d is out of range: accepted values are %d..%d (the default is %d)",
			es.SizeInGiB, MinEphemeralStorageGiB, MaxEphemeralStorageGiB, DefaultEphemeralStorageGiB)
	}
	if err := validateContainers(in.ContainerDefinitions, cpu, mem, in.Volumes); err != nil {
		return 0, 0, err
	}
	return cpu, mem, nil
}

func validateContainers(defs []api.ContainerDefinition, cpu, mem int64, volumes []api.Volume) error {
	if len(defs) == 0 || len(defs) > MaxContainersPerTask {
		return errdefs.InvalidArgument("containerDefinitions has %d containers; 1 to %d are accepted", len(defs), MaxContainersPerTask)
	}
	names := map[string]bool{}
	for _, c := range defs {
		names[deref(c.Name)] = true
	}
	if len(names) != len(defs) {
		return errdefs.InvalidArgument("container names must be unique within a task definition")
	}
	volumeNames := map[string]bool{}
	for _, v := range volumes {
		volumeNames[deref(v.Name)] = true
	}
	var cpuSum, reserveSum int64
	essential := 0
	for _, c := range defs {
		name := deref(c.Name)
		bad := func(format string, args ...any) error {
			return clientException(errdefs.InvalidArgument("container %q: "+format, append([]any{name}, args...)...))
		}
		if !containerNameRE.MatchString(name) {
			return errdefs.InvalidArgument("container name %q is not valid: use 1 to 255 letters, digits, hyphens and underscores", name)
		}
		if deref(c.Image) == "" {
			return bad("image is required")
		}
		if err := validateContainerFields(&c, bad); err != nil {
			return err
		}
		for _, pm := range c.PortMappings {
			if pm.HostPort != nil && pm.ContainerPort != nil && *pm.HostPort != *pm.ContainerPort {
				return bad("hostPort %d must equal containerPort %d with networkMode awsvpc", *pm.HostPort, *pm.ContainerPort)
			}
		}
		if c.Cpu < 0 {
			return bad("cpu %d must not be negative", c.Cpu)
		}
		cpuSum += int64(c.Cpu)
		if c.Memory != nil {
			if *c.Memory <= 0 || int64(*c.Memory) > mem {
				return bad("memory %d MiB must be between 1 and the task's memory (%d MiB)", *c.Memory, mem)
			}
		}
		if c.MemoryReservation != nil {
			if *c.MemoryReservation <= 0 {
				return bad("memoryReservation %d must be positive", *c.MemoryReservation)
			}
			if c.Memory != nil && *c.MemoryReservation > *c.Memory {
				return bad("memoryReservation %d MiB must not exceed memory %d MiB", *c.MemoryReservation, *c.Memory)
			}
			reserveSum += int64(*c.MemoryReservation)
		} else if c.Memory != nil {
			reserveSum += int64(*c.Memory)
		}
		if c.StopTimeout != nil {
			if _, err := task.ClampStopTimeout(*c.StopTimeout); err != nil {
				return bad("%v", err)
			}
		}
		if c.Essential == nil || *c.Essential {
			essential++
		}
		for _, d := range c.DependsOn {
			dep := deref(d.ContainerName)
			if !names[dep] || dep == name {
				return bad("dependsOn names container %q, which is not another container of this task definition", dep)
			}
			switch d.Condition {
			case api.ContainerConditionStart, api.ContainerConditionComplete, api.ContainerConditionSuccess, api.ContainerConditionHealthy:
			default:
				return bad("dependsOn condition %q is not valid: accepted conditions are START, COMPLETE, SUCCESS, HEALTHY", d.Condition)
			}
		}
		if hc := c.HealthCheck; hc != nil {
			if len(hc.Command) < 2 || (hc.Command[0] != "CMD" && hc.Command[0] != "CMD-SHELL") {
				return bad("healthCheck.command must start with \"CMD\" or \"CMD-SHELL\" followed by the command, e.g. [\"CMD-SHELL\", \"curl -f http://localhost/\"]")
			}
		}
		for _, mp := range c.MountPoints {
			if !volumeNames[deref(mp.SourceVolume)] {
				return bad("mountPoints names volume %q, which the task definition does not declare", deref(mp.SourceVolume))
			}
		}
	}
	if _, _, err := taskStorage(volumes, defs); err != nil {
		return err
	}
	if essential == 0 {
		return clientException(errdefs.InvalidArgument("at least one container must be essential (essential defaults to true)"))
	}
	if cpuSum > cpu {
		return clientException(errdefs.InvalidArgument(
			"the containers' cpu adds up to %d units, more than the task's %d", cpuSum, cpu))
	}
	if reserveSum > mem {
		return clientException(errdefs.InvalidArgument(
			"the containers' memory reservations add up to %d MiB, more than the task's %d MiB", reserveSum, mem))
	}
	return nil
}

// RegisterTaskDefinition registers a new revision of a family.
func (s *Server) RegisterTaskDefinition(ctx context.Context, in *api.RegisterTaskDefinitionInput) (*api.RegisterTaskDefinitionOutput, error) {
	cpu, mem, err := validateTaskDefinition(in)
	if err != nil {
		return nil, err
	}
	if _, err := tagsFromAPI(in.Tags); err != nil {
		return nil, err
	}
	family := *in.Family
	containers := make([]api.ContainerDefinition, len(in.ContainerDefinitions))
	copy(containers, in.ContainerDefinitions)
	for i := range containers {
		if containers[i].Essential == nil {
			containers[i].Essential = ptr(true)
		}
	}
	for attempt := 0; attempt < 20; attempt++ {
		rev, err := s.latestRevision(ctx, family)
		if err != nil {
			return nil, err
		}
		rev++
		def := api.TaskDefinition{
			TaskDefinitionArn:       ptr(s.taskDefARN(family, rev)),
			ContainerDefinitions:    containers,
			Family:                  ptr(family),
			TaskRoleArn:             in.TaskRoleArn,
			ExecutionRoleArn:        in.ExecutionRoleArn,
			NetworkMode:             api.NetworkModeAwsvpc,
			Revision:                rev,
			Volumes:                 in.Volumes,
			Status:                  api.TaskDefinitionStatusActive,
			Compatibilities:         []string{api.CompatibilityFargate},
			RequiresCompatibilities: in.RequiresCompatibilities,
			Cpu:                     ptr(strconv.FormatInt(cpu, 10)),
			Memory:                  ptr(strconv.FormatInt(mem, 10)),
			RuntimePlatform:         in.RuntimePlatform,
			EphemeralStorage:        in.EphemeralStorage,
			RegisteredAt:            api.NewTimestamp(s.cfg.Now()),
			RegisteredBy:            ptr(s.arn("iam", "root")),
		}
		_, err = putJSON(ctx, s.store, taskDefKey(family, rev), taskDefRecord{Def: def, Tags: in.Tags}, store.MustNotExist)
		if errdefs.IsAlreadyExists(err) {
			continue // another registration took this revision
		}
		if err != nil {
			return nil, err
		}
		return &api.RegisterTaskDefinitionOutput{TaskDefinition: taskDefOut(def), Tags: in.Tags}, nil
	}
	return nil, errdefs.Conflict("too many concurrent registrations of family %s; try again", family)
}

func (s *Server) latestRevision(ctx context.Context, family string) (int32, error) {
	kvs, _, err := s.store.List(ctx, prefixTaskDefs+family+"/")
	if err != nil {
		return 0, err
	}
	if len(kvs) == 0 {
		return 0, nil
	}
	last := kvs[len(kvs)-1].Key
	n, err := strconv.ParseInt(last[strings.LastIndex(last, "/")+1:], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad task definition key %s: %w", last, err)
	}
	return int32(n), nil
}

// parseTaskDefRef splits "family", "family:rev" or an ARN; rev 0 = latest.
func parseTaskDefRef(ref string) (string, int32, error) {
	if ref == "" {
		return "", 0, errdefs.InvalidArgument("taskDefinition is required: give a family, family:revision or an ARN")
	}
	if strings.HasPrefix(ref, "arn:") {
		i := strings.Index(ref, ":task-definition/")
		if i < 0 {
			return "", 0, errdefs.InvalidArgument("%q is not a task definition ARN", ref)
		}
		ref = ref[i+len(":task-definition/"):]
	}
	family, revStr, hasRev := strings.Cut(ref, ":")
	if !familyRE.MatchString(family) {
		return "", 0, errdefs.InvalidArgument("task definition family %q is not valid", family)
	}
	if !hasRev {
		return family, 0, nil
	}
	rev, err := strconv.ParseInt(revStr, 10, 32)
	if err != nil || rev < 1 {
		return "", 0, errdefs.InvalidArgument("task definition revision %q is not valid: use a positive integer, as in %s:1", revStr, family)
	}
	return family, int32(rev), nil
}

// getTaskDef resolves a reference; "family" alone is the latest ACTIVE
// revision. Unknown ones are ClientException, as in ECS.
func (s *Server) getTaskDef(ctx context.Context, ref string) (*taskDefRecord, int64, error) {
	family, rev, err := parseTaskDefRef(ref)
	if err != nil {
		return nil, 0, err
	}
	if rev == 0 {
		defs, revs, _, err := listJSON[taskDefRecord](ctx, s.store, prefixTaskDefs+family+"/")
		if err != nil {
			return nil, 0, err
		}
		for i := len(defs) - 1; i >= 0; i-- {
			if defs[i].Def.Status == api.TaskDefinitionStatusActive {
				return &defs[i], revs[i], nil
			}
		}
		return nil, 0, clientException(errdefs.NotFound(
			"Unable to describe task definition: family %q has no ACTIVE revision (register one with RegisterTaskDefinition)", family))
	}
	var rec taskDefRecord
	srev, err := getJSON(ctx, s.store, taskDefKey(family, rev), &rec)
	if errdefs.IsNotFound(err) {
		return nil, 0, clientException(errdefs.NotFound("Unable to describe task definition: %s:%d does not exist", family, rev))
	}
	if err != nil {
		return nil, 0, err
	}
	return &rec, srev, nil
}

// checkInclude rejects include values outside the operation's enum (the
// model's ClusterField, TaskField, ServiceField or TaskDefinitionField).
func checkInclude(include []string, accepted ...string) error {
	for _, i := range include {
		if !slices.Contains(accepted, i) {
			return errdefs.InvalidArgument("include value %q is not accepted: accepted values are %s", i, strings.Join(accepted, ", "))
		}
	}
	return nil
}

func includesTags(include []string) bool {
	for _, i := range include {
		if i == "TAGS" {
			return true
		}
	}
	return false
}

// DescribeTaskDefinition describes one revision.
func (s *Server) DescribeTaskDefinition(ctx context.Context, in *api.DescribeTaskDefinitionInput) (*api.DescribeTaskDefinitionOutput, error) {
	if err := checkInclude(in.Include, "TAGS"); err != nil {
		return nil, err
	}
	rec, _, err := s.getTaskDef(ctx, deref(in.TaskDefinition))
	if err != nil {
		return nil, err
	}
	// Without include=TAGS the tags are not included: ECS answers "tags": [].
	out := &api.DescribeTaskDefinitionOutput{TaskDefinition: taskDefOut(rec.Def), Tags: []api.Tag{}}
	if includesTags(in.Include) {
		out.Tags = rec.Tags
		if out.Tags == nil {
			out.Tags = []api.Tag{}
		}
	}
	return out, nil
}

func statusFilter(status string, allowAll bool) (func(string) bool, error) {
	switch status {
	case "", api.TaskDefinitionStatusActive:
		return func(s string) bool { return s == api.TaskDefinitionStatusActive }, nil
	case api.TaskDefinitionStatusInactive:
		return func(s string) bool { return s == api.TaskDefinitionStatusInactive }, nil
	case "ALL":
		if allowAll {
			return func(string) bool { return true }, nil
		}
	}
	accepted := "ACTIVE, INACTIVE"
	if allowAll {
		accepted += ", ALL"
	}
	return nil, errdefs.InvalidArgument("status %q is not valid: accepted values are %s", status, accepted)
}

// ListTaskDefinitions lists revision ARNs by family then revision.
func (s *Server) ListTaskDefinitions(ctx context.Context, in *api.ListTaskDefinitionsInput) (*api.ListTaskDefinitionsOutput, error) {
	keep, err := statusFilter(in.Status, false)
	if err != nil {
		return nil, err
	}
	if in.Sort != "" && in.Sort != "ASC" && in.Sort != "DESC" {
		return nil, errdefs.InvalidArgument("sort %q is not valid: accepted values are ASC, DESC", in.Sort)
	}
	prefix := prefixTaskDefs
	if p := deref(in.FamilyPrefix); p != "" {
		prefix += p
	}
	defs, _, _, err := listJSON[taskDefRecord](ctx, s.store, prefix)
	if err != nil {
		return nil, err
	}
	// Page over sortable keys (family, zero-padded revision), return ARNs.
	byKey := map[string]string{}
	keys := []string{}
	for _, d := range defs {
		if !keep(d.Def.Status) {
			continue
		}
		k := fmt.Sprintf("%s:%010d", deref(d.Def.Family), d.Def.Revision)
		byKey[k] = deref(d.Def.TaskDefinitionArn)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if in.Sort == "DESC" {
		// Tokens still work: reverse keys by negating the order with a prefix.
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
		rev := map[string]string{}
		rkeys := make([]string, len(keys))
		for i, k := range keys {
			rk := fmt.Sprintf("%010d", i)
			rev[rk] = byKey[k]
			rkeys[i] = rk
		}
		byKey, keys = rev, rkeys
	}
	pg, next, err := page(keys, in.NextToken, in.MaxResults, 100)
	if err != nil {
		return nil, err
	}
	out := &api.ListTaskDefinitionsOutput{TaskDefinitionArns: []string{}, NextToken: next}
	for _, k := range pg {
		out.TaskDefinitionArns = append(out.TaskDefinitionArns, byKey[k])
	}
	return out, nil
}

// ListTaskDefinitionFamilies lists family names.
func (s *Server) ListTaskDefinitionFamilies(ctx context.Context, in *api.ListTaskDefinitionFamiliesInput) (*api.ListTaskDefinitionFamiliesOutput, error) {
	keep, err := statusFilter(in.Status, true)
	if err != nil {
		return nil, err
	}
	prefix := prefixTaskDefs + deref(in.FamilyPrefix)
	defs, _, _, err := listJSON[taskDefRecord](ctx, s.store, prefix)
	if err != nil {
		return nil, err
	}
	// A family is ACTIVE when any revision is; INACTIVE when none is.
	active := map[string]bool{}
	for _, d := range defs {
		f := deref(d.Def.Family)
		active[f] = active[f] || d.Def.Status == api.TaskDefinitionStatusActive
	}
	names := []string{}
	for f, a := range active {
		st := api.TaskDefinitionStatusInactive
		if a {
			st = api.TaskDefinitionStatusActive
		}
		if keep(st) {
			names = append(names, f)
		}
	}
	sort.Strings(names)
	pg, next, err := page(names, in.NextToken, in.MaxResults, 100)
	if err != nil {
		return nil, err
	}
	return &api.ListTaskDefinitionFamiliesOutput{Families: pg, NextToken: next}, nil
}

// DeregisterTaskDefinition marks a revision INACTIVE; tasks already
// running from it are not affected.
func (s *Server) DeregisterTaskDefinition(ctx context.Context, in *api.DeregisterTaskDefinitionInput) (*api.DeregisterTaskDefinitionOutput, error) {
	family, rev, err := parseTaskDefRef(deref(in.TaskDefinition))
	if err != nil {
		return nil, err
	}
	if rev == 0 {
		return nil, errdefs.InvalidArgument("taskDefinition %q must name a revision, as in %s:1", deref(in.TaskDefinition), family)
	}
	for {
		rec, srev, err := s.getTaskDef(ctx, fmt.Sprintf("%s:%d", family, rev))
		if err != nil {
			return nil, err
		}
		if rec.Def.Status == api.TaskDefinitionStatusInactive {
			return &api.DeregisterTaskDefinitionOutput{TaskDefinition: taskDefOut(rec.Def)}, nil
		}
		rec.Def.Status = api.TaskDefinitionStatusInactive
		rec.Def.DeregisteredAt = api.NewTimestamp(s.cfg.Now())
		_, err = putJSON(ctx, s.store, taskDefKey(family, rev), rec, srev)
		if errdefs.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &api.DeregisterTaskDefinitionOutput{TaskDefinition: taskDefOut(rec.Def)}, nil
	}
}
