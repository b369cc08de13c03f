package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// execers holds the execers of in-process agents, by host.
type execers struct {
	mu    sync.Mutex
	local map[string]runtime.Execer
}

// SetLocalExecer makes execs in tasks on hostID run with ex: the
// in-process agent of `vessel server`, whose Exec takes task IDs.
func (s *Server) SetLocalExecer(hostID string, ex runtime.Execer) {
	s.execs.mu.Lock()
	defer s.execs.mu.Unlock()
	if s.execs.local == nil {
		s.execs.local = map[string]runtime.Execer{}
	}
	s.execs.local[hostID] = ex
}

// execTarget is where an exec in a task runs: its container (resolved) and
// the host's execer.
type execTarget struct {
	task      string
	container string
	run       func(ctx context.Context, p runtime.ExecProcess) (int, error)
}

// runningTask returns task id of cluster if it is RUNNING on a host; what
// (exec, port-forward) names the call in errors.
func (s *Server) runningTask(ctx context.Context, cluster, id, what string) (*task.Task, error) {
	var t task.Task
	if _, err := getJSON(ctx, s.store, taskKey(id), &t); err != nil || t.Cluster != cluster {
		return nil, errdefs.NotFound("task %s not found in cluster %s", id, cluster)
	}
	if t.LastStatus != task.StatusRunning || t.HostID == "" {
		return nil, errdefs.Conflict("task %s is %s: %s needs a RUNNING task", id, t.LastStatus, what)
	}
	return &t, nil
}

// agentEndpoint returns a client signed for the remote agent of t's host
// and the base URL of that agent's endpoint; what (exec, port-forward)
// names the call in errors.
func (s *Server) agentEndpoint(ctx context.Context, t *task.Task, what string) (*agentproto.ExecClient, string, error) {
	var h hostRecord
	if _, err := getJSON(ctx, s.store, hostKey(t.HostID), &h); err != nil {
		return nil, "", errdefs.Unavailable("host %s of task %s is not registered any more: its containers are out of reach", t.HostID, t.ID)
	}
	if h.LogsEndpoint == "" {
		return nil, "", errdefs.Unavailable("host %s of task %s serves no %s: its agent runs without an endpoint (vessel agent --listen)", t.HostID, t.ID, what)
	}
	key, hc, err := s.agentClient(ctx, h)
	if err != nil {
		return nil, "", err
	}
	client := &agentproto.ExecClient{Key: key, Region: s.cfg.Region}
	if tr, ok := hc.Transport.(*http.Transport); ok {
		client.TLS = tr.TLSClientConfig
	}
	return client, strings.TrimSuffix(h.LogsEndpoint, "/"), nil
}

// resolveExec checks that task id of cluster runs and has container (""
// meaning its first), and finds its host's execer, without running
// anything.
func (s *Server) resolveExec(ctx context.Context, cluster, id, container string) (*execTarget, error) {
	t, err := s.runningTask(ctx, cluster, id, "exec")
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(t.Containers))
	for _, c := range t.Containers {
		names = append(names, c.Name)
	}
	if container == "" && len(names) > 0 {
		container = names[0]
	}
	c := t.Container(container)
	if c == nil {
		return nil, errdefs.NotFound("task %s has no container %q (containers: %s)", id, container, strings.Join(names, ", "))
	}
	if c.LastStatus == task.StatusStopped {
		return nil, errdefs.Conflict("container %q of task %s has stopped: exec needs a running container", container, id)
	}
	target := &execTarget{task: id, container: container}
	s.execs.mu.Lock()
	ex := s.execs.local[t.HostID]
	s.execs.mu.Unlock()
	if ex != nil {
		target.run = func(ctx context.Context, p runtime.ExecProcess) (int, error) {
			return ex.Exec(ctx, id, container, p)
		}
		return target, nil
	}
	client, base, err := s.agentEndpoint(ctx, t, "exec")
	if err != nil {
		return nil, err
	}
	endpoint := base + "/agent/v1/exec/" + url.PathEscape(id)
	target.run = func(ctx context.Context, p runtime.ExecProcess) (int, error) {
		return client.Exec(ctx, endpoint, container, p)
	}
	return target, nil
}

// TaskExec runs p in a container of a running task (the first one when
// container is ""), on the host that runs it: through the in-process
// agent's execer or the remote agent's endpoint. It blocks until the
// command exits and returns its exit code. A task not in cluster, or
// without that container, is an error of kind errdefs.ErrNotFound (naming
// the task's containers); a task or container not running one of kind
// errdefs.ErrConflict.
func (s *Server) TaskExec(ctx context.Context, cluster, taskID, container string, p runtime.ExecProcess) (int, error) {
	if len(p.Args) == 0 {
		return -1, errdefs.InvalidArgument("exec needs a command to run")
	}
	target, err := s.resolveExec(ctx, cluster, taskID, container)
	if err != nil {
		return -1, err
	}
	return target.run(ctx, p)
}

// routeExec serves the exec and port-forward relays.
func (s *Server) routeExec(mux *http.ServeMux) {
	mux.HandleFunc("POST /vessel/v1/clusters/{cluster}/tasks/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:ExecuteCommand")
		agentproto.ServeExec(w, r, &publicExec{s: s, cluster: r.PathValue("cluster"), id: taskID(r.PathValue("id"))})
	})
	mux.HandleFunc("POST /vessel/v1/clusters/{cluster}/tasks/{id}/portforward", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:ForwardTaskPort")
		agentproto.ServePortForward(w, r, publicPortForward{s: s, cluster: r.PathValue("cluster"), id: taskID(r.PathValue("id"))})
	})
}

// publicExec is the agentproto.ExecTarget of the public exec route.
type publicExec struct {
	s           *Server
	cluster, id string
	target      *execTarget
}

func (e *publicExec) CheckExec(ctx context.Context, container string) error {
	t, err := e.s.resolveExec(ctx, e.cluster, e.id, container)
	e.target = t
	return err
}

func (e *publicExec) Exec(ctx context.Context, container string, p runtime.ExecProcess) (int, error) {
	return e.target.run(ctx, p)
}
