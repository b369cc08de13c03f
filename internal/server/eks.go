package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/profile"
	"vessel.dev/vessel/internal/store"
)

// MaxProfilesPerCluster is EKS's quota of Fargate profiles per cluster.
const MaxProfilesPerCluster = 10

// TagProfile marks the tasks a profile placed.
const TagProfile = "vessel:profile"

var roleARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)

// eksRoute is one EKS operation Vessel serves: its name in the EKS model,
// its method and path pattern, and its handler.
type eksRoute struct {
	op, pattern string
	handler     http.HandlerFunc
}

func (s *Server) eksRoutes() []eksRoute {
	return []eksRoute{
		{"ListClusters", "GET /clusters", s.eksListClusters},
		{"DescribeCluster", "GET /clusters/{name}", s.eksDescribeCluster},
		{"CreateFargateProfile", "POST /clusters/{name}/fargate-profiles", s.eksCreateProfile},
		{"ListFargateProfiles", "GET /clusters/{name}/fargate-profiles", s.eksListProfiles},
		{"DescribeFargateProfile", "GET /clusters/{name}/fargate-profiles/{profile}", s.eksDescribeProfile},
		{"DeleteFargateProfile", "DELETE /clusters/{name}/fargate-profiles/{profile}", s.eksDeleteProfile},
	}
}

func (s *Server) routeEKS(mux *http.ServeMux) {
	for _, r := range s.eksRoutes() {
		mux.HandleFunc(r.pattern, r.handler)
	}
}

func (s *Server) writeEKS(w http.ResponseWriter, r *http.Request, op string, out any, err error, ctxBody api.EKSError) {
	s.metrics.setOperation(r, op)
	if err != nil {
		s.writeEKSError(w, r, err, ctxBody)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func eksNotFound(format string, args ...any) error {
	return &apiError{code: api.EKSResourceNotFoundException, kind: errdefs.ErrNotFound, msg: errdefs.NotFound(format, args...).Error()}
}

func queryInt(q url.Values, name string) (*int32, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return nil, errdefs.InvalidArgument("%s %q is not an integer", name, v)
	}
	return ptr(int32(n)), nil
}

func queryString(q url.Values, name string) *string {
	if v := q.Get(name); v != "" {
		return &v
	}
	return nil
}

func (s *Server) eksCluster(ctx context.Context, name string) (*clusterRecord, error) {
	c, err := s.getCluster(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, eksNotFound("No cluster found for name: %s.", name)
	}
	return c, err
}

func (s *Server) eksListClusters(w http.ResponseWriter, r *http.Request) {
	out, err := func() (*api.EKSListClustersOutput, error) {
		max, err := queryInt(r.URL.Query(), "maxResults")
		if err != nil {
			return nil, err
		}
		clusters, _, _, err := listJSON[clusterRecord](r.Context(), s.store, prefixClusters)
		if err != nil {
			return nil, err
		}
		names := []string{}
		for _, c := range clusters {
			names = append(names, c.Name)
		}
		sort.Strings(names)
		pg, next, err := page(names, queryString(r.URL.Query(), "nextToken"), max, 100)
		if err != nil {
			return nil, err
		}
		return &api.EKSListClustersOutput{Clusters: pg, NextToken: next}, nil
	}()
	s.writeEKS(w, r, "eks:ListClusters", out, err, api.EKSError{})
}

func (s *Server) eksDescribeCluster(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	out, err := func() (*api.EKSDescribeClusterOutput, error) {
		c, err := s.eksCluster(r.Context(), name)
		if err != nil {
			return nil, err
		}
		tags := map[string]string{}
		for _, t := range c.Tags {
			tags[t.Key] = t.Value
		}
		return &api.EKSDescribeClusterOutput{Cluster: &api.EKSCluster{
			Name: ptr(c.Name), Arn: ptr(s.eksClusterARN(c.Name)), CreatedAt: api.NewTimestamp(c.CreatedAt),
			Status: api.EKSClusterStatusActive, PlatformVersion: ptr("vessel.1"), Tags: tags,
			ResourcesVpcConfig: &api.VpcConfigResponse{SubnetIDs: slices.Clone(s.cfg.Subnets), EndpointPrivateAccess: true},
		}}, nil
	}()
	s.writeEKS(w, r, "eks:DescribeCluster", out, err, api.EKSError{ClusterName: ptr(name)})
}

func (s *Server) profileOut(p *profileRecord) *api.FargateProfile {
	return &api.FargateProfile{
		FargateProfileName: ptr(p.Name), FargateProfileArn: ptr(s.profileARN(p.Cluster, p.Name, p.CreatedAt.Format("20060102150405"))),
		ClusterName: ptr(p.Cluster), CreatedAt: api.NewTimestamp(p.CreatedAt),
		PodExecutionRoleArn: ptr(p.PodExecutionRoleArn), Subnets: p.Subnets, Selectors: p.Selectors,
		Status: p.Status, Tags: p.Tags, Health: &api.FargateProfileHealth{Issues: []api.FargateProfileIssue{}},
	}
}

// profileSelectors converts wire selectors for the profile package.
func profileSelectors(in []api.FargateProfileSelector) []profile.Selector {
	out := make([]profile.Selector, 0, len(in))
	for _, sel := range in {
		out = append(out, profile.Selector{Namespace: deref(sel.Namespace), Labels: sel.Labels})
	}
	return out
}

// CreateFargateProfile validates and stores a profile in state CREATING;
// the controller makes it ACTIVE.
func (s *Server) CreateFargateProfile(ctx context.Context, in *api.CreateFargateProfileInput) (*api.CreateFargateProfileOutput, error) {
	cluster := deref(in.ClusterName)
	if _, err := s.eksCluster(ctx, cluster); err != nil {
		return nil, err
	}
	name := deref(in.FargateProfileName)
	if err := profile.ValidateName(name); err != nil {
		return nil, err
	}
	if err := profile.ValidateSelectors(profileSelectors(in.Selectors)); err != nil {
		return nil, err
	}
	role := deref(in.PodExecutionRoleArn)
	if !roleARNRE.MatchString(role) {
		return nil, errdefs.InvalidArgument("podExecutionRoleArn %q is not a role ARN: expected arn:aws:iam::<12-digit account>:role/<name>", role)
	}
	subnets := in.Subnets
	if len(subnets) == 0 {
		subnets = slices.Clone(s.cfg.Subnets)
	}
	for _, sn := range subnets {
		if !slices.Contains(s.cfg.Subnets, sn) {
			return nil, errdefs.InvalidArgument("subnet %q is not known: the accepted (private) subnets are %s", sn, strings.Join(s.cfg.Subnets, ", "))
		}
	}
	if len(in.Tags) > 50 {
		return nil, errdefs.InvalidArgument("%d tags given; at most 50 are accepted", len(in.Tags))
	}
	existing, _, _, err := listJSON[profileRecord](ctx, s.store, prefixProfiles+cluster+"/")
	if err != nil {
		return nil, err
	}
	for _, p := range existing {
		if p.Status == api.FargateProfileStatusDeleting && p.Name != name {
			return nil, &apiError{code: api.EKSResourceInUseException, kind: errdefs.ErrConflict,
				msg: "Fargate profile " + p.Name + " of cluster " + cluster + " is being deleted; no profile can be created until it is gone"}
		}
	}
	if len(existing) >= MaxProfilesPerCluster {
		return nil, errdefs.LimitExceeded("cluster %s already has %d Fargate profiles, the most a cluster may have", cluster, MaxProfilesPerCluster)
	}
	now := s.cfg.Now()
	rec := profileRecord{Cluster: cluster, Name: name, PodExecutionRoleArn: role, Subnets: subnets,
		Selectors: in.Selectors, Tags: in.Tags, Status: api.FargateProfileStatusCreating, CreatedAt: now, StatusChangedAt: now}
	if _, err := putJSON(ctx, s.store, profileKey(cluster, name), rec, store.MustNotExist); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, &apiError{code: api.EKSResourceInUseException, kind: err,
				msg: "Fargate profile already exists with name " + name + " in cluster " + cluster + "; profiles are immutable: create one with a new name and delete the old one"}
		}
		return nil, err
	}
	s.notify()
	return &api.CreateFargateProfileOutput{FargateProfile: s.profileOut(&rec)}, nil
}

func (s *Server) eksCreateProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var out *api.CreateFargateProfileOutput
	var in api.CreateFargateProfileInput
	body, err := io.ReadAll(r.Body)
	if err == nil {
		if err = json.Unmarshal(body, &in); err != nil {
			err = errdefs.InvalidArgument("the request body is not a valid CreateFargateProfile request: %v", err)
		}
	}
	if err == nil {
		in.ClusterName = &name
		out, err = s.CreateFargateProfile(r.Context(), &in)
	}
	s.writeEKS(w, r, "eks:CreateFargateProfile", out, err, api.EKSError{ClusterName: &name, FargateProfileName: in.FargateProfileName})
}

func (s *Server) getProfile(ctx context.Context, cluster, name string) (*profileRecord, int64, error) {
	if _, err := s.eksCluster(ctx, cluster); err != nil {
		return nil, 0, err
	}
	var p profileRecord
	rev, err := getJSON(ctx, s.store, profileKey(cluster, name), &p)
	if errdefs.IsNotFound(err) {
		return nil, 0, eksNotFound("No Fargate Profile found with name: %s.", name)
	}
	return &p, rev, err
}

func (s *Server) eksDescribeProfile(w http.ResponseWriter, r *http.Request) {
	cluster, name := r.PathValue("name"), r.PathValue("profile")
	var out *api.DescribeFargateProfileOutput
	p, _, err := s.getProfile(r.Context(), cluster, name)
	if err == nil {
		out = &api.DescribeFargateProfileOutput{FargateProfile: s.profileOut(p)}
	}
	s.writeEKS(w, r, "eks:DescribeFargateProfile", out, err, api.EKSError{ClusterName: &cluster, FargateProfileName: &name})
}

func (s *Server) eksListProfiles(w http.ResponseWriter, r *http.Request) {
	cluster := r.PathValue("name")
	out, err := func() (*api.ListFargateProfilesOutput, error) {
		if _, err := s.eksCluster(r.Context(), cluster); err != nil {
			return nil, err
		}
		max, err := queryInt(r.URL.Query(), "maxResults")
		if err != nil {
			return nil, err
		}
		profiles, _, _, err := listJSON[profileRecord](r.Context(), s.store, prefixProfiles+cluster+"/")
		if err != nil {
			return nil, err
		}
		names := []string{}
		for _, p := range profiles {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		pg, next, err := page(names, queryString(r.URL.Query(), "nextToken"), max, 100)
		if err != nil {
			return nil, err
		}
		return &api.ListFargateProfilesOutput{FargateProfileNames: pg, NextToken: next}, nil
	}()
	s.writeEKS(w, r, "eks:ListFargateProfiles", out, err, api.EKSError{ClusterName: &cluster})
}

// DeleteFargateProfile moves a profile to DELETING; the controller stops the
// tasks it placed and then removes it.
func (s *Server) DeleteFargateProfile(ctx context.Context, cluster, name string) (*api.FargateProfile, error) {
	for {
		p, rev, err := s.getProfile(ctx, cluster, name)
		if err != nil {
			return nil, err
		}
		if p.Status == api.FargateProfileStatusDeleting {
			return s.profileOut(p), nil
		}
		p.Status = api.FargateProfileStatusDeleting
		p.StatusChangedAt = s.cfg.Now()
		_, err = putJSON(ctx, s.store, profileKey(cluster, name), p, rev)
		if errdefs.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.notify()
		return s.profileOut(p), nil
	}
}

func (s *Server) eksDeleteProfile(w http.ResponseWriter, r *http.Request) {
	cluster, name := r.PathValue("name"), r.PathValue("profile")
	var out *api.DeleteFargateProfileOutput
	p, err := s.DeleteFargateProfile(r.Context(), cluster, name)
	if err == nil {
		out = &api.DeleteFargateProfileOutput{FargateProfile: p}
	}
	s.writeEKS(w, r, "eks:DeleteFargateProfile", out, err, api.EKSError{ClusterName: &cluster, FargateProfileName: &name})
}
