package agentproto

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// LogOptions selects a task's log lines.
type LogOptions struct {
	// Container limits the lines to one container; "" means all.
	Container string
	// Follow keeps streaming new lines until the task ends or ctx is done.
	Follow bool
	// Since drops lines older than this time.
	Since time.Time
	// Tail keeps only the last Tail lines (per container) of what exists
	// now; 0 means all.
	Tail int
}

// LogLine is one line of a container's output.
type LogLine struct {
	Time      time.Time `json:"time"`
	Container string    `json:"container"`
	Stream    string    `json:"stream"` // stdout or stderr
	Text      string    `json:"text"`
}

// LogSource streams the logs of the tasks a host ran.
type LogSource interface {
	// Logs calls emit for each selected line, in time order per container,
	// and blocks while following. A task the host holds no logs of is an
	// error of kind errdefs.ErrNotFound. An error from emit ends the call
	// and is returned.
	Logs(ctx context.Context, taskID string, o LogOptions, emit func(LogLine) error) error
}

// EncodeLogQuery puts LogOptions in a URL query.
func EncodeLogQuery(o LogOptions) url.Values {
	q := url.Values{}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	return q
}

// DecodeLogQuery reads LogOptions from a URL query. since accepts an
// RFC 3339 time or a duration back from now ("10m").
func DecodeLogQuery(q url.Values, now time.Time) (LogOptions, error) {
	o := LogOptions{Container: q.Get("container")}
	if f := q.Get("follow"); f != "" {
		b, err := strconv.ParseBool(f)
		if err != nil {
			return o, errdefs.InvalidArgument("follow %q is not a boolean", f)
		}
		o.Follow = b
	}
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			o.Since = t
		} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			o.Since = now.Add(-d)
		} else {
			return o, errdefs.InvalidArgument("since %q is neither an RFC 3339 time nor a duration such as 10m", s)
		}
	}
	if t := q.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return o, errdefs.InvalidArgument("tail %q is not a non-negative integer", t)
		}
		o.Tail = n
	}
	return o, nil
}

// ServeLogs streams src's lines for r as JSON lines, flushing as it goes.
// The caller has authenticated r.
func ServeLogs(w http.ResponseWriter, r *http.Request, src LogSource, taskID string) {
	o, err := DecodeLogQuery(r.URL.Query(), time.Now())
	if err != nil {
		WriteError(w, err)
		return
	}
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	err = src.Logs(r.Context(), taskID, o, func(l LogLine) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
		if flusher != nil && o.Follow {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && !started {
		WriteError(w, err)
		return
	}
	if !started {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}

// LogsClient reads logs from an agent's LogsEndpoint.
type LogsClient struct {
	Endpoint string
	Key      auth.Key
	Region   string
	HTTP     *http.Client
}

var _ LogSource = (*LogsClient)(nil)

// Logs implements LogSource over HTTP.
func (c *LogsClient) Logs(ctx context.Context, taskID string, o LogOptions, emit func(LogLine) error) error {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return errdefs.InvalidArgument("logs endpoint %q: %v", c.Endpoint, err)
	}
	u.Path = "/agent/v1/logs/" + url.PathEscape(taskID)
	u.RawQuery = EncodeLogQuery(o).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if err := auth.SignRequest(ctx, req, c.Key, c.Region, SigningService, nil, time.Now()); err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return errdefs.Unavailable("host's logs unreachable at %s: %v", c.Endpoint, err)
	}
	defer resp.Body.Close()
	return ReadLogStream(resp, emit)
}

// ReadLogStream decodes a ServeLogs response, or its error.
func ReadLogStream(resp *http.Response, emit func(LogLine) error) error {
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		for _, k := range kinds {
			if eb.Kind == k.name {
				return fmt.Errorf("%s: %w", eb.Message, k.kind)
			}
		}
		return fmt.Errorf("logs: HTTP %d: %s", resp.StatusCode, eb.Message)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("logs: bad line from the server: %w", err)
		}
		if err := emit(l); err != nil {
			return err
		}
	}
	return sc.Err()
}
