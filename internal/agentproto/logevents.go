package agentproto

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// LogEvent is one event of a container's output shipped to the control
// plane's log store: Start and End are the offsets in the container's log
// file where the event's lines begin and end.
type LogEvent struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	Start   int64     `json:"start"`
	End     int64     `json:"end"`
}

// LogEventsBatch is a batch of one container's events, in file order.
type LogEventsBatch struct {
	Container string     `json:"container"`
	Events    []LogEvent `json:"events"`
}

// LogEventsAck says up to which offset of the container's log file the
// control plane holds the events: the agent resumes from there.
type LogEventsAck struct {
	Acked int64 `json:"acked"`
}

// LogStreamsResult answers CreateTaskLogStreams: Failure, when set, is
// why the task cannot start (its log group does not exist), in ECS's
// words.
type LogStreamsResult struct {
	Failure string `json:"failure,omitempty"`
}

// LogSink is what an agent ships the output of its tasks' awslogs
// containers to. The control plane takes the log group and stream from the
// task's own record, never from the agent.
type LogSink interface {
	// CreateTaskLogStreams creates the streams of the task's awslogs
	// containers (and their groups where awslogs-create-group is true),
	// before the task starts. It blocks on the store. A task not placed
	// on host hostID is an error of kind errdefs.ErrNotFound; a missing
	// group is no error but LogStreamsResult.Failure.
	CreateTaskLogStreams(ctx context.Context, hostID, taskID string) (LogStreamsResult, error)
	// PutTaskLogEvents stores a batch of one container's events and
	// returns what the stream holds up to; events at or before what it
	// holds already are dropped, so a batch sent again is harmless. A task
	// not placed on host hostID, or a container that does not use
	// awslogs, is an error of kind errdefs.ErrNotFound.
	PutTaskLogEvents(ctx context.Context, hostID, taskID string, b LogEventsBatch) (LogEventsAck, error)
}

var _ LogSink = (*Client)(nil)

// TaskLogStreamsPath and TaskLogEventsPath are the agent protocol's routes
// of LogSink.
func TaskLogStreamsPath(hostID, taskID string) string {
	return "/agent/v1/hosts/" + url.PathEscape(hostID) + "/tasks/" + url.PathEscape(taskID) + "/log-streams"
}

func TaskLogEventsPath(hostID, taskID string) string {
	return "/agent/v1/hosts/" + url.PathEscape(hostID) + "/tasks/" + url.PathEscape(taskID) + "/log-events"
}

// CreateTaskLogStreams implements LogSink.
func (c *Client) CreateTaskLogStreams(ctx context.Context, hostID, taskID string) (LogStreamsResult, error) {
	var out LogStreamsResult
	err := c.do(ctx, http.MethodPost, TaskLogStreamsPath(hostID, taskID), struct{}{}, &out)
	return out, err
}

// PutTaskLogEvents implements LogSink.
func (c *Client) PutTaskLogEvents(ctx context.Context, hostID, taskID string, b LogEventsBatch) (LogEventsAck, error) {
	var out LogEventsAck
	err := c.do(ctx, http.MethodPost, TaskLogEventsPath(hostID, taskID), b, &out)
	return out, err
}
