package bridge

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/k8s/podtask"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// Remote is the ControlPlane of a control plane in another process (`vessel
// k8s bridge --server URL`), over the bridge protocol: calls go straight
// through, and a long-poll loop (Run) keeps the bridge's view of its tasks
// and of the hosts' heartbeats.
type Remote struct {
	client  *agentproto.Client
	cluster string
	log     *slog.Logger

	mu     sync.Mutex
	tasks  []task.Task
	hosts  map[string]bool
	rev    int64
	pulse  chan struct{}
	synced chan struct{}
	once   sync.Once
}

var _ ControlPlane = (*Remote)(nil)

// NewRemote returns the remote control plane of cluster behind client.
func NewRemote(client *agentproto.Client, cluster string, log *slog.Logger) *Remote {
	if cluster == "" {
		cluster = task.DefaultCluster
	}
	if log == nil {
		log = slog.Default()
	}
	return &Remote{client: client, cluster: cluster, log: log, hosts: map[string]bool{},
		pulse: make(chan struct{}), synced: make(chan struct{})}
}

// Run follows the control plane's tasks until ctx is done.
func (r *Remote) Run(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		after := r.rev
		r.mu.Unlock()
		w, err := r.client.WatchTasks(ctx, r.cluster, podtask.StartedBy, after)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("watching the control plane's tasks", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		r.mu.Lock()
		r.tasks, r.hosts, r.rev = w.Tasks, w.Hosts, w.Revision
		close(r.pulse)
		r.pulse = make(chan struct{})
		r.mu.Unlock()
		r.once.Do(func() { close(r.synced) })
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *Remote) FargateProfiles(ctx context.Context, cluster string) ([]agentproto.FargateProfile, error) {
	return r.client.FargateProfiles(ctx, cluster)
}

func (r *Remote) SubmitTask(ctx context.Context, t *task.Task) (*task.Task, error) {
	return r.client.SubmitTask(ctx, t)
}

func (r *Remote) StopTaskWith(ctx context.Context, cluster, id, code, reason string) error {
	return r.client.StopTaskWith(ctx, cluster, id, code, reason)
}

// TaskSnapshot returns the tasks of the last watch, waiting for the first.
func (r *Remote) TaskSnapshot(ctx context.Context) ([]*task.Task, error) {
	select {
	case <-r.synced:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*task.Task, len(r.tasks))
	for i := range r.tasks {
		out[i] = r.tasks[i].Clone()
	}
	return out, nil
}

func (r *Remote) Changes() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulse
}

func (r *Remote) HostAlive(hostID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[hostID]
}

func (r *Remote) TaskLogs(ctx context.Context, cluster, id string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
	return r.client.TaskLogs(ctx, cluster, id, o, emit)
}

func (r *Remote) TaskExec(ctx context.Context, cluster, id, container string, p runtime.ExecProcess) (int, error) {
	return r.client.TaskExec(ctx, cluster, id, container, p)
}

func (r *Remote) TaskPortForward(ctx context.Context, cluster, id string, port int) (agentproto.Conn, error) {
	return r.client.TaskPortForward(ctx, cluster, id, port)
}
