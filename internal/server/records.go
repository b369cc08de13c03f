package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/task"
)

// Store layout. Every value is a JSON document.
const (
	prefixClusters = "clusters/" // clusters/<name>
	prefixTaskDefs = "taskdefs/" // taskdefs/<family>/<revision, 10 digits>
	prefixTasks    = "tasks/"    // tasks/<id>
	prefixHosts    = "hosts/"    // hosts/<id>
	// heartbeats/<host id>: when a replica last heard from the host
	// (hosts.go), so that a new leader judges liveness as the old did.
	prefixHeartbeats = "heartbeats/"
	prefixProfiles   = "profiles/" // profiles/<cluster>/<name>
	prefixServices   = "services/" // services/<cluster>/<name> (service.Record, internal/service)
	keyMetaVersion   = "meta/version"
)

func clusterKey(name string) string { return prefixClusters + name }
func taskKey(id string) string      { return prefixTasks + id }
func hostKey(id string) string      { return prefixHosts + id }
func taskDefKey(family string, rev int32) string {
	return fmt.Sprintf("%s%s/%010d", prefixTaskDefs, family, rev)
}
func profileKey(cluster, name string) string { return prefixProfiles + cluster + "/" + name }
func serviceKey(cluster, name string) string { return prefixServices + cluster + "/" + name }

// clusterRecord is a stored cluster.
type clusterRecord struct {
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"createdAt"`
	Tags      []task.Tag        `json:"tags,omitempty"`
	Settings  map[string]string `json:"settings,omitempty"`
}

// taskDefRecord is a stored task definition revision, kept in its wire
// shape: it is what clients registered and what they read back.
type taskDefRecord struct {
	Def  api.TaskDefinition `json:"def"`
	Tags []api.Tag          `json:"tags,omitempty"`
}

// hostRecord is a registered host.
type hostRecord struct {
	agentproto.Host
	RegisteredAt time.Time `json:"registeredAt"`
}

// profileRecord is a stored Fargate profile.
type profileRecord struct {
	Cluster             string                       `json:"cluster"`
	Name                string                       `json:"name"`
	PodExecutionRoleArn string                       `json:"podExecutionRoleArn"`
	Subnets             []string                     `json:"subnets"`
	Selectors           []api.FargateProfileSelector `json:"selectors"`
	Tags                map[string]string            `json:"tags,omitempty"`
	Status              string                       `json:"status"`
	CreatedAt           time.Time                    `json:"createdAt"`
	StatusChangedAt     time.Time                    `json:"statusChangedAt"`
}

// getJSON reads key into v and returns its revision.
func getJSON(ctx context.Context, st store.Store, key string, v any) (int64, error) {
	kv, err := st.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return 0, fmt.Errorf("decoding %s: %w", key, err)
	}
	return kv.Revision, nil
}

// putJSON writes v under key with a revision precondition.
func putJSON(ctx context.Context, st store.Store, key string, v any, expected int64) (int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", key, err)
	}
	return st.Put(ctx, key, data, expected)
}

// listJSON decodes every value under prefix with decode.
func listJSON[T any](ctx context.Context, st store.Store, prefix string) ([]T, []int64, int64, error) {
	kvs, rev, err := st.List(ctx, prefix)
	if err != nil {
		return nil, nil, 0, err
	}
	out := make([]T, 0, len(kvs))
	revs := make([]int64, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, nil, 0, fmt.Errorf("decoding %s: %w", kv.Key, err)
		}
		out = append(out, v)
		revs = append(revs, kv.Revision)
	}
	return out, revs, rev, nil
}

// updateTask applies fn to the stored task with a revision check, retrying
// on conflicting writes. fn returns false to leave the task unchanged.
// Version is bumped once per stored change. The first attempt starts from
// the task cache's copy, which is nearly always current, to spare a read
// of the store (a round trip through raft on etcd); the revision check
// refuses it if it was not, and an answer other than a change (no change,
// an error) is given only from the store's copy.
func (s *Server) updateTask(ctx context.Context, id string, fn func(t *task.Task) (bool, error)) (*task.Task, error) {
	for attempt := 0; ; attempt++ {
		var t task.Task
		var rev int64
		fromCache := false
		if attempt == 0 {
			if cached, crev, ok := s.tasks.get(id); ok {
				t, rev, fromCache = *cached, crev, true
			}
		}
		if !fromCache {
			var err error
			if rev, err = getJSON(ctx, s.store, taskKey(id), &t); err != nil {
				return nil, err
			}
		}
		changed, err := fn(&t)
		if fromCache && (err != nil || !changed) {
			continue // decide from the store's copy
		}
		if err != nil {
			return nil, err
		}
		if !changed {
			return &t, nil
		}
		t.Version++
		rev, err = putJSON(ctx, s.store, taskKey(id), &t, rev)
		if errdefs.IsConflict(err) && attempt < 50 {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.tasks.wrote(&t, rev)
		s.metrics.observeTask(&t)
		return &t, nil
	}
}

func (s *Server) listTasks(ctx context.Context) ([]task.Task, int64, error) {
	tasks, _, rev, err := listJSON[task.Task](ctx, s.store, prefixTasks)
	return tasks, rev, err
}

// ensureDefaultCluster creates the default cluster if it is missing.
func (s *Server) ensureDefaultCluster(ctx context.Context) error {
	_, err := putJSON(ctx, s.store, clusterKey(DefaultCluster),
		clusterRecord{Name: DefaultCluster, CreatedAt: s.cfg.Now()}, store.MustNotExist)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("creating the default cluster: %w", err)
	}
	return nil
}

// ARNs.

func (s *Server) arn(service, resource string) string {
	return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, s.cfg.Region, s.cfg.AccountID, resource)
}
func (s *Server) clusterARN(name string) string { return s.arn("ecs", "cluster/"+name) }
func (s *Server) taskARN(cluster, id string) string {
	return s.arn("ecs", "task/"+cluster+"/"+id)
}
func (s *Server) taskDefARN(family string, rev int32) string {
	return s.arn("ecs", fmt.Sprintf("task-definition/%s:%d", family, rev))
}
func (s *Server) serviceARN(cluster, name string) string {
	return s.arn("ecs", "service/"+cluster+"/"+name)
}
func (s *Server) containerARN(cluster, taskID, name string) string {
	return s.arn("ecs", "container/"+cluster+"/"+taskID+"/"+name)
}
func (s *Server) eksClusterARN(name string) string { return s.arn("eks", "cluster/"+name) }
func (s *Server) profileARN(cluster, name, id string) string {
	return s.arn("eks", "fargateprofile/"+cluster+"/"+name+"/"+id)
}

// lastSegment returns what follows the last "/" of an ARN, or s itself.
func lastSegment(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// clusterName resolves a cluster name or ARN; "" means the default cluster.
func clusterName(s *string) string {
	if s == nil || *s == "" {
		return DefaultCluster
	}
	if strings.HasPrefix(*s, "arn:") {
		return lastSegment(*s)
	}
	return *s
}

// ptr and deref keep the pointer-heavy wire shapes readable.
func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// cachedReads reads the keys that are not tasks from the store's watch
// cache; the rest goes to the store. A controller pass reads through it
// once the cache has caught up with the store (catchUp): its lists are
// then as fresh as the store's at the pass's start, without a round trip
// to the store each.
type cachedReads struct {
	store.Store
	c *taskCache
}

func (r cachedReads) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if strings.HasPrefix(prefix, prefixTasks) || strings.HasPrefix(prefixTasks, prefix) {
		return r.Store.List(ctx, prefix)
	}
	kvs, rev := r.c.list(prefix)
	return kvs, rev, nil
}

type cachedReadsKey struct{}

// withCachedReads marks ctx as a controller pass's, caught up: s.reads
// answers its lists from the cache.
func withCachedReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, cachedReadsKey{}, true)
}

// reads is the store to list records from under ctx: the cache in a
// caught-up controller pass, else the store.
func (s *Server) reads(ctx context.Context) store.Store {
	if ctx.Value(cachedReadsKey{}) != nil {
		return cachedReads{Store: s.store, c: s.tasks}
	}
	return s.store
}
