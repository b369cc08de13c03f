package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
	"vessel.dev/vessel/internal/task"
)

// serveSecrets hands a Secrets Manager or SSM request (X-Amz-Target
// secretsmanager.* or AmazonSSM.*), verified and authorised, to
// the secrets store.
func (s *Server) serveSecrets(w http.ResponseWriter, r *http.Request) {
	action, _ := secrets.Action(r.Header.Get("X-Amz-Target"))
	if !slices.Contains(secrets.Actions(), action) {
		action = "secrets:unknown" // a bounded set of metric labels
	}
	s.metrics.setOperation(r, action)
	if s.secrets == nil {
		s.writeECSError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "this control plane serves no secrets store: Secrets Manager and SSM operations are not available"})
		return
	}
	s.secrets.ServeHTTP(w, r)
}

var _ agentproto.SecretSource = (*Server)(nil)

// TaskSecrets implements agentproto.SecretSource: the values of the
// secrets of a task placed on hostID, read from the store (not the task
// cache) so that a task just placed is found. A secret that cannot be read
// fails the task through TaskSecrets.Failure, which names it.
func (s *Server) TaskSecrets(ctx context.Context, hostID, taskID string) (agentproto.TaskSecrets, error) {
	var t task.Task
	_, err := getJSON(ctx, s.store, taskKey(taskID), &t)
	if err != nil && !errdefs.IsNotFound(err) {
		return agentproto.TaskSecrets{}, err
	}
	if err != nil || t.HostID != hostID || t.DesiredStatus == task.StatusStopped || t.LastStatus == task.StatusStopped {
		return agentproto.TaskSecrets{}, errdefs.NotFound("task %s is not placed on host %s, or is stopped: only the host running a task gets its secrets", taskID, hostID)
	}
	out := agentproto.TaskSecrets{Env: map[string]map[string]string{}, RegistryAuth: map[string]task.RegistryAuth{}}
	n := 0
	for _, c := range t.Containers {
		if from := c.RegistryCredentialsFrom; from != "" {
			ra, err := s.registryCredentials(ctx, from)
			if err != nil {
				if ctx.Err() != nil {
					return agentproto.TaskSecrets{}, ctx.Err()
				}
				s.log.Info("a task's registry credentials could not be read", "task", taskID, "host", hostID, "container", c.Name, "value_from", from, "err", err)
				return agentproto.TaskSecrets{Failure: fmt.Sprintf("%v (container %s, repositoryCredentials)", err, c.Name)}, nil
			}
			out.RegistryAuth[c.Name] = ra
			n++
		}
		for _, sec := range c.Secrets {
			if s.secrets == nil {
				out.Env, out.Failure = nil, "this control plane serves no secrets store, so secret "+sec.ValueFrom+" cannot be read"
				return out, nil
			}
			v, err := s.secrets.Resolve(ctx, sec.ValueFrom)
			if err != nil {
				if ctx.Err() != nil {
					return agentproto.TaskSecrets{}, ctx.Err()
				}
				out.Env, out.Failure = nil, fmt.Sprintf("%v (container %s, environment variable %s)", err, c.Name, sec.Name)
				s.log.Info("a task's secret could not be read", "task", taskID, "host", hostID, "container", c.Name, "value_from", sec.ValueFrom, "err", err)
				return out, nil
			}
			if out.Env[c.Name] == nil {
				out.Env[c.Name] = map[string]string{}
			}
			out.Env[c.Name][sec.Name] = v
			n++
		}
	}
	s.log.Debug("a task's secrets were read for its host", "task", taskID, "host", hostID, "secrets", n)
	return out, nil
}

// registryCredentials reads a repositoryCredentials secret: JSON with
// username and password, as ECS reads it.
func (s *Server) registryCredentials(ctx context.Context, from string) (task.RegistryAuth, error) {
	if s.secrets == nil {
		return task.RegistryAuth{}, errdefs.NotFound("this control plane serves no secrets store, so secret %s cannot be read", from)
	}
	v, err := s.secrets.Resolve(ctx, from)
	if err != nil {
		return task.RegistryAuth{}, err
	}
	var ra task.RegistryAuth
	if err := json.Unmarshal([]byte(v), &ra); err != nil || ra.Username == "" || ra.Password == "" {
		// The parser's message may quote the value: say only what is wrong.
		return task.RegistryAuth{}, errdefs.InvalidArgument("secret %s is not registry credentials: its value must be JSON with username and password", from)
	}
	return ra, nil
}

// routeTaskSecrets serves the agent protocol's route of TaskSecrets.
func (s *Server) routeTaskSecrets(mux *http.ServeMux) {
	mux.HandleFunc("GET /agent/v1/hosts/{id}/tasks/{task}/secrets", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		out, err := s.TaskSecrets(r.Context(), r.PathValue("id"), r.PathValue("task"))
		writeAgent(w, out, err)
	})
}
