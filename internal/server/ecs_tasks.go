package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// MaxRunTaskCount is the most tasks one RunTask launches, as in ECS.
const MaxRunTaskCount = 10

// RunTask launches count tasks of a task definition. Each task takes a
// token of the launch bucket (LaunchRate); a RunTask the bucket cannot
// serve whole launches nothing and is refused with ThrottlingException.
func (s *Server) RunTask(ctx context.Context, in *api.RunTaskInput) (*api.RunTaskOutput, error) {
	count := int32(1)
	if in.Count != nil {
		count = *in.Count
	}
	if count < 1 || count > MaxRunTaskCount {
		return nil, errdefs.InvalidArgument("count %d is out of range: RunTask launches 1 to %d tasks", count, MaxRunTaskCount)
	}
	if in.LaunchType != "" && in.LaunchType != api.LaunchTypeFargate {
		return nil, errdefs.InvalidArgument("launchType %q is not supported: the accepted value is FARGATE", in.LaunchType)
	}
	if len(in.CapacityProviderStrategy) > 0 {
		for _, c := range in.CapacityProviderStrategy {
			if cp := deref(c.CapacityProvider); cp != "FARGATE" {
				return nil, errdefs.InvalidArgument("capacity provider %q is not supported: the accepted provider is FARGATE", cp)
			}
		}
	}
	if len(deref(in.StartedBy)) > 128 {
		return nil, errdefs.InvalidArgument("startedBy is %d characters long; at most 128 are accepted", len(deref(in.StartedBy)))
	}
	if len(deref(in.Group)) > 255 {
		return nil, errdefs.InvalidArgument("group is longer than 255 characters")
	}
	token := deref(in.ClientToken)
	if len(token) > 64 || strings.ContainsFunc(token, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return nil, errdefs.InvalidArgument("clientToken must be 1 to 64 printable ASCII characters; got %d characters", len(token))
	}
	cluster := clusterName(in.Cluster)
	// The cluster and the task definition are read at once: on a
	// distributed store each is a round trip.
	var cl *clusterRecord
	var clErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		cl, clErr = s.getCluster(ctx, cluster)
	}()
	rec, _, defErr := s.getTaskDef(ctx, deref(in.TaskDefinition))
	<-read
	if clErr != nil {
		return nil, clErr
	}
	if defErr != nil {
		return nil, defErr
	}
	def := &rec.Def
	if def.Status != api.TaskDefinitionStatusActive {
		return nil, clientException(errdefs.InvalidArgument(
			"TaskDefinition is inactive: %s was deregistered; run an ACTIVE revision", deref(def.TaskDefinitionArn)))
	}
	tags, err := tagsFromAPI(in.Tags)
	if err != nil {
		return nil, err
	}
	subnets, err := s.taskSubnets(in.NetworkConfiguration)
	if err != nil {
		return nil, err
	}
	template, err := s.resolveTask(def, in.Overrides)
	if err != nil {
		return nil, err
	}
	defTags, _ := tagsFromAPI(rec.Tags) // checked when the definition was registered
	if template.Runtime, err = task.ResolveRuntime(tags, defTags, cl.Tags); err != nil {
		return nil, err
	}
	template.Cluster = cluster
	template.Subnets = subnets
	template.StartedBy = deref(in.StartedBy)
	template.Group = deref(in.Group)
	template.Tags = tags
	if s.cfg.TaskDNS != nil {
		// Fargate rejects a task definition's dnsServers and
		// dnsSearchDomains, so there is nothing of the user's to keep.
		template.DNS = s.cfg.TaskDNS(cluster)
		if err := template.DNS.Validate(); err != nil {
			return nil, err
		}
	}
	if in.Overrides != nil {
		raw, err := json.Marshal(in.Overrides)
		if err != nil {
			return nil, err
		}
		template.Overrides = raw
	}

	now := s.cfg.Now()
	// Fargate's launch rate: the whole count or nothing, refused as AWS
	// does with ThrottlingException.
	if !s.launches.take(int(count), now) {
		s.metrics.throttled.WithLabelValues("launch").Inc()
		return nil, errThrottled
	}
	// The tasks are created at once: the store commits them together
	// instead of one write after another. Each comes out as a task or a
	// failure, in the order of the count.
	type launched struct {
		task    *api.Task
		failure *api.Failure
	}
	tasks := make([]*task.Task, count)
	for i := range tasks {
		id := newID()
		if token != "" {
			// The SDK sends the same token when it retries: a task's
			// ID comes from it, so a repeated call finds the tasks the
			// first one stored instead of starting more.
			id = tokenTaskID(cluster, token, int32(i))
		}
		t, err := task.New(template, id, s.taskARN(cluster, id), now)
		if err != nil {
			return nil, err
		}
		tasks[i] = t
	}
	results := make([]launched, count)
	var wg sync.WaitGroup
	for i, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev, err := putJSON(ctx, s.store, taskKey(t.ID), t, store.MustNotExist)
			if err != nil {
				var existing task.Task
				if token != "" && errdefs.IsAlreadyExists(err) {
					if _, gerr := getJSON(ctx, s.store, taskKey(t.ID), &existing); gerr == nil {
						results[i].task = ptr(s.taskOut(&existing))
						return
					}
				}
				results[i].failure = &api.Failure{Arn: ptr(t.ARN), Reason: ptr("ServerException"), Detail: ptr(err.Error())}
				return
			}
			s.tasks.wrote(t, rev)
			s.metrics.tasksLaunched.Inc()
			s.metrics.observeTask(t)
			results[i].task = ptr(s.taskOut(t))
		}()
	}
	wg.Wait()
	out := &api.RunTaskOutput{Tasks: []api.Task{}, Failures: []api.Failure{}}
	for _, r := range results {
		if r.task != nil {
			out.Tasks = append(out.Tasks, *r.task)
		} else {
			out.Failures = append(out.Failures, *r.failure)
		}
	}
	s.notify()
	return out, nil
}

// taskSubnets checks the awsvpc subnets of a RunTask.
func (s *Server) taskSubnets(nc *api.NetworkConfiguration) ([]string, error) {
	if nc == nil || nc.AwsvpcConfiguration == nil {
		return nil, nil
	}
	vpc := nc.AwsvpcConfiguration
	if vpc.AssignPublicIP == api.AssignPublicIPEnabled {
		return nil, errdefs.InvalidArgument("assignPublicIp ENABLED is not supported: subnets are private")
	}
	if len(vpc.Subnets) > 16 {
		return nil, errdefs.InvalidArgument("%d subnets given; at most 16 are accepted", len(vpc.Subnets))
	}
	for _, sn := range vpc.Subnets {
		if !slices.Contains(s.cfg.Subnets, sn) {
			return nil, errdefs.InvalidArgument("subnet %q is not known: the accepted subnets are %s", sn, strings.Join(s.cfg.Subnets, ", "))
		}
	}
	return slices.Clone(vpc.Subnets), nil
}

// resolveTask turns a task definition and RunTask's overrides into the
// template of its tasks: the containers and the provisioned size. It
// translates the wire shapes; the rules are the domain's (sizing's size
// table, task.CheckEphemeralStorage, Task.CheckReservations), whose errors
// it turns into ECS's (ClientException where ECS answers with one). Where
// and by whom the task runs, and its runtime, are the caller's.
func (s *Server) resolveTask(def *api.TaskDefinition, ov *api.TaskOverride) (*task.Task, error) {
	cpu, err := sizing.ParseECSCPU(deref(def.Cpu))
	if err != nil {
		return nil, err
	}
	mem, err := sizing.ParseECSMemory(deref(def.Memory))
	if err != nil {
		return nil, err
	}
	if ov != nil && ov.Cpu != nil {
		if cpu, err = sizing.ParseECSCPU(*ov.Cpu); err != nil {
			return nil, clientException(err)
		}
	}
	if ov != nil && ov.Memory != nil {
		if mem, err = sizing.ParseECSMemory(*ov.Memory); err != nil {
			return nil, clientException(err)
		}
	}
	if err := sizing.ValidateTask(cpu, mem); err != nil {
		return nil, clientException(err)
	}
	t := &task.Task{TaskDefinitionArn: deref(def.TaskDefinitionArn), Family: deref(def.Family),
		CPUUnits: cpu, MemoryMiB: mem, EphemeralStorageGiB: task.DefaultEphemeralStorageGiB}
	if err := validateOverrides(ov); err != nil {
		return nil, err
	}
	volumes, mounts, err := taskStorage(def.Volumes, def.ContainerDefinitions)
	if err != nil {
		return nil, err
	}
	t.Volumes = volumes
	if def.EphemeralStorage != nil {
		t.EphemeralStorageGiB = def.EphemeralStorage.SizeInGiB
	}
	if ov != nil && ov.EphemeralStorage != nil {
		es := ov.EphemeralStorage.SizeInGiB
		if err := task.CheckEphemeralStorage("overrides.ephemeralStorage.sizeInGiB", es); err != nil {
			return nil, err
		}
		t.EphemeralStorageGiB = es
	}
	overrides := map[string]*api.ContainerOverride{}
	if ov != nil {
		for i := range ov.ContainerOverrides {
			co := &ov.ContainerOverrides[i]
			name := deref(co.Name)
			found := false
			for _, c := range def.ContainerDefinitions {
				found = found || deref(c.Name) == name
			}
			if !found {
				return nil, errdefs.InvalidArgument("containerOverrides names container %q, which is not in %s", name, t.TaskDefinitionArn)
			}
			overrides[name] = co
		}
	}
	for _, cd := range def.ContainerDefinitions {
		// A definition stored before a field was refused is refused now,
		// rather than run without it.
		if err := validateContainerFields(&cd, func(format string, args ...any) error {
			return clientException(errdefs.InvalidArgument("container %q: "+format, append([]any{deref(cd.Name)}, args...)...))
		}); err != nil {
			return nil, err
		}
		c := task.Container{Name: deref(cd.Name), Image: deref(cd.Image), EntryPoint: cd.EntryPoint,
			Command: cd.Command, WorkingDir: deref(cd.WorkingDirectory), User: deref(cd.User),
			Essential: deref(cd.Essential), CPUUnits: int64(cd.Cpu),
			MountPoints: mounts[deref(cd.Name)], Security: containerSecurity(&cd),
			Nofile: containerNofile(&cd)}
		if cd.Memory != nil {
			c.MemoryMiB = int64(*cd.Memory)
		}
		if cd.StopTimeout != nil {
			c.StopTimeout, _ = task.ClampStopTimeout(*cd.StopTimeout)
		}
		for _, d := range cd.DependsOn {
			c.DependsOn = append(c.DependsOn, task.Dependency{Container: deref(d.ContainerName), Condition: d.Condition})
		}
		for _, sec := range cd.Secrets {
			c.Secrets = append(c.Secrets, task.Secret{Name: deref(sec.Name), ValueFrom: deref(sec.ValueFrom)})
		}
		if lc := cd.LogConfiguration; lc != nil && lc.LogDriver == task.LogDriverAWSLogs {
			c.Log, _ = task.ParseAWSLogs(lc.Options) // checked by validateContainerFields
		}
		for _, pm := range cd.PortMappings {
			if pm.ContainerPort == nil {
				continue // a port range: no single port to publish
			}
			proto := strings.ToLower(pm.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			c.Ports = append(c.Ports, task.Port{Name: deref(pm.Name), ContainerPort: *pm.ContainerPort, Protocol: proto})
		}
		if hc := cd.HealthCheck; hc != nil {
			c.HealthCheck = healthCheck(hc)
		}
		auth, err := s.registryAuth(&cd)
		if err != nil {
			return nil, err
		}
		c.RegistryAuth = auth
		if rc := cd.RepositoryCredentials; rc != nil && auth == nil {
			c.RegistryCredentialsFrom = deref(rc.CredentialsParameter)
		}
		env := map[string]string{}
		for _, kv := range cd.Environment {
			env[deref(kv.Name)] = deref(kv.Value)
		}
		if co := overrides[c.Name]; co != nil {
			if co.Command != nil {
				c.Command = co.Command
			}
			for _, kv := range co.Environment {
				if deref(kv.Name) == "" {
					return nil, errdefs.InvalidArgument("containerOverrides[%s].environment has an entry with no name", c.Name)
				}
				env[deref(kv.Name)] = deref(kv.Value)
			}
			if co.Cpu != nil {
				c.CPUUnits = int64(*co.Cpu)
			}
			if co.Memory != nil {
				c.MemoryMiB = int64(*co.Memory)
			}
		}
		if len(env) > 0 {
			c.Environment = env
		}
		t.Containers = append(t.Containers, c)
	}
	if err := t.CheckReservations(); err != nil {
		return nil, clientException(err)
	}
	return t, nil
}

// healthCheck turns an ECS health check into the task's, with ECS's
// defaults: every 30 s, 5 s timeout, 3 retries, no start period.
func healthCheck(hc *api.HealthCheck) *task.HealthCheck {
	secs := func(p *int32, def int32) time.Duration {
		if p == nil || *p <= 0 {
			return time.Duration(def) * time.Second
		}
		return time.Duration(*p) * time.Second
	}
	out := &task.HealthCheck{Command: hc.Command, Interval: secs(hc.Interval, 30), Timeout: secs(hc.Timeout, 5),
		Retries: 3, StartPeriod: secs(hc.StartPeriod, 0)}
	if hc.Retries != nil && *hc.Retries > 0 {
		out.Retries = int(*hc.Retries)
	}
	return out
}

// registryAuth resolves the credentials to pull a container's image:
// repositoryCredentials names a credential configured on the server, or
// else a secret of the secrets store (nil is returned: the host's agent
// reads it when the task starts); otherwise the execution role's
// credential for the image's registry host is used, if any.
func (s *Server) registryAuth(cd *api.ContainerDefinition) (*task.RegistryAuth, error) {
	if rc := cd.RepositoryCredentials; rc != nil {
		name := deref(rc.CredentialsParameter)
		if strings.HasPrefix(name, "arn:") {
			// arn:aws:secretsmanager:<region>:<account>:secret:<name>
			name = name[strings.LastIndexAny(name, ":/")+1:]
		}
		if a, ok := s.cfg.RegistryCredentials[name]; ok {
			return &a, nil
		}
		if s.secrets != nil && strings.HasPrefix(deref(rc.CredentialsParameter), "arn:aws:secretsmanager:") {
			return nil, nil
		}
		known := make([]string, 0, len(s.cfg.RegistryCredentials))
		for k := range s.cfg.RegistryCredentials {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, clientException(errdefs.InvalidArgument(
			"container %q: repositoryCredentials %q names no registry credential configured on the server (configured: %s) and is not a Secrets Manager secret's ARN",
			deref(cd.Name), deref(rc.CredentialsParameter), strings.Join(known, ", ")))
	}
	host := registryHost(deref(cd.Image))
	if a, ok := s.cfg.RegistryCredentials[host]; ok {
		return &a, nil
	}
	return nil, nil
}

// registryHost returns the registry part of an image reference.
func registryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "index.docker.io"
}

// taskOut renders a task in its ECS shape.
func (s *Server) taskOut(t *task.Task) api.Task {
	out := api.Task{
		TaskArn:            ptr(t.ARN),
		ClusterArn:         ptr(s.clusterARN(t.Cluster)),
		TaskDefinitionArn:  ptr(t.TaskDefinitionArn),
		LastStatus:         ptr(string(t.LastStatus)),
		DesiredStatus:      ptr(string(t.DesiredStatus)),
		Cpu:                ptr(strconv.FormatInt(t.CPUUnits, 10)),
		Memory:             ptr(strconv.FormatInt(t.MemoryMiB, 10)),
		LaunchType:         api.LaunchTypeFargate,
		PlatformVersion:    ptr("1.4.0"),
		PlatformFamily:     ptr("Linux"),
		Version:            t.Version,
		CreatedAt:          api.NewTimestamp(t.CreatedAt),
		ConnectivityAt:     api.NewTimestamp(t.ConnectivityAt),
		PullStartedAt:      api.NewTimestamp(t.PullStartedAt),
		PullStoppedAt:      api.NewTimestamp(t.PullStoppedAt),
		StartedAt:          api.NewTimestamp(t.StartedAt),
		StoppingAt:         api.NewTimestamp(t.StoppingAt),
		ExecutionStoppedAt: api.NewTimestamp(t.ExecutionStoppedAt),
		StoppedAt:          api.NewTimestamp(t.StoppedAt),
		StopCode:           t.StopCode,
		EphemeralStorage:   &api.EphemeralStorage{SizeInGiB: t.EphemeralStorageGiB},
		Tags:               orEmpty(tagsToAPI(t.Tags)),
		HealthStatus:       api.HealthStatusUnknown,
		Containers:         []api.Container{},
	}
	if !t.ConnectivityAt.IsZero() {
		out.Connectivity = api.ConnectivityConnected
	}
	if t.StoppedReason != "" {
		out.StoppedReason = ptr(t.StoppedReason)
	}
	if t.StartedBy != "" {
		out.StartedBy = ptr(t.StartedBy)
	}
	if t.Group != "" {
		out.Group = ptr(t.Group)
	}
	out.Overrides = overridesOut(t.Overrides)
	runtime := t.Runtime
	if runtime != "" {
		out.Attributes = append(out.Attributes, api.Attribute{Name: ptr(task.TagRuntime), Value: ptr(runtime)})
	}
	if t.HostID != "" {
		out.Attributes = append(out.Attributes, api.Attribute{Name: ptr("vessel:host"), Value: ptr(t.HostID)})
	}
	if t.PullProgress != "" && t.LastStatus == task.StatusActivating {
		out.Attributes = append(out.Attributes, api.Attribute{Name: ptr("vessel:pull-progress"), Value: ptr(t.PullProgress)})
	}
	out.HealthStatus = t.Health()
	// The awsvpc network interface, as ECS shows it.
	eni := api.Attachment{ID: ptr(t.ID[:8] + "-eni"), Type: ptr("ElasticNetworkInterface"), Status: ptr(attachmentStatus(t))}
	if t.Subnet != "" {
		eni.Details = append(eni.Details, api.KeyValuePair{Name: ptr("subnetId"), Value: ptr(t.Subnet)})
	}
	if t.IP != "" {
		eni.Details = append(eni.Details, api.KeyValuePair{Name: ptr("privateIPv4Address"), Value: ptr(t.IP)})
	}
	out.Attachments = []api.Attachment{eni}
	for _, c := range t.Containers {
		ac := api.Container{
			ContainerArn: ptr(s.containerARN(t.Cluster, t.ID, c.Name)),
			TaskArn:      ptr(t.ARN),
			Name:         ptr(c.Name),
			Image:        ptr(c.Image),
			LastStatus:   ptr(string(c.LastStatus)),
			HealthStatus: api.HealthStatusUnknown,
			Cpu:          ptr(strconv.FormatInt(c.CPUUnits, 10)),

			NetworkBindings:   []api.NetworkBinding{},
			NetworkInterfaces: []api.NetworkInterface{},
		}
		if c.MemoryMiB > 0 {
			ac.Memory = ptr(strconv.FormatInt(c.MemoryMiB, 10))
		}
		if c.ExitCode != nil {
			ac.ExitCode = ptr(int32(*c.ExitCode))
		}
		if c.Reason != "" {
			ac.Reason = ptr(c.Reason)
		}
		if c.RuntimeID != "" {
			ac.RuntimeID = ptr(c.RuntimeID)
		}
		if c.ImageDigest != "" {
			ac.ImageDigest = ptr(c.ImageDigest)
		}
		if c.HealthStatus != "" {
			ac.HealthStatus = c.HealthStatus
		}
		if t.IP != "" {
			ac.NetworkInterfaces = []api.NetworkInterface{{AttachmentID: eni.ID, PrivateIpv4Address: ptr(t.IP)}}
		}
		out.Containers = append(out.Containers, ac)
	}
	return out
}

func attachmentStatus(t *task.Task) string {
	switch {
	case t.LastStatus == task.StatusProvisioning:
		return "PRECREATED"
	case t.LastStatus == task.StatusStopped:
		return "DELETED"
	case t.LastStatus.Before(task.StatusDeprovisioning):
		return "ATTACHED"
	}
	return "DETACHING"
}

// taskID resolves a task ID or ARN.
func taskID(ref string) string { return lastSegment(ref) }

// StopTask asks a task to stop: desiredStatus becomes STOPPED and the host
// agent walks it down (SIGTERM, then SIGKILL after the stop timeout).
func (s *Server) StopTask(ctx context.Context, in *api.StopTaskInput) (*api.StopTaskOutput, error) {
	ref := deref(in.Task)
	if ref == "" {
		return nil, errdefs.InvalidArgument("task is required: give a task ID or ARN")
	}
	reason := deref(in.Reason)
	if err := task.ValidateStopReason(reason); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "Task stopped by user"
	}
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	id := taskID(ref)
	t, err := s.updateTask(ctx, id, func(t *task.Task) (bool, error) {
		if t.Cluster != cluster {
			return false, errdefs.NotFound("task %s is not in cluster %s", id, cluster)
		}
		return t.RequestStop(task.StopCodeUserInitiated, reason, s.cfg.Now()), nil
	})
	if errdefs.IsNotFound(err) {
		return nil, errdefs.InvalidArgument("The referenced task was not found: %s in cluster %s", ref, cluster)
	}
	if err != nil {
		return nil, err
	}
	s.notify()
	out := s.taskOut(t)
	return &api.StopTaskOutput{Task: &out}, nil
}

// DescribeTasks describes up to 100 tasks; unknown ones are failures.
func (s *Server) DescribeTasks(ctx context.Context, in *api.DescribeTasksInput) (*api.DescribeTasksOutput, error) {
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		return nil, errdefs.InvalidArgument("tasks has %d entries; 1 to 100 task IDs or ARNs are accepted", len(in.Tasks))
	}
	if err := checkInclude(in.Include, "TAGS"); err != nil {
		return nil, err
	}
	cluster := clusterName(in.Cluster)
	withTags := includesTags(in.Include)
	out := &api.DescribeTasksOutput{Tasks: []api.Task{}, Failures: []api.Failure{}}
	// A task found in the cluster says that the cluster exists: the
	// cluster is read only when one is not (ClusterNotFoundException, or
	// MISSING for the task).
	clusterChecked := false
	for _, ref := range in.Tasks {
		var t task.Task
		_, err := getJSON(ctx, s.store, taskKey(taskID(ref)), &t)
		if errdefs.IsNotFound(err) || (err == nil && t.Cluster != cluster) {
			if !clusterChecked {
				if _, err := s.getCluster(ctx, cluster); err != nil {
					return nil, err
				}
				clusterChecked = true
			}
			out.Failures = append(out.Failures, api.Failure{Arn: ptr(ref), Reason: ptr("MISSING")})
			continue
		}
		if err != nil {
			return nil, err
		}
		at := s.taskOut(&t)
		if !withTags {
			at.Tags = []api.Tag{} // not included: ECS answers "tags": []
		}
		out.Tasks = append(out.Tasks, at)
	}
	return out, nil
}

// ListTasks lists task ARNs of a cluster, newest first, with ECS's filters.
func (s *Server) ListTasks(ctx context.Context, in *api.ListTasksInput) (*api.ListTasksOutput, error) {
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	desired := in.DesiredStatus
	switch desired {
	case "", api.DesiredStatusRunning, api.DesiredStatusPending, api.DesiredStatusStopped:
	default:
		return nil, errdefs.InvalidArgument("desiredStatus %q is not valid: accepted values are RUNNING, PENDING, STOPPED", desired)
	}
	if in.LaunchType != "" && in.LaunchType != api.LaunchTypeFargate {
		return nil, errdefs.InvalidArgument("launchType %q is not valid here: the accepted value is FARGATE", in.LaunchType)
	}
	if in.ContainerInstance != nil {
		return nil, errdefs.InvalidArgument("containerInstance is not supported: Fargate tasks run on no container instance")
	}
	tasks, _, err := s.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	family := deref(in.Family)
	if family != "" && strings.HasPrefix(family, "arn:") {
		family, _, _ = parseTaskDefRef(family)
	}
	startedBy := deref(in.StartedBy)
	service := deref(in.ServiceName)
	var picked []task.Task
	for _, t := range tasks {
		if t.Cluster != cluster {
			continue
		}
		if family != "" && t.Family != family {
			continue
		}
		if startedBy != "" && t.StartedBy != startedBy {
			continue
		}
		if service != "" && t.Group != "service:"+service {
			continue
		}
		switch desired {
		case "", api.DesiredStatusRunning:
			// ECS lists tasks whose desired status is RUNNING by default.
			if t.DesiredStatus != task.StatusRunning {
				continue
			}
		case api.DesiredStatusPending:
			if t.DesiredStatus != task.StatusRunning || !t.LastStatus.Before(task.StatusRunning) {
				continue
			}
		case api.DesiredStatusStopped:
			if t.DesiredStatus != task.StatusStopped {
				continue
			}
		}
		picked = append(picked, t)
	}
	// Page over keys that sort newest first and stay stable across pages.
	keys := make([]string, len(picked))
	arns := map[string]string{}
	for i, t := range picked {
		k := strconv.FormatInt(1<<62-t.CreatedAt.UnixNano(), 10) + "/" + t.ID
		keys[i] = k
		arns[k] = t.ARN
	}
	sort.Strings(keys)
	pg, next, err := page(keys, in.NextToken, in.MaxResults, 100)
	if err != nil {
		return nil, err
	}
	out := &api.ListTasksOutput{TaskArns: []string{}, NextToken: next}
	for _, k := range pg {
		out.TaskArns = append(out.TaskArns, arns[k])
	}
	return out, nil
}

// tokenTaskID is the ID of the i-th task of a RunTask with clientToken
// token in cluster: 32 hex digits, as newID's.
func tokenTaskID(cluster, token string, i int32) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("runtask\x00%s\x00%s\x00%d", cluster, token, i)))
	return hex.EncodeToString(h[:16])
}
