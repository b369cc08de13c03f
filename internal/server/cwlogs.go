package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

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
	if len(b.Events) > cwlogs.MaxBatchEvents {
		return agentproto.LogEventsAck{}, errdefs.InvalidArgument("a batch holds %d log events; at most %d are accepted", len(b.Events), cwlogs.MaxBatchEvents)
	}
	evs := make([]cwlogs.Event, len(b.Events))
	for i, e := range b.Events {
		if len(e.Message) > cwlogs.MaxEventBytes {
			return agentproto.LogEventsAck{}, errdefs.InvalidArgument("log event %d holds %d bytes; at most %d are accepted", i, len(e.Message), cwlogs.MaxEventBytes)
		}
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

// shipped reports whether the containers of t that a log read selects
// (container, or all) all ship their output to the log store.
func shipped(t *task.Task, container string) bool {
	n := 0
	for _, c := range t.Containers {
		if container != "" && c.Name != container {
			continue
		}
		if c.Log == nil {
			return false
		}
		n++
	}
	return n > 0
}

// shippedLogPoll is how often a followed read of shipped logs looks for
// new events, and shippedLogQuiet how long it waits for the last ones
// after the task stopped.
const (
	shippedLogPoll  = 500 * time.Millisecond
	shippedLogQuiet = 3 * time.Second
)

// shippedLogs reads the logs of t's awslogs containers from the log
// store, where they outlive the task's host: `vessel logs` of such a task
// works once its host is gone. The store keeps no stream name: lines are
// shown as stdout. Following ends once the task has stopped and no event
// came for shippedLogQuiet.
func (s *Server) shippedLogs(ctx context.Context, t *task.Task, o agentproto.LogOptions, emit func(agentproto.LogLine) error) error {
	type source struct {
		container, group, stream string
		after                    int64
	}
	var srcs []*source
	for _, c := range t.Containers {
		if o.Container == "" || c.Name == o.Container {
			srcs = append(srcs, &source{c.Name, c.Log.Group, c.Log.StreamName(c.Name, t.ID), -1})
		}
	}
	first := true
	var quietSince time.Time
	for {
		var batch []agentproto.LogLine
		for _, src := range srcs {
			evs, err := s.cwlogs.Events(ctx, src.group, src.stream, src.after)
			if errdefs.IsNotFound(err) {
				continue // not created yet, or deleted
			} else if err != nil {
				return err
			}
			if len(evs) > 0 {
				src.after = evs[len(evs)-1].Pos
			}
			if first && o.Tail > 0 && len(evs) > o.Tail {
				evs = evs[len(evs)-o.Tail:]
			}
			for _, e := range evs {
				if o.Since.IsZero() || !e.Time.Before(o.Since) {
					batch = append(batch, agentproto.LogLine{Time: e.Time, Container: src.container, Stream: "stdout", Text: e.Message})
				}
			}
		}
		first = false
		slices.SortStableFunc(batch, func(a, b agentproto.LogLine) int { return a.Time.Compare(b.Time) })
		for _, l := range batch {
			if err := emit(l); err != nil {
				return err
			}
		}
		if !o.Follow {
			return nil
		}
		var cur task.Task
		if _, err := getJSON(ctx, s.store, taskKey(t.ID), &cur); err != nil || cur.LastStatus == task.StatusStopped {
			switch {
			case len(batch) > 0 || quietSince.IsZero():
				quietSince = time.Now()
			case time.Since(quietSince) >= shippedLogQuiet:
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(shippedLogPoll):
		}
	}
}
