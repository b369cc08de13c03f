package server

import (
	"context"
	"regexp"
	"sort"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

var clusterNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

func validateClusterName(name string) error {
	if !clusterNameRE.MatchString(name) {
		return errdefs.InvalidArgument("cluster name %q is not valid: use 1 to 255 letters, digits, hyphens and underscores", name)
	}
	return nil
}

func tagsFromAPI(in []api.Tag) ([]task.Tag, error) {
	if len(in) > 50 {
		return nil, errdefs.InvalidArgument("%d tags given; at most 50 are accepted", len(in))
	}
	out := make([]task.Tag, 0, len(in))
	for _, t := range in {
		k := deref(t.Key)
		if k == "" || len(k) > 128 {
			return nil, errdefs.InvalidArgument("tag key %q is not valid: keys are 1 to 128 characters", k)
		}
		if len(deref(t.Value)) > 256 {
			return nil, errdefs.InvalidArgument("the value of tag %q is longer than 256 characters", k)
		}
		out = append(out, task.Tag{Key: k, Value: deref(t.Value)})
	}
	return out, nil
}

func tagsToAPI(in []task.Tag) []api.Tag {
	out := make([]api.Tag, 0, len(in))
	for _, t := range in {
		out = append(out, api.Tag{Key: ptr(t.Key), Value: ptr(t.Value)})
	}
	return out
}

// getCluster reads a cluster; a missing one is ClusterNotFoundException.
func (s *Server) getCluster(ctx context.Context, name string) (*clusterRecord, error) {
	var c clusterRecord
	if _, err := getJSON(ctx, s.store, clusterKey(name), &c); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, clusterNotFound(name)
		}
		return nil, err
	}
	return &c, nil
}

// clusterOut renders a cluster with its task counts.
func (s *Server) clusterOut(c *clusterRecord, status string, tasks []task.Task) api.Cluster {
	out := api.Cluster{ClusterArn: ptr(s.clusterARN(c.Name)), ClusterName: ptr(c.Name), Status: ptr(status),
		Tags: orEmpty(tagsToAPI(c.Tags)), Statistics: []api.KeyValuePair{}, Settings: []api.ClusterSetting{},
		DefaultCapacityProviderStrategy: []api.CapacityProviderStrategyItem{}}
	for _, t := range tasks {
		if t.Cluster != c.Name {
			continue
		}
		switch t.LastStatus {
		case task.StatusRunning:
			out.RunningTasksCount++
		case task.StatusProvisioning, task.StatusPending, task.StatusActivating:
			out.PendingTasksCount++
		}
	}
	for k, v := range c.Settings {
		out.Settings = append(out.Settings, api.ClusterSetting{Name: k, Value: ptr(v)})
	}
	return out
}

// CreateCluster creates a cluster, or returns the existing one of that name
// (ECS's CreateCluster is idempotent).
func (s *Server) CreateCluster(ctx context.Context, in *api.CreateClusterInput) (*api.CreateClusterOutput, error) {
	name := deref(in.ClusterName)
	if name == "" {
		name = DefaultCluster
	}
	if err := validateClusterName(name); err != nil {
		return nil, err
	}
	tags, err := tagsFromAPI(in.Tags)
	if err != nil {
		return nil, err
	}
	c := clusterRecord{Name: name, CreatedAt: s.cfg.Now(), Tags: tags, Settings: map[string]string{}}
	for _, st := range in.Settings {
		if st.Name != "containerInsights" {
			return nil, errdefs.InvalidArgument("cluster setting %q is not known: the accepted setting is containerInsights", st.Name)
		}
		c.Settings[st.Name] = deref(st.Value)
	}
	if _, err := putJSON(ctx, s.store, clusterKey(name), c, store.MustNotExist); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return nil, err
		}
		existing, err := s.getCluster(ctx, name)
		if err != nil {
			return nil, err
		}
		c = *existing
	}
	tasks, _, err := s.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	out := s.clusterOut(&c, api.ClusterStatusActive, tasks)
	return &api.CreateClusterOutput{Cluster: &out}, nil
}

// DescribeClusters describes clusters by name or ARN (the default cluster
// when none is given); unknown ones are reported as failures.
func (s *Server) DescribeClusters(ctx context.Context, in *api.DescribeClustersInput) (*api.DescribeClustersOutput, error) {
	names := in.Clusters
	if len(names) == 0 {
		names = []string{DefaultCluster}
	}
	if len(names) > 100 {
		return nil, errdefs.InvalidArgument("%d clusters given; at most 100 are accepted", len(names))
	}
	if err := checkInclude(in.Include, "ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"); err != nil {
		return nil, err
	}
	tasks, _, err := s.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	out := &api.DescribeClustersOutput{Clusters: []api.Cluster{}, Failures: []api.Failure{}}
	for _, n := range names {
		name := clusterName(&n)
		c, err := s.getCluster(ctx, name)
		if errdefs.IsNotFound(err) {
			out.Failures = append(out.Failures, api.Failure{Arn: ptr(s.clusterARN(name)), Reason: ptr("MISSING")})
			continue
		}
		if err != nil {
			return nil, err
		}
		cl := s.clusterOut(c, api.ClusterStatusActive, tasks)
		services, _, _, err := listJSON[serviceRecord](ctx, s.store, prefixServices+name+"/")
		if err != nil {
			return nil, err
		}
		for _, sv := range services {
			if sv.Status == api.ServiceStatusActive {
				cl.ActiveServicesCount++
			}
		}
		out.Clusters = append(out.Clusters, cl)
	}
	return out, nil
}

// ListClusters lists cluster ARNs in name order.
func (s *Server) ListClusters(ctx context.Context, in *api.ListClustersInput) (*api.ListClustersOutput, error) {
	clusters, _, _, err := listJSON[clusterRecord](ctx, s.store, prefixClusters)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(clusters))
	for _, c := range clusters {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	pg, next, err := page(names, in.NextToken, in.MaxResults, 100)
	if err != nil {
		return nil, err
	}
	out := &api.ListClustersOutput{ClusterArns: []string{}, NextToken: next}
	for _, n := range pg {
		out.ClusterArns = append(out.ClusterArns, s.clusterARN(n))
	}
	return out, nil
}

// DeleteCluster deletes a cluster that holds no tasks and no profiles.
func (s *Server) DeleteCluster(ctx context.Context, in *api.DeleteClusterInput) (*api.DeleteClusterOutput, error) {
	if deref(in.Cluster) == "" {
		return nil, errdefs.InvalidArgument("cluster is required")
	}
	name := clusterName(in.Cluster)
	if name == DefaultCluster {
		return nil, errdefs.InvalidArgument("the default cluster cannot be deleted: it always exists")
	}
	c, err := s.getCluster(ctx, name)
	if err != nil {
		return nil, err
	}
	tasks, _, err := s.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.Cluster == name && !t.Stopped() {
			return nil, &apiError{code: api.ECSClusterContainsTasksException, kind: errdefs.ErrConflict,
				msg: "The cluster cannot be deleted while tasks are active: stop them first (task " + t.ID + " is " + string(t.LastStatus) + ")"}
		}
	}
	services, _, _, err := listJSON[serviceRecord](ctx, s.store, prefixServices+name+"/")
	if err != nil {
		return nil, err
	}
	for _, sv := range services {
		if sv.Status != api.ServiceStatusInactive {
			return nil, &apiError{code: api.ECSClusterContainsServicesException, kind: errdefs.ErrConflict,
				msg: "The cluster cannot be deleted while services are active: delete service " + sv.Name + " first (it is " + sv.Status + ")"}
		}
	}
	profiles, _, _, err := listJSON[profileRecord](ctx, s.store, prefixProfiles+name+"/")
	if err != nil {
		return nil, err
	}
	if len(profiles) > 0 {
		return nil, errdefs.Conflict("The cluster cannot be deleted while it has Fargate profiles: delete profile %q first", profiles[0].Name)
	}
	if err := s.store.Delete(ctx, clusterKey(name), store.AnyRevision); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, clusterNotFound(name)
		}
		return nil, err
	}
	out := s.clusterOut(c, api.ClusterStatusInactive, nil)
	return &api.DeleteClusterOutput{Cluster: &out}, nil
}
