package server

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/service"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// ECS services: CreateService, UpdateService, DeleteService,
// DescribeServices and ListServices. The service scheduler that keeps their
// tasks running is in service_scheduler.go.

// Service limits and defaults, as ECS's.
const (
	// MaxServiceDesiredCount is the most tasks one service may ask for
	// (ECS's tasks-per-service quota).
	MaxServiceDesiredCount = 5000
	// DefaultMinimumHealthyPercent and DefaultMaximumPercent bound a
	// rolling deployment unless deploymentConfiguration says otherwise.
	DefaultMinimumHealthyPercent = 100
	DefaultMaximumPercent        = 200
	// ServiceGroupPrefix starts the group of every task of a service:
	// "service:<name>", as in ECS.
	ServiceGroupPrefix = service.GroupPrefix
)

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// serviceRecord is a stored service with its deployments and events: the
// model and its planner are internal/service's.
type serviceRecord = service.Record

func serviceNotFound(name, cluster string) error {
	return &apiError{code: api.ECSServiceNotFoundException, kind: errdefs.ErrNotFound,
		msg: "Service not found: " + name + " in cluster " + cluster + " (create it with CreateService)"}
}

func serviceNotActive(name, status string) error {
	return &apiError{code: api.ECSServiceNotActiveException, kind: errdefs.ErrConflict,
		msg: "Service was not ACTIVE: " + name + " is " + status + "; create it again with CreateService"}
}

// getService reads a service and its revision.
func (s *Server) getService(ctx context.Context, cluster, name string) (*serviceRecord, int64, error) {
	var rec serviceRecord
	rev, err := getJSON(ctx, s.store, serviceKey(cluster, name), &rec)
	if errdefs.IsNotFound(err) {
		return nil, 0, serviceNotFound(name, cluster)
	}
	if err != nil {
		return nil, 0, err
	}
	return &rec, rev, nil
}

// updateService applies fn to the stored service with a revision check,
// retrying on conflicting writes.
func (s *Server) updateService(ctx context.Context, cluster, name string, fn func(r *serviceRecord) error) (*serviceRecord, error) {
	for attempt := 0; ; attempt++ {
		rec, rev, err := s.getService(ctx, cluster, name)
		if err != nil {
			return nil, err
		}
		if err := fn(rec); err != nil {
			return nil, err
		}
		_, err = putJSON(ctx, s.store, serviceKey(cluster, name), rec, rev)
		if errdefs.IsConflict(err) && attempt < 50 {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.notify()
		return rec, nil
	}
}

// serviceName resolves a service name or ARN
// (arn:aws:ecs:<region>:<account>:service/<cluster>/<name>).
func serviceName(ref string) string { return lastSegment(ref) }

// checkServiceFeatures refuses what a Fargate service on Vessel does not
// offer, saying what is accepted.
func checkServiceFeatures(launchType string, cps []api.CapacityProviderStrategyItem, lbs []api.LoadBalancer,
	regs []api.ServiceRegistry, pcs []api.PlacementConstraint, pss []api.PlacementStrategy, connect []byte, platform *string) error {
	if launchType != "" && launchType != api.LaunchTypeFargate {
		return errdefs.InvalidArgument("launchType %q is not supported: the accepted value is FARGATE", launchType)
	}
	if launchType != "" && len(cps) > 0 {
		return errdefs.InvalidArgument("Specifying both a launch type and capacity provider strategy is not supported: give one of them")
	}
	for _, c := range cps {
		if cp := deref(c.CapacityProvider); cp != "FARGATE" {
			return errdefs.InvalidArgument("capacity provider %q is not supported: the accepted provider is FARGATE", cp)
		}
	}
	if len(lbs) > 0 {
		return errdefs.InvalidArgument("loadBalancers are not supported: Vessel has no load balancers; reach a service's tasks by their IPs")
	}
	if len(regs) > 0 {
		return errdefs.InvalidArgument("serviceRegistries (Cloud Map) are not supported: Vessel's DNS finds a service's tasks by its name")
	}
	if len(connect) > 0 {
		return errdefs.InvalidArgument("serviceConnectConfiguration is not supported")
	}
	if len(pcs) > 0 || len(pss) > 0 {
		return errdefs.InvalidArgument("Placement constraints and strategies are not supported with FARGATE launch type: tasks are spread across the service's subnets and hosts")
	}
	if p := deref(platform); p != "" && p != "LATEST" && p != "1.4.0" {
		return errdefs.InvalidArgument("platformVersion %q is not supported: the accepted values are LATEST and 1.4.0", p)
	}
	return nil
}

// serviceNetwork checks a service's awsvpc configuration; none means every
// subnet the control plane knows.
func (s *Server) serviceNetwork(nc *api.NetworkConfiguration) ([]string, []string, error) {
	if nc == nil {
		return slices.Clone(s.cfg.Subnets), nil, nil
	}
	if nc.AwsvpcConfiguration == nil {
		return nil, nil, errdefs.InvalidArgument("networkConfiguration needs awsvpcConfiguration: Fargate tasks use the awsvpc network mode")
	}
	if len(nc.AwsvpcConfiguration.Subnets) == 0 {
		return nil, nil, errdefs.InvalidArgument("subnets can not be empty: give 1 to 16 of %s", strings.Join(s.cfg.Subnets, ", "))
	}
	subnets, err := s.taskSubnets(nc)
	if err != nil {
		return nil, nil, err
	}
	return subnets, slices.Clone(nc.AwsvpcConfiguration.SecurityGroups), nil
}

// applyDeploymentConfiguration checks dc and sets its values on r.
func applyDeploymentConfiguration(r *serviceRecord, dc *api.DeploymentConfiguration) error {
	if dc == nil {
		return nil
	}
	minH, maxP := r.MinimumHealthyPercent, r.MaximumPercent
	if dc.MinimumHealthyPercent != nil {
		minH = *dc.MinimumHealthyPercent
	}
	if dc.MaximumPercent != nil {
		maxP = *dc.MaximumPercent
	}
	if minH < 0 || minH > 100 {
		return errdefs.InvalidArgument("deploymentConfiguration.minimumHealthyPercent %d is out of range: accepted values are 0..100", minH)
	}
	if maxP < 100 || maxP > 200 {
		return errdefs.InvalidArgument("deploymentConfiguration.maximumPercent %d is out of range: accepted values are 100..200", maxP)
	}
	if minH == 100 && maxP == 100 {
		return errdefs.InvalidArgument("deploymentConfiguration with minimumHealthyPercent 100 and maximumPercent 100 lets a deployment neither start nor stop a task: lower the minimum or raise the maximum")
	}
	if a := dc.Alarms; a != nil && a.Enable {
		return errdefs.InvalidArgument("deploymentConfiguration.alarms are not supported: Vessel has no CloudWatch alarms; use the deployment circuit breaker")
	}
	r.MinimumHealthyPercent, r.MaximumPercent = minH, maxP
	if dc.DeploymentCircuitBreaker != nil {
		r.CircuitBreaker = service.CircuitBreaker(*dc.DeploymentCircuitBreaker)
	}
	return nil
}

func checkDesiredCount(n int32) error {
	if n < 0 || n > MaxServiceDesiredCount {
		return errdefs.InvalidArgument("desiredCount %d is out of range: accepted values are 0..%d", n, MaxServiceDesiredCount)
	}
	return nil
}

func checkPropagateTags(p string) error {
	switch p {
	case "", "NONE", "SERVICE", "TASK_DEFINITION":
		return nil
	}
	return errdefs.InvalidArgument("propagateTags %q is not valid: accepted values are NONE, SERVICE, TASK_DEFINITION", p)
}

// serviceTaskDef resolves the task definition a deployment runs: it must
// exist and be ACTIVE.
func (s *Server) serviceTaskDef(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", errdefs.InvalidArgument("taskDefinition is required: give a family, family:revision or an ARN")
	}
	rec, _, err := s.getTaskDef(ctx, ref)
	if err != nil {
		return "", err
	}
	if rec.Def.Status != api.TaskDefinitionStatusActive {
		return "", clientException(errdefs.InvalidArgument(
			"TaskDefinition is inactive: %s was deregistered; deploy an ACTIVE revision", deref(rec.Def.TaskDefinitionArn)))
	}
	return deref(rec.Def.TaskDefinitionArn), nil
}

// CreateService creates a service and its first deployment; the service
// scheduler then starts its tasks.
func (s *Server) CreateService(ctx context.Context, in *api.CreateServiceInput) (*api.CreateServiceOutput, error) {
	name := deref(in.ServiceName)
	if !serviceNameRE.MatchString(name) {
		return nil, errdefs.InvalidArgument("serviceName %q is not valid: up to 255 letters, digits, hyphens and underscores are accepted", name)
	}
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	if err := checkServiceFeatures(in.LaunchType, in.CapacityProviderStrategy, in.LoadBalancers, in.ServiceRegistries,
		in.PlacementConstraints, in.PlacementStrategy, in.ServiceConnectConfiguration, in.PlatformVersion); err != nil {
		return nil, err
	}
	switch in.SchedulingStrategy {
	case "", "REPLICA":
	default:
		return nil, errdefs.InvalidArgument("schedulingStrategy %q is not supported: Fargate services use REPLICA", in.SchedulingStrategy)
	}
	if dc := in.DeploymentController; dc != nil && dc.Type != "ECS" {
		return nil, errdefs.InvalidArgument("deploymentController type %q is not supported: the accepted type is ECS (rolling update)", dc.Type)
	}
	if in.DesiredCount == nil {
		return nil, errdefs.InvalidArgument("desiredCount is required for a REPLICA service: give 0..%d", MaxServiceDesiredCount)
	}
	if err := checkDesiredCount(*in.DesiredCount); err != nil {
		return nil, err
	}
	if err := checkPropagateTags(in.PropagateTags); err != nil {
		return nil, err
	}
	if g := in.HealthCheckGracePeriodSeconds; g != nil && *g < 0 {
		return nil, errdefs.InvalidArgument("healthCheckGracePeriodSeconds %d must not be negative", *g)
	}
	taskDef, err := s.serviceTaskDef(ctx, deref(in.TaskDefinition))
	if err != nil {
		return nil, err
	}
	subnets, groups, err := s.serviceNetwork(in.NetworkConfiguration)
	if err != nil {
		return nil, err
	}
	tags, err := tagsFromAPI(in.Tags)
	if err != nil {
		return nil, err
	}
	if err := checkRuntimeTag(tags); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	rec := &serviceRecord{Name: name, Cluster: cluster, Status: service.StatusActive, DesiredCount: *in.DesiredCount,
		Subnets: subnets, SecurityGroups: groups,
		MinimumHealthyPercent: DefaultMinimumHealthyPercent, MaximumPercent: DefaultMaximumPercent,
		HealthCheckGracePeriodSeconds: in.HealthCheckGracePeriodSeconds, Tags: tags, PropagateTags: in.PropagateTags,
		EnableExecuteCommand: in.EnableExecuteCommand, EnableECSManagedTags: in.EnableECSManagedTags,
		CreatedAt: now, StatusChangedAt: now}
	if err := applyDeploymentConfiguration(rec, in.DeploymentConfiguration); err != nil {
		return nil, err
	}
	rec.NewDeployment(taskDef, now, "")
	expected := store.MustNotExist
	if old, rev, err := s.getService(ctx, cluster, name); err == nil {
		if old.Status != service.StatusInactive {
			return nil, errdefs.InvalidArgument("Creation of service was not idempotent: service %s already exists in cluster %s (%s); change it with UpdateService",
				name, cluster, old.Status)
		}
		expected = rev
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if _, err := putJSON(ctx, s.store, serviceKey(cluster, name), rec, expected); err != nil {
		if errdefs.IsAlreadyExists(err) || errdefs.IsConflict(err) {
			return nil, errdefs.InvalidArgument("Creation of service was not idempotent: service %s was created meanwhile", name)
		}
		return nil, err
	}
	s.notify()
	out := s.serviceOut(ctx, rec, true)
	return &api.CreateServiceOutput{Service: &out}, nil
}

// checkRuntimeTag checks a service's vessel:runtime tag.
func checkRuntimeTag(tags []task.Tag) error {
	_, err := task.ResolveRuntime(tags, nil, nil)
	return err
}

// UpdateService changes a service's desired count, and starts a new
// deployment when its task definition or network changes or when
// forceNewDeployment is set.
func (s *Server) UpdateService(ctx context.Context, in *api.UpdateServiceInput) (*api.UpdateServiceOutput, error) {
	name := serviceName(deref(in.Service))
	if name == "" {
		return nil, errdefs.InvalidArgument("service is required: give a service name or ARN")
	}
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	if err := checkServiceFeatures("", in.CapacityProviderStrategy, in.LoadBalancers, in.ServiceRegistries,
		in.PlacementConstraints, in.PlacementStrategy, in.ServiceConnectConfiguration, in.PlatformVersion); err != nil {
		return nil, err
	}
	if in.DesiredCount != nil {
		if err := checkDesiredCount(*in.DesiredCount); err != nil {
			return nil, err
		}
	}
	if err := checkPropagateTags(in.PropagateTags); err != nil {
		return nil, err
	}
	if g := in.HealthCheckGracePeriodSeconds; g != nil && *g < 0 {
		return nil, errdefs.InvalidArgument("healthCheckGracePeriodSeconds %d must not be negative", *g)
	}
	var taskDef string
	if ref := deref(in.TaskDefinition); ref != "" {
		var err error
		if taskDef, err = s.serviceTaskDef(ctx, ref); err != nil {
			return nil, err
		}
	}
	var subnets, groups []string
	if in.NetworkConfiguration != nil {
		var err error
		if subnets, groups, err = s.serviceNetwork(in.NetworkConfiguration); err != nil {
			return nil, err
		}
	}
	now := s.cfg.Now()
	rec, err := s.updateService(ctx, cluster, name, func(r *serviceRecord) error {
		if r.Status != service.StatusActive {
			return serviceNotActive(name, r.Status)
		}
		if err := applyDeploymentConfiguration(r, in.DeploymentConfiguration); err != nil {
			return err
		}
		if in.DesiredCount != nil && *in.DesiredCount != r.DesiredCount {
			r.DesiredCount = *in.DesiredCount
			r.Steady = false
		}
		if in.HealthCheckGracePeriodSeconds != nil {
			r.HealthCheckGracePeriodSeconds = in.HealthCheckGracePeriodSeconds
		}
		if in.EnableExecuteCommand != nil {
			r.EnableExecuteCommand = *in.EnableExecuteCommand
		}
		if in.EnableECSManagedTags != nil {
			r.EnableECSManagedTags = *in.EnableECSManagedTags
		}
		if in.PropagateTags != "" {
			r.PropagateTags = in.PropagateTags
		}
		deploy := in.ForceNewDeployment
		next := r.TaskDefinition
		if taskDef != "" && taskDef != r.TaskDefinition {
			next, deploy = taskDef, true
		}
		if subnets != nil && (!slices.Equal(subnets, r.Subnets) || !slices.Equal(groups, r.SecurityGroups)) {
			r.Subnets, r.SecurityGroups, deploy = subnets, groups, true
		}
		if deploy {
			r.NewDeployment(next, now, "")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := s.serviceOut(ctx, rec, true)
	return &api.UpdateServiceOutput{Service: &out}, nil
}

// DeleteService deletes a service: it goes DRAINING while the scheduler
// stops its tasks, then INACTIVE. Without force its desired count must be 0.
func (s *Server) DeleteService(ctx context.Context, in *api.DeleteServiceInput) (*api.DeleteServiceOutput, error) {
	name := serviceName(deref(in.Service))
	if name == "" {
		return nil, errdefs.InvalidArgument("service is required: give a service name or ARN")
	}
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	force := deref(in.Force)
	now := s.cfg.Now()
	rec, err := s.updateService(ctx, cluster, name, func(r *serviceRecord) error {
		switch r.Status {
		case service.StatusInactive:
			return serviceNotActive(name, r.Status)
		case service.StatusDraining:
			return nil
		}
		if r.DesiredCount > 0 && !force {
			return errdefs.InvalidArgument("The service cannot be stopped while it is scaled above 0: set its desiredCount to 0 with UpdateService, or delete it with force (desiredCount is %d)", r.DesiredCount)
		}
		r.Status = service.StatusDraining
		r.StatusChangedAt = now
		r.DesiredCount = 0
		r.Steady = false
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := s.serviceOut(ctx, rec, true)
	return &api.DeleteServiceOutput{Service: &out}, nil
}

// DescribeServices describes up to 10 services of a cluster; unknown ones
// are failures.
func (s *Server) DescribeServices(ctx context.Context, in *api.DescribeServicesInput) (*api.DescribeServicesOutput, error) {
	if len(in.Services) == 0 || len(in.Services) > 10 {
		return nil, errdefs.InvalidArgument("services has %d entries; 1 to 10 service names or ARNs are accepted", len(in.Services))
	}
	if err := checkInclude(in.Include, "TAGS"); err != nil {
		return nil, err
	}
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	withTags := includesTags(in.Include)
	out := &api.DescribeServicesOutput{Services: []api.Service{}, Failures: []api.Failure{}}
	for _, ref := range in.Services {
		name := serviceName(ref)
		rec, _, err := s.getService(ctx, cluster, name)
		if errdefs.IsNotFound(err) {
			out.Failures = append(out.Failures, api.Failure{Arn: ptr(s.serviceARN(cluster, name)), Reason: ptr("MISSING")})
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Services = append(out.Services, s.serviceOut(ctx, rec, withTags))
	}
	return out, nil
}

// ListServices lists the ARNs of a cluster's ACTIVE and DRAINING services
// in name order, 10 a page unless maxResults says otherwise.
func (s *Server) ListServices(ctx context.Context, in *api.ListServicesInput) (*api.ListServicesOutput, error) {
	cluster := clusterName(in.Cluster)
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return nil, err
	}
	if in.LaunchType != "" && in.LaunchType != api.LaunchTypeFargate {
		return nil, errdefs.InvalidArgument("launchType %q is not valid here: the accepted value is FARGATE", in.LaunchType)
	}
	switch in.SchedulingStrategy {
	case "", "REPLICA", "DAEMON":
	default:
		return nil, errdefs.InvalidArgument("schedulingStrategy %q is not valid: accepted values are REPLICA, DAEMON", in.SchedulingStrategy)
	}
	recs, _, _, err := listJSON[serviceRecord](ctx, s.store, prefixServices+cluster+"/")
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, r := range recs {
		if r.Status != service.StatusInactive && in.SchedulingStrategy != "DAEMON" {
			names = append(names, r.Name)
		}
	}
	sort.Strings(names)
	max := in.MaxResults
	if max == nil {
		max = ptr(int32(10))
	}
	pg, next, err := page(names, in.NextToken, max, 100)
	if err != nil {
		return nil, err
	}
	out := &api.ListServicesOutput{ServiceArns: []string{}, NextToken: next}
	for _, n := range pg {
		out.ServiceArns = append(out.ServiceArns, s.serviceARN(cluster, n))
	}
	return out, nil
}

// serviceTasks returns the tasks of a service, as fresh as the store (read
// your writes across replicas).
func (s *Server) serviceTasks(ctx context.Context, r *serviceRecord) []*task.Task {
	tasks, _, err := s.freshTasks(ctx)
	if err != nil {
		return nil
	}
	group := ServiceGroupPrefix + r.Name
	var out []*task.Task
	for _, t := range tasks {
		if t.Cluster == r.Cluster && t.Group == group {
			out = append(out, t)
		}
	}
	return out
}

// serviceOut renders a service in its ECS shape, with task counts from the
// task cache.
func (s *Server) serviceOut(ctx context.Context, r *serviceRecord, withTags bool) api.Service {
	network := func(subnets, groups []string) *api.NetworkConfiguration {
		return &api.NetworkConfiguration{AwsvpcConfiguration: &api.AwsVpcConfiguration{
			Subnets: slices.Clone(subnets), SecurityGroups: slices.Clone(groups), AssignPublicIP: api.AssignPublicIPDisabled}}
	}
	cb := api.DeploymentCircuitBreaker(r.CircuitBreaker)
	out := api.Service{
		ServiceArn: ptr(s.serviceARN(r.Cluster, r.Name)), ServiceName: ptr(r.Name), ClusterArn: ptr(s.clusterARN(r.Cluster)),
		Status: ptr(r.Status), DesiredCount: r.DesiredCount, LaunchType: api.LaunchTypeFargate,
		PlatformVersion: ptr("LATEST"), PlatformFamily: ptr("Linux"), TaskDefinition: ptr(r.TaskDefinition),
		DeploymentConfiguration: &api.DeploymentConfiguration{DeploymentCircuitBreaker: &cb,
			MaximumPercent: ptr(r.MaximumPercent), MinimumHealthyPercent: ptr(r.MinimumHealthyPercent)},
		Deployments: []api.Deployment{}, Events: []api.ServiceEvent{},
		LoadBalancers: []api.LoadBalancer{}, ServiceRegistries: []api.ServiceRegistry{},
		PlacementConstraints: []api.PlacementConstraint{}, PlacementStrategy: []api.PlacementStrategy{},
		CreatedAt: api.NewTimestamp(r.CreatedAt), NetworkConfiguration: network(r.Subnets, r.SecurityGroups),
		HealthCheckGracePeriodSeconds: r.HealthCheckGracePeriodSeconds, SchedulingStrategy: "REPLICA",
		DeploymentController: &api.DeploymentController{Type: "ECS"}, CreatedBy: ptr("arn:aws:iam::" + s.cfg.AccountID + ":root"),
		EnableECSManagedTags: r.EnableECSManagedTags, PropagateTags: r.PropagateTags, EnableExecuteCommand: r.EnableExecuteCommand,
	}
	if out.PropagateTags == "" {
		out.PropagateTags = "NONE"
	}
	if withTags {
		out.Tags = tagsToAPI(r.Tags)
	}
	type counts struct{ running, pending int32 }
	byDep := map[string]*counts{}
	for _, t := range s.serviceTasks(ctx, r) {
		if t.Stopped() || t.DesiredStatus != task.StatusRunning {
			continue
		}
		c := byDep[t.StartedBy]
		if c == nil {
			c = &counts{}
			byDep[t.StartedBy] = c
		}
		if t.LastStatus == task.StatusRunning {
			c.running++
			out.RunningCount++
		} else {
			c.pending++
			out.PendingCount++
		}
	}
	for _, d := range r.Deployments {
		c := byDep[d.ID]
		if c == nil {
			c = &counts{}
		}
		desired := c.running + c.pending
		if d.Status == service.DeploymentPrimary {
			desired = r.DesiredCount
		}
		ad := api.Deployment{ID: ptr(d.ID), Status: ptr(d.Status), TaskDefinition: ptr(d.TaskDefinition),
			DesiredCount: desired, PendingCount: c.pending, RunningCount: c.running, FailedTasks: int32(len(d.Failed)),
			CreatedAt: api.NewTimestamp(d.CreatedAt), UpdatedAt: api.NewTimestamp(d.UpdatedAt),
			LaunchType: api.LaunchTypeFargate, PlatformVersion: ptr("1.4.0"), PlatformFamily: ptr("Linux"),
			NetworkConfiguration: network(d.Subnets, d.SecurityGroups), RolloutState: d.RolloutState}
		if d.RolloutStateReason != "" {
			ad.RolloutStateReason = ptr(d.RolloutStateReason)
		}
		out.Deployments = append(out.Deployments, ad)
	}
	for _, e := range r.Events {
		out.Events = append(out.Events, api.ServiceEvent{ID: ptr(e.ID), CreatedAt: api.NewTimestamp(e.CreatedAt), Message: ptr(e.Message)})
	}
	return out
}
