package agentproto

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/profile"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// This file is the bridge protocol: what a Kubernetes bridge running
// apart from the control plane (`vessel k8s bridge --server URL`) needs of
// it, over the same SigV4-signed HTTP as the agent protocol. The routes
// live under /vessel/v1 on the control plane's API port.

// FargateProfile is what the bridge needs of a stored profile.
type FargateProfile struct {
	Cluster   string             `json:"cluster"`
	Name      string             `json:"name"`
	Selectors []profile.Selector `json:"selectors"`
	Subnets   []string           `json:"subnets,omitempty"`
	Tags      map[string]string  `json:"tags,omitempty"`
	// Status is CREATING, ACTIVE or DELETING.
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
}

// TaskWatch is one answer of the task watch: every task of the cluster
// started by the asker, the store revision they reflect, and which hosts
// are alive.
type TaskWatch struct {
	Revision int64           `json:"revision"`
	Tasks    []task.Task     `json:"tasks"`
	Hosts    map[string]bool `json:"hosts"`
}

// StopRequest asks a task to stop with a stop code and reason.
type StopRequest struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Routes of the bridge protocol.
const (
	routeBridgeProfiles = "/vessel/v1/clusters/%s/fargate-profiles"
	routeBridgeTasks    = "/vessel/v1/tasks"
	routeBridgeStop     = "/vessel/v1/clusters/%s/tasks/%s/stop"
	routeTaskLogs       = "/vessel/v1/clusters/%s/tasks/%s/logs"
	routeTaskExec       = "/vessel/v1/clusters/%s/tasks/%s/exec"
	routeTaskPortFwd    = "/vessel/v1/clusters/%s/tasks/%s/portforward"
)

func pathf(format string, args ...string) string {
	esc := make([]any, len(args))
	for i, a := range args {
		esc[i] = url.PathEscape(a)
	}
	return fmt.Sprintf(format, esc...)
}

// FargateProfiles returns the cluster's profiles.
func (c *Client) FargateProfiles(ctx context.Context, cluster string) ([]FargateProfile, error) {
	var out []FargateProfile
	err := c.do(ctx, http.MethodGet, pathf(routeBridgeProfiles, cluster), nil, &out)
	return out, err
}

// SubmitTask stores t as a new task and returns it as stored.
func (c *Client) SubmitTask(ctx context.Context, t *task.Task) (*task.Task, error) {
	var out task.Task
	// A new task each time: never sent again to another replica once one
	// may have stored it.
	if err := c.once(ctx, http.MethodPost, routeBridgeTasks, t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StopTaskWith asks a task to stop.
func (c *Client) StopTaskWith(ctx context.Context, cluster, id, code, reason string) error {
	return c.do(ctx, http.MethodPost, pathf(routeBridgeStop, cluster, id), StopRequest{Code: code, Reason: reason}, nil)
}

// WatchTasks returns the tasks of cluster started by startedBy once the
// store has moved past revision after, or after the long-poll timeout.
func (c *Client) WatchTasks(ctx context.Context, cluster, startedBy string, after int64) (TaskWatch, error) {
	var out TaskWatch
	q := url.Values{"cluster": {cluster}, "startedBy": {startedBy}, "after": {strconv.FormatInt(after, 10)}}
	err := c.poll(ctx, http.MethodGet, routeBridgeTasks+"?"+q.Encode(), nil, &out)
	return out, err
}

// TaskLogs streams a task's logs through the control plane's relay.
func (c *Client) TaskLogs(ctx context.Context, cluster, id string, o LogOptions, emit func(LogLine) error) error {
	u := *c.base()
	u.Path = strings.TrimSuffix(u.Path, "/") + pathf(routeTaskLogs, cluster, id)
	u.RawQuery = EncodeLogQuery(o).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if err := auth.SignRequest(ctx, req, c.key, c.region, SigningService, nil, time.Now()); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return ReadLogStream(resp, emit)
}

// TaskExec runs a command in a task's container through the control
// plane's exec relay.
func (c *Client) TaskExec(ctx context.Context, cluster, id, container string, p runtime.ExecProcess) (int, error) {
	u := *c.base()
	u.Path = strings.TrimSuffix(u.Path, "/") + pathf(routeTaskExec, cluster, id)
	u.RawQuery = ""
	return (&ExecClient{Key: c.key, Region: c.region, TLS: c.tls}).Exec(ctx, u.String(), container, p)
}

// TaskPortForward connects to port of a task's own address through the
// control plane's port-forward relay (PortForward): the agent of the
// task's host makes the connection there. ctx bounds its life.
func (c *Client) TaskPortForward(ctx context.Context, cluster, id string, port int) (Conn, error) {
	u := *c.base()
	u.Path = strings.TrimSuffix(u.Path, "/") + pathf(routeTaskPortFwd, cluster, id)
	u.RawQuery = ""
	return (&ExecClient{Key: c.key, Region: c.region, TLS: c.tls}).PortForward(ctx, u.String(), port)
}
