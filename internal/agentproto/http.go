package agentproto

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// DefaultLongPoll is how long the server holds an assignments request open
// when nothing changes.
const DefaultLongPoll = 30 * time.Second

// SigningService is the SigV4 service name of the agent protocol.
const SigningService = "vessel"

// errorBody is the wire shape of an agent protocol error.
type errorBody struct {
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
	body := errorBody{Kind: "Internal", Message: err.Error()}
	status := http.StatusInternalServerError
	for _, k := range kinds {
		if errors.Is(err, k.kind) {
			body.Kind, status = k.name, k.status
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// Client is the ControlPlane of a remote control plane, over HTTP with
// SigV4-signed requests.
type Client struct {
	base   *url.URL
	key    auth.Key
	region string
	http   *http.Client
}

var _ ControlPlane = (*Client)(nil)

// NewClient returns a client for the control plane at endpoint (e.g.
// http://10.0.0.1:8600) signing with key.
func NewClient(endpoint string, key auth.Key, region string) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errdefs.InvalidArgument("control plane endpoint %q is not an http(s) URL", endpoint)
	}
	if key.AccessKeyID == "" || key.SecretAccessKey == "" {
		return nil, errdefs.InvalidArgument("an access key is required to talk to the control plane")
	}
	if region == "" {
		region = "us-east-1"
	}
	return &Client{base: u, key: key, region: region, http: &http.Client{Timeout: DefaultLongPoll + 30*time.Second}}, nil
}

// WithTLS makes c trust the server certificates cfg trusts (e.g. only the
// control plane's CA) and returns c.
func (c *Client) WithTLS(cfg *tls.Config) *Client {
	if cfg != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		c.http.Transport = tr
	}
	return c
}

// Call sends a signed request to one of the control plane's own routes
// (path with its query), in as its JSON body when not nil, and decodes the
// JSON answer into out when not nil. Errors carry the answer's errdefs kind.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	u := *c.base
	p, q, _ := strings.Cut(path, "?")
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := auth.SignRequest(ctx, req, c.key, c.region, SigningService, body, time.Now()); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errdefs.Unavailable("control plane unreachable: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return errdefs.Unavailable("reading the control plane's answer: %v", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb.Message = strings.TrimSpace(string(data))
		}
		if code := resp.Header.Get("X-Amzn-ErrorType"); eb.Kind == "" && code != "" {
			// A refused signature (UnrecognizedClientException, ...).
			eb.Message = code + ": " + eb.Message
		}
		for _, k := range kinds {
			if eb.Kind == k.name {
				return fmt.Errorf("control plane: %s: %w", eb.Message, k.kind)
			}
		}
		if resp.StatusCode >= 500 {
			return errdefs.Unavailable("control plane: HTTP %d: %s", resp.StatusCode, eb.Message)
		}
		return fmt.Errorf("control plane: HTTP %d: %s: %w", resp.StatusCode, eb.Message, errdefs.ErrInvalidArgument)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// RegisterHost implements ControlPlane.
func (c *Client) RegisterHost(ctx context.Context, h Host) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts", h, nil)
}

// Heartbeat implements ControlPlane.
func (c *Client) Heartbeat(ctx context.Context, hostID string) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/heartbeat", nil, nil)
}

// Assignments implements ControlPlane.
func (c *Client) Assignments(ctx context.Context, hostID string, after int64) (Assignments, error) {
	var out Assignments
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/agent/v1/hosts/%s/assignments?after=%d&wait=%s",
		url.PathEscape(hostID), after, DefaultLongPoll), nil, &out)
	return out, err
}

// ReportStatus implements ControlPlane.
func (c *Client) ReportStatus(ctx context.Context, hostID string, u StatusUpdate) error {
	return c.do(ctx, http.MethodPost, "/agent/v1/hosts/"+url.PathEscape(hostID)+"/status", u, nil)
}
