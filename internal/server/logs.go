package server

import (
	"context"
	"net/http"
	"sync"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/tlsutil"
)

// logSources holds the log sources of in-process agents, by host.
type logSources struct {
	mu    sync.Mutex
	local map[string]agentproto.LogSource
}

// SetLocalLogSource makes the logs of tasks on hostID come from src: the
// in-process agent of `vessel server`.
func (s *Server) SetLocalLogSource(hostID string, src agentproto.LogSource) {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	if s.logs.local == nil {
		s.logs.local = map[string]agentproto.LogSource{}
	}
	s.logs.local[hostID] = src
}

// TaskLogs streams a task's logs from the host that runs or ran it, or
// from the control plane's log store when the containers read ship their
// output there (awslogs).
func (s *Server) TaskLogs(ctx context.Context, cluster, id string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
	var t task.Task
	if _, err := getJSON(ctx, s.store, taskKey(id), &t); err != nil || t.Cluster != cluster {
		return errdefs.NotFound("task %s not found in cluster %s", id, cluster)
	}
	if t.HostID == "" {
		return errdefs.NotFound("task %s has not been placed on a host yet: it has no logs", id)
	}
	if o.Container != "" && t.Container(o.Container) == nil {
		names := make([]string, 0, len(t.Containers))
		for _, c := range t.Containers {
			names = append(names, c.Name)
		}
		return errdefs.InvalidArgument("task %s has no container %q (containers: %v)", id, o.Container, names)
	}
	if shipped(&t, o.Container) {
		return s.shippedLogs(ctx, &t, o, emit) // cwlogs.go
	}
	s.logs.mu.Lock()
	src := s.logs.local[t.HostID]
	s.logs.mu.Unlock()
	if src == nil {
		var h hostRecord
		if _, err := getJSON(ctx, s.store, hostKey(t.HostID), &h); err != nil {
			return errdefs.Unavailable("host %s of task %s is not registered any more: its logs are out of reach", t.HostID, id)
		}
		if h.LogsEndpoint == "" {
			return errdefs.Unavailable("host %s serves no logs", t.HostID)
		}
		key, hc, err := s.agentClient(ctx, h)
		if err != nil {
			return err
		}
		src = &agentproto.LogsClient{Endpoint: h.LogsEndpoint, Key: key, Region: s.cfg.Region, HTTP: hc}
	}
	return src.Logs(ctx, id, o, emit)
}

func (s *Server) routeLogs(mux *http.ServeMux) {
	mux.HandleFunc("GET /vessel/v1/clusters/{cluster}/tasks/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.setOperation(r, "vessel:GetTaskLogs")
		cluster, id := r.PathValue("cluster"), taskID(r.PathValue("id"))
		agentproto.ServeLogs(w, r, logSourceFunc(func(ctx context.Context, _ string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
			return s.TaskLogs(ctx, cluster, id, o, emit)
		}), id)
	})
}

// logSourceFunc adapts a function to agentproto.LogSource.
type logSourceFunc func(ctx context.Context, taskID string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error

func (f logSourceFunc) Logs(ctx context.Context, taskID string, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
	return f(ctx, taskID, o, emit)
}

// agentClient is how the control plane calls host h's endpoint: signed
// with the host's own credential (the agent accepts no other key), over
// TLS pinned to the certificate the host reported; a host that joined
// before host credentials existed gets the first admin key.
func (s *Server) agentClient(ctx context.Context, h hostRecord) (auth.Key, *http.Client, error) {
	key, ok, err := s.hostCredential(ctx, h.ID)
	if err != nil {
		return auth.Key{}, nil, err
	}
	if !ok {
		if len(s.cfg.Keys) == 0 {
			return auth.Key{}, nil, errdefs.Unavailable("host %s has no credential to reach its endpoint with", h.ID)
		}
		key = s.cfg.Keys[0]
	}
	hc := &http.Client{}
	if h.EndpointCertSHA256 != "" {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsutil.PinnedConfig(h.EndpointCertSHA256)
		hc.Transport = tr
	}
	return key, hc, nil
}
