package agentproto

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// DefaultLongPoll is how long the server holds an assignments request open
// when nothing changes.
const DefaultLongPoll = 30 * time.Second

// SigningService is the SigV4 service name of the agent protocol.
const SigningService = "vessel"

// ErrorBody is the wire shape of an agent protocol error.
type ErrorBody struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// ErrAccessDenied is the kind of a call the caller's credential does not
// allow: a host credential acting for another host, or a revoked host.
var ErrAccessDenied = errdefs.ErrPermissionDenied

var kinds = []struct {
	name   string
	kind   error
	status int
}{
	{"NotFound", errdefs.ErrNotFound, http.StatusNotFound},
	{"AlreadyExists", errdefs.ErrAlreadyExists, http.StatusConflict},
	{"Conflict", errdefs.ErrConflict, http.StatusConflict},
	{"InvalidArgument", errdefs.ErrInvalidArgument, http.StatusBadRequest},
	{"Unavailable", errdefs.ErrUnavailable, http.StatusServiceUnavailable},
	{"LimitExceeded", errdefs.ErrLimitExceeded, http.StatusTooManyRequests},
	{"PermissionDenied", errdefs.ErrPermissionDenied, http.StatusForbidden},
}

// WriteError writes err with its kind, so that the client can rebuild it.
func WriteError(w http.ResponseWriter, err error) {
	body, status := errorBodyOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// errorBodyOf is err's wire shape and HTTP status.
func errorBodyOf(err error) (ErrorBody, int) {
	for _, k := range kinds {
		if errors.Is(err, k.kind) {
			return ErrorBody{Kind: k.name, Message: err.Error()}, k.status
		}
	}
	return ErrorBody{Kind: "Internal", Message: err.Error()}, http.StatusInternalServerError
}

// Client is the ControlPlane of a remote control plane, over HTTP with
// SigV4-signed requests. It may know several replicas of the control plane:
// it keeps using the one that last answered and moves to the next when one
// stops answering (connection refused or reset, a timeout, an HTTP 5xx),
// within the same call. The agent protocol's calls are all safe to repeat
// (registration and heartbeats refresh, reports are idempotent).
type Client struct {
	bases  []*url.URL
	cur    atomic.Int64 // index in bases of the replica in use
	key    auth.Key
	region string
	http   *http.Client
	tls    *tls.Config
	log    *slog.Logger // nil: moves between replicas are not logged
	// callTimeout bounds one attempt of an ordinary call on one replica, so
	// that a replica that hangs (paused, partitioned) is left in time; a
	// long poll gets DefaultLongPoll more.
	callTimeout time.Duration

	// moved is closed (and replaced) whenever the replica in use changes,
	// so that a long poll waiting on the one left behind gives up at once.
	movedMu sync.Mutex
	moved   chan struct{}
}

var (
	_ ControlPlane  = (*Client)(nil)
	_ NetworkSource = (*Client)(nil)
)

// DefaultCallTimeout bounds one attempt of a call on one replica.
const DefaultCallTimeout = 10 * time.Second

// ParseEndpoints splits a comma-separated list of control plane URLs (one
// per replica), checking each.
func ParseEndpoints(endpoints string) ([]*url.URL, error) {
	var out []*url.URL
	for _, e := range strings.Split(endpoints, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errdefs.InvalidArgument("control plane endpoint %q is not an http(s) URL; give one URL per replica, separated by commas, e.g. https://10.0.0.1:8600,https://10.0.0.2:8600", e)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errdefs.InvalidArgument("no control plane endpoint given; give one URL per replica, separated by commas, e.g. https://10.0.0.1:8600")
	}
	return out, nil
}

// NewClient returns a client for the control plane at endpoint (e.g.
// http://10.0.0.1:8600, or several replicas' URLs separated by commas)
// signing with key.
func NewClient(endpoint string, key auth.Key, region string) (*Client, error) {
	bases, err := ParseEndpoints(endpoint)
	if err != nil {
		return nil, err
	}
	if key.AccessKeyID == "" || key.SecretAccessKey == "" {
		return nil, errdefs.InvalidArgument("an access key is required to talk to the control plane")
	}
	if region == "" {
		region = "us-east-1"
	}
	return &Client{bases: bases, key: key, region: region, http: &http.Client{Transport: transport(nil)}, callTimeout: DefaultCallTimeout}, nil
}

// idleConnsPerReplica is how many idle connections a client keeps to a
// replica: a host's tasks report at once (dozens starting together), and
// with net/http's default of 2 every call past the second opened a
// connection of its own (a TLS handshake each, in production).
const idleConnsPerReplica = 64

// transport is the client's HTTP transport, trusting what cfg trusts (nil:
// the system's roots).
func transport(cfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = idleConnsPerReplica
	tr.TLSClientConfig = cfg
	return tr
}

// WithTLS makes c trust the server certificates cfg trusts (e.g. only the
// control plane's CA) and returns c.
func (c *Client) WithTLS(cfg *tls.Config) *Client {
	if cfg != nil {
		c.http.Transport = transport(cfg)
		c.tls = cfg
	}
	return c
}

// WithLogger makes c log when it moves from a replica that does not answer
// to another, and returns c.
func (c *Client) WithLogger(log *slog.Logger) *Client {
	c.log = log
	return c
}

// WithCallTimeout sets how long one attempt of an ordinary call waits for
// one replica before moving to the next (long polls wait DefaultLongPoll
// more), and returns c.
func (c *Client) WithCallTimeout(d time.Duration) *Client {
	if d > 0 {
		c.callTimeout = d
	}
	return c
}

// Endpoint returns the URL of the replica in use.
func (c *Client) Endpoint() string { return c.base().String() }

func (c *Client) base() *url.URL { return c.bases[c.cur.Load()] }

// movedSignal is closed at the next change of the replica in use.
func (c *Client) movedSignal() <-chan struct{} {
	c.movedMu.Lock()
	defer c.movedMu.Unlock()
	if c.moved == nil {
		c.moved = make(chan struct{})
	}
	return c.moved
}

// use makes idx the replica in use if from still is, and wakes long polls
// waiting on another; it says whether it did.
func (c *Client) use(from, idx int64) bool {
	if from == idx || !c.cur.CompareAndSwap(from, idx) {
		return false
	}
	c.movedMu.Lock()
	if c.moved != nil {
		close(c.moved)
		c.moved = nil
	}
	c.movedMu.Unlock()
	return true
}

// Call sends a signed request to one of the control plane's own routes
// (path with its query), in as its JSON body when not nil, and decodes the
// JSON answer into out when not nil. Errors carry the answer's errdefs kind.
// A GET moves to another replica as every agent call does; any other
// method is sent to another only when it did not reach the first (its
// connection refused), as it may not be safe to repeat.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	if method == http.MethodGet {
		return c.do(ctx, method, path, in, out)
	}
	return c.once(ctx, method, path, in, out)
}

// do sends a call that is safe to repeat to the replica in use and, when
// it does not answer, to each other replica in turn; the first that
// answers becomes the one in use. The error of the last attempt is
// returned when none answers.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.send(ctx, false, true, method, path, in, out)
}

// once is do for a call that must not be applied twice (it creates
// something): it moves to another replica only while the call reaches
// none; a call that reached a replica and got no answer is not sent again
// (its error is of kind errdefs.ErrUnavailable; the next call goes to
// another replica).
func (c *Client) once(ctx context.Context, method, path string, in, out any) error {
	return c.send(ctx, false, false, method, path, in, out)
}

// poll is do for a long poll: each attempt waits DefaultLongPoll more, or
// until another call leaves the replica it waits on (paused, partitioned:
// the heartbeat finds out in callTimeout), and then asks the replica in use.
func (c *Client) poll(ctx context.Context, method, path string, in, out any) error {
	return c.send(ctx, true, true, method, path, in, out)
}

// outcome is how one attempt on one replica ended.
type outcome int

const (
	answered  outcome = iota // the replica answered (success or a refusal)
	notSent                  // the connection failed: the replica never saw the call
	noAnswer                 // sent, but no answer, or a 5xx: the call may have been applied
	abandoned                // a long poll given up because another call left its replica
)

// send makes the call on the replica in use and, as do and once say, on
// the others; a long poll waits DefaultLongPoll more per attempt.
func (c *Client) send(ctx context.Context, long, repeatable bool, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	timeout := c.callTimeout
	if long {
		timeout += DefaultLongPoll
	}
	n := int64(len(c.bases))
	idx := c.cur.Load()
	var err error
	for i := int64(0); i < n; i++ {
		var left <-chan struct{}
		if long {
			// Taken before reading the replica in use, so that no move
			// between the two goes unseen.
			left = c.movedSignal()
			idx = c.cur.Load()
		}
		var oc outcome
		oc, err = c.attempt(ctx, c.bases[idx], timeout, left, method, path, body, in != nil, out)
		switch {
		case oc == answered:
			c.use(c.cur.Load(), idx)
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case oc == abandoned:
			// Another call left this replica: ask the one it moved to
			// (this attempt does not count).
			idx = c.cur.Load()
			i--
			continue
		}
		next := (idx + 1) % n
		// Calls made meanwhile skip the replica that did not answer.
		if c.use(idx, next) && n > 1 && c.log != nil {
			c.log.Warn("a control plane replica does not answer; moving to the next", "replica", c.bases[idx].Host,
				"next", c.bases[next].Host, "err", err)
		}
		if oc == noAnswer && !repeatable {
			return err
		}
		idx = next
	}
	return err
}

// attempt makes one request to the replica at base.
func (c *Client) attempt(ctx context.Context, base *url.URL, timeout time.Duration, left <-chan struct{}, method, path string, body []byte, hasBody bool, out any) (outcome, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var gaveUp atomic.Bool
	if left != nil {
		go func() {
			select {
			case <-left:
				gaveUp.Store(true)
				cancel()
			case <-actx.Done():
			}
		}()
	}
	u := *base
	p, q, _ := strings.Cut(path, "?")
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	u.RawQuery = q
	req, err := http.NewRequestWithContext(actx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return answered, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := auth.SignRequest(actx, req, c.key, c.region, SigningService, body, time.Now()); err != nil {
		return answered, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answered, ctx.Err()
		}
		if gaveUp.Load() {
			return abandoned, err
		}
		oc := noAnswer
		if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
			oc = notSent
		}
		return oc, errdefs.Unavailable("control plane at %s unreachable: %v", base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return answered, ctx.Err()
		}
		if gaveUp.Load() {
			return abandoned, err
		}
		return noAnswer, errdefs.Unavailable("reading the answer of the control plane at %s: %v", base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb.Message = strings.TrimSpace(string(data))
		}
		if code := resp.Header.Get("X-Amzn-ErrorType"); eb.Kind == "" && code != "" {
			// A refused signature (UnrecognizedClientException, ...).
			eb.Message = code + ": " + eb.Message
		}
		// A replica that fails (its store unreachable, shutting down)
		// answers 5xx: another may do better.
		oc := answered
		if resp.StatusCode >= 500 {
			oc = noAnswer
		}
		for _, k := range kinds {
			if eb.Kind == k.name {
				return oc, fmt.Errorf("control plane: %s: %w", eb.Message, k.kind)
			}
		}
		if resp.StatusCode >= 500 {
			return noAnswer, errdefs.Unavailable("control plane at %s: HTTP %d: %s", base.Host, resp.StatusCode, eb.Message)
		}
		return answered, fmt.Errorf("control plane: HTTP %d: %s: %w", resp.StatusCode, eb.Message, errdefs.ErrInvalidArgument)
	}
	if out != nil {
		return answered, json.Unmarshal(data, out)
	}
	return answered, nil
}

// RegisterHost implements ControlPlane.
func (c *Client) RegisterHost(ctx context.Context, h Host) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts", h, nil)
}

// Heartbeat implements ControlPlane.
func (c *Client) Heartbeat(ctx context.Context, hostID string) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/heartbeat", nil, nil)
}

// ReportWarmPools implements WarmPoolReporter.
func (c *Client) ReportWarmPools(ctx context.Context, hostID string, pools []WarmPool) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/warm-pools", pools, nil)
}

// Assignments implements ControlPlane.
func (c *Client) Assignments(ctx context.Context, hostID string, after int64) (Assignments, error) {
	var out Assignments
	err := c.poll(ctx, http.MethodGet, fmt.Sprintf("/agent/v1/hosts/%s/assignments?after=%d&changes=1&wait=%s",
		url.PathEscape(hostID), after, DefaultLongPoll), nil, &out)
	return out, err
}

// ReportStatus sends reports about one task, as ReportStatuses does for
// several. One report goes as a JSON object, several as an array.
func (c *Client) ReportStatus(ctx context.Context, hostID string, reports ...StatusUpdate) error {
	var body any = reports
	switch len(reports) {
	case 0:
		return nil
	case 1:
		body = reports[0]
	}
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/status", body, nil)
}

// StatusesRequest is the body of a ReportStatuses call: each element of
// Tasks is the reports about one task.
type StatusesRequest struct {
	Tasks [][]StatusUpdate `json:"tasks"`
}

// StatusesResponse answers a ReportStatuses call: one result per task, in
// the request's order, null for a task whose reports were applied.
type StatusesResponse struct {
	Results []*ErrorBody `json:"results"`
}

// ErrorOf is the error of a task's result in a StatusesResponse (nil for
// a null one), of the kind the server wrote.
func ErrorOf(b *ErrorBody) error {
	if b == nil {
		return nil
	}
	return kindError(b.Kind, "control plane: "+b.Message)
}

// ErrorBodyOf is err as a task's result in a StatusesResponse (nil for
// nil), with its kind.
func ErrorBodyOf(err error) *ErrorBody {
	if err == nil {
		return nil
	}
	b, _ := errorBodyOf(err)
	return &b
}

// ReportStatuses implements ControlPlane.
func (c *Client) ReportStatuses(ctx context.Context, hostID string, tasks [][]StatusUpdate) ([]error, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	var resp StatusesResponse
	if err := c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/statuses", StatusesRequest{Tasks: tasks}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Results) != len(tasks) {
		return nil, fmt.Errorf("control plane answered %d results for the reports of %d tasks", len(resp.Results), len(tasks))
	}
	errs := make([]error, len(tasks))
	for i, b := range resp.Results {
		errs[i] = ErrorOf(b)
	}
	return errs, nil
}

// HostNetwork implements NetworkSource: a long poll, moving between
// replicas as Assignments does.
func (c *Client) HostNetwork(ctx context.Context, hostID string, after int64) (HostNetwork, error) {
	var out HostNetwork
	err := c.poll(ctx, http.MethodGet, fmt.Sprintf("/agent/v1/hosts/%s/network?after=%d&wait=%s",
		url.PathEscape(hostID), after, DefaultLongPoll), nil, &out)
	return out, err
}
