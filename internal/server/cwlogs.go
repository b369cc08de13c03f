package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// maxLogEventsBody bounds a batch of log events from an agent.
const maxLogEventsBody = 4 << 20

// serveCloudWatchLogs hands a CloudWatch Logs request (X-Amz-Target
// Logs_20140328.*), verified and authorised, to the log store.
func (s *Server) serveCloudWatchLogs(w http.ResponseWriter, r *http.Request) {
	action, _ := cwlogs.Action(r.Header.Get("X-Amz-Target"))
	if !slices.Contains(cwlogs.Actions(), action) {
		action = "logs:unknown" // a bounded set of metric labels
	}
	s.metrics.setOperation(r, action)
	s.cwlogs.ServeHTTP(w, r)
}

var _ agentproto.LogSink = (*Server)(nil)

// placedTask reads task taskID from the store (not the task cache, so that
// a task just placed is found) and checks that it is placed on hostID.
func (s *Server) placedTask(ctx context.Context, hostID, taskID string) (*task.Task, error) {
	var t task.Task
	_, err := getJSON(ctx, s.store, taskKey(taskID), &t)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if err != nil || t.HostID != hostID {
		return nil, errdefs.NotFound("task %s is not placed on host %s: only the host running a task ships its logs", taskID, hostID)
	}
	return &t, nil
}

// CreateTaskLogStreams implements agentproto.LogSink: the streams of the
// task's awslogs containers, named prefix/container-name/task-id in the
// group each container's logConfiguration names.
func (s *Server) CreateTaskLogStreams(ctx context.Context, hostID, taskID string) (agentproto.LogStreamsResult, error) {
	t, err := s.placedTask(ctx, hostID, taskID)
	if err != nil {
		return agentproto.LogStreamsResult{}, err
	}
	for _, c := range t.Containers {
		lc := c.Log
		if lc == nil {
			continue
		}
		err := s.cwlogs.EnsureStream(ctx, lc.Group, lc.StreamName(c.Name, t.ID), lc.CreateGroup)
		if errdefs.IsNotFound(err) {
			s.log.Info("a task's log group does not exist", "task", taskID, "host", hostID, "container", c.Name, "group", lc.Group)
			return agentproto.LogStreamsResult{Failure: fmt.Sprintf("%s: failed to validate logger args: create stream has been retried 1 times: "+
				"failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist. (container %s, log group %s; "+
				"create it, or set awslogs-create-group to true)", task.ReasonResourceInitialization, c.Name, lc.Group)}, nil
		}
		if err != nil {
			return agentproto.LogStreamsResult{}, err
		}
	}
	return agentproto.LogStreamsResult{}, nil
}

// PutTaskLogEvents implements agentproto.LogSink.
func (s *Server) PutTaskLogEvents(ctx context.Context, hostID, taskID string, b agentproto.LogEventsBatch) (agentproto.LogEventsAck, error) {
	t, err := s.placedTask(ctx, hostID, taskID)
	if err != nil {
		return agentproto.LogEventsAck{}, err
	}
	c := t.Container(b.Container)
	if c == nil || c.Log == nil {
		return agentproto.LogEventsAck{}, errdefs.NotFound("task %s has no container %q whose logConfiguration uses the awslogs driver", taskID, b.Container)
	}
	evs := make([]cwlogs.Event, len(b.Events))
	for i, e := range b.Events {
		if e.End <= e.Start || i > 0 && e.Start < b.Events[i-1].End {
			return agentproto.LogEventsAck{}, errdefs.InvalidArgument("log event %d spans offsets %d to %d: events must span growing, non-overlapping offsets", i, e.Start, e.End)
		}
		evs[i] = cwlogs.Event{Time: e.Time, Message: e.Message, Start: e.Start, End: e.End}
	}
	stream := c.Log.StreamName(c.Name, t.ID)
	acked, err := s.cwlogs.Ingest(ctx, c.Log.Group, stream, evs)
	if errdefs.IsNotFound(err) {
		// The group was deleted while the task ran: made again, as the
		// awslogs driver would fail; the events are not lost.
		if err = s.cwlogs.EnsureStream(ctx, c.Log.Group, stream, true); err == nil {
			acked, err = s.cwlogs.Ingest(ctx, c.Log.Group, stream, evs)
		}
	}
	return agentproto.LogEventsAck{Acked: acked}, err
}

// routeTaskLogEvents serves the agent protocol's routes of LogSink.
func (s *Server) routeTaskLogEvents(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/hosts/{id}/tasks/{task}/log-streams", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		out, err := s.CreateTaskLogStreams(r.Context(), r.PathValue("id"), r.PathValue("task"))
		writeAgent(w, out, err)
	})
	mux.HandleFunc("POST /agent/v1/hosts/{id}/tasks/{task}/log-events", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxLogEventsBody)
		var in agentproto.LogEventsBatch
		if !decodeAgent(w, r, &in) {
			return
		}
		out, err := s.PutTaskLogEvents(r.Context(), r.PathValue("id"), r.PathValue("task"), in)
		writeAgent(w, out, err)
	})
}
