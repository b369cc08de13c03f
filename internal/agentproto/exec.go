package agentproto

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// An exec travels as in `kubectl exec`: a SigV4-signed POST whose query
// carries the container and command (ExecQuery: command and env as JSON
// arrays, stdin and tty as booleans), upgraded to SPDY/3.1 (the Kubernetes
// httpstream library), on which the client opens one stream per channel,
// named by the streamType header: error, stdin (with stdin=true), stdout,
// stderr (without tty=true) and resize (with tty=true). The client closes
// its side of stdin at the input's end. The resize stream carries JSON
// runtime.TerminalSize values, the first being the initial size (zero if
// unknown); the server waits for it before it starts the command. When the
// command has exited the server closes stdout and stderr and writes one
// JSON ExecResult on the error stream. Errors found before the upgrade
// (no such task, container or command) are answered as plain HTTP errors
// with their kind, as every agent protocol call.

// ExecProtocol is the stream protocol version an exec negotiates.
const ExecProtocol = "v1.exec.vessel.dev"

// Stream types of an exec connection (the streamType header).
const (
	execStreamType = "streamType"
	streamError    = "error"
	streamStdin    = "stdin"
	streamStdout   = "stdout"
	streamStderr   = "stderr"
	streamResize   = "resize"
)

// ExecResult is what the server writes on the error stream: the command's
// exit code, or why it could not run.
type ExecResult struct {
	ExitCode *int   `json:"exitCode,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Message  string `json:"message,omitempty"`
}

// ExecQuery encodes an exec's container and process options (not its
// streams) as URL query parameters.
func ExecQuery(container string, p runtime.ExecProcess) url.Values {
	q := url.Values{}
	if container != "" {
		q.Set("container", container)
	}
	// JSON arrays, not repeated parameters: SigV4 signing sorts the values
	// of a repeated parameter.
	args, _ := json.Marshal(p.Args)
	q.Set("command", string(args))
	if len(p.Env) > 0 {
		env, _ := json.Marshal(p.Env)
		q.Set("env", string(env))
	}
	if p.Stdin != nil {
		q.Set("stdin", "true")
	}
	if p.TTY {
		q.Set("tty", "true")
	}
	return q
}

// execOptions is what the server reads from an exec's query.
type execOptions struct {
	container string
	args, env []string
	stdin     bool
	tty       bool
}

func decodeExecQuery(q url.Values) (execOptions, error) {
	o := execOptions{container: q.Get("container")}
	if c := q.Get("command"); c == "" || json.Unmarshal([]byte(c), &o.args) != nil || len(o.args) == 0 {
		return o, errdefs.InvalidArgument("exec needs a command: give it as command=[\"ARG\", ...], a JSON array of strings")
	}
	if e := q.Get("env"); e != "" && json.Unmarshal([]byte(e), &o.env) != nil {
		return o, errdefs.InvalidArgument("env %q is not a JSON array of KEY=VALUE strings", e)
	}
	for _, b := range []struct {
		name string
		v    *bool
	}{{"stdin", &o.stdin}, {"tty", &o.tty}} {
		if s := q.Get(b.name); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return o, errdefs.InvalidArgument("%s %q is not a boolean", b.name, s)
			}
			*b.v = v
		}
	}
	return o, nil
}

// ExecTarget is what ServeExec runs commands with.
type ExecTarget interface {
	// CheckExec returns the error an exec in container would meet before
	// it runs anything (a missing task or container, a task not
	// running), so that it is answered before the connection upgrades.
	CheckExec(ctx context.Context, container string) error
	// Exec runs p in container as runtime.Execer.Exec does.
	Exec(ctx context.Context, container string, p runtime.ExecProcess) (int, error)
}

// streamWait bounds how long ServeExec waits for the client's streams and
// initial terminal size, and for the client to hang up at the end.
const streamWait = 30 * time.Second

// ServeExec answers an exec request r with target, as described above.
// The caller has authenticated r. It blocks until the command has exited
// and its result has been sent, or the client has gone.
func ServeExec(w http.ResponseWriter, r *http.Request, target ExecTarget) {
	o, err := decodeExecQuery(r.URL.Query())
	if err != nil {
		WriteError(w, err)
		return
	}
	if err := target.CheckExec(r.Context(), o.container); err != nil {
		WriteError(w, err)
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{ExecProtocol}); err != nil {
		return // Handshake answered
	}
	want := 3 // error, stdout and stderr or resize
	if o.stdin {
		want++
	}
	streams := make(chan httpstream.Stream, want+1)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		select {
		case streams <- s:
			return nil
		default:
			return errors.New("exec: too many streams")
		}
	})
	if conn == nil {
		return // the upgrader answered
	}
	defer conn.Close()
	byType := map[string]httpstream.Stream{}
	timeout := time.NewTimer(streamWait)
	defer timeout.Stop()
	for len(byType) < want {
		select {
		case s := <-streams:
			byType[s.Headers().Get(execStreamType)] = s
		case <-timeout.C:
			return
		case <-conn.CloseChan():
			return
		}
	}
	errStream, stdout := byType[streamError], byType[streamStdout]
	if errStream == nil || stdout == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-conn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	p := runtime.ExecProcess{Args: o.args, Env: o.env, TTY: o.tty, Stdout: stdout}
	if s := byType[streamStdin]; o.stdin && s != nil {
		p.Stdin = s
	}
	if s := byType[streamStderr]; !o.tty && s != nil {
		p.Stderr = s
	}
	if s := byType[streamResize]; o.tty && s != nil {
		sizes := make(chan runtime.TerminalSize, 1)
		dec := json.NewDecoder(s)
		var first runtime.TerminalSize
		if err := dec.Decode(&first); err != nil {
			return
		}
		if first.Width > 0 && first.Height > 0 {
			sizes <- first
		}
		p.Resize = sizes
		go func() {
			for {
				var sz runtime.TerminalSize
				if dec.Decode(&sz) != nil {
					return
				}
				select {
				case sizes <- sz:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	code, err := target.Exec(ctx, o.container, p)
	stdout.Close()
	if s := byType[streamStderr]; s != nil {
		s.Close()
	}
	res := ExecResult{ExitCode: &code}
	if err != nil {
		res = ExecResult{Kind: "Internal", Message: err.Error()}
		for _, k := range kinds {
			if errors.Is(err, k.kind) {
				res.Kind = k.name
				break
			}
		}
	}
	json.NewEncoder(errStream).Encode(res)
	errStream.Close()
	// The client hangs up once it has read everything.
	select {
	case <-conn.CloseChan():
	case <-time.After(streamWait):
	}
}

// ExecClient runs commands through exec endpoints (an agent's, or the
// control plane's public one), signing with Key.
type ExecClient struct {
	Key    auth.Key
	Region string
	// TLS is the client configuration for https endpoints; nil trusts
	// the system's roots.
	TLS *tls.Config
}

// Exec runs p in container through the exec endpoint at endpoint (a URL
// without query) and returns the command's exit code, as
// runtime.Execer.Exec does. Errors keep their errdefs kind; an endpoint out
// of reach is errdefs.ErrUnavailable.
func (c *ExecClient) Exec(ctx context.Context, endpoint, container string, p runtime.ExecProcess) (int, error) {
	conn, err := c.upgrade(ctx, endpoint, ExecQuery(container, p), ExecProtocol, "exec")
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	open := func(kind string) (httpstream.Stream, error) {
		h := http.Header{}
		h.Set(execStreamType, kind)
		s, err := conn.CreateStream(h)
		if err != nil {
			return nil, errdefs.Unavailable("exec at %s: opening its %s stream: %v", endpoint, kind, err)
		}
		return s, nil
	}
	errStream, err := open(streamError)
	if err != nil {
		return -1, err
	}
	done := make(chan struct{})
	defer close(done)
	if p.Stdin != nil {
		s, err := open(streamStdin)
		if err != nil {
			return -1, err
		}
		go func() {
			io.Copy(s, p.Stdin)
			s.Close()
		}()
	}
	var output sync.WaitGroup
	copyOut := func(kind string, w io.Writer) error {
		s, err := open(kind)
		if err != nil {
			return err
		}
		if w == nil {
			w = io.Discard
		}
		output.Add(1)
		go func() {
			defer output.Done()
			io.Copy(w, s)
		}()
		return nil
	}
	if err := copyOut(streamStdout, p.Stdout); err != nil {
		return -1, err
	}
	if p.TTY {
		s, err := open(streamResize)
		if err != nil {
			return -1, err
		}
		enc := json.NewEncoder(s)
		var first runtime.TerminalSize
		select {
		case sz, ok := <-p.Resize:
			if ok {
				first = sz
			}
		default:
		}
		if err := enc.Encode(first); err != nil {
			return -1, errdefs.Unavailable("exec at %s: %v", endpoint, err)
		}
		if p.Resize != nil {
			go func() {
				for {
					select {
					case sz, ok := <-p.Resize:
						if !ok || enc.Encode(sz) != nil {
							return
						}
					case <-done:
						return
					}
				}
			}()
		}
	} else if err := copyOut(streamStderr, p.Stderr); err != nil {
		return -1, err
	}

	data, rerr := io.ReadAll(errStream)
	output.Wait()
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	var res ExecResult
	if err := json.Unmarshal(data, &res); err != nil {
		if rerr == nil {
			rerr = err
		}
		return -1, errdefs.Unavailable("exec at %s: the connection ended without the command's result: %v", endpoint, rerr)
	}
	if res.ExitCode == nil {
		return -1, kindError(res.Kind, res.Message)
	}
	return *res.ExitCode, nil
}

// upgrade sends a signed POST with query to endpoint (a URL without
// query) asking for protocol and returns the SPDY connection it was
// upgraded to; what (exec, port-forward) names the call in errors. An
// answer other than the upgrade is returned as the error it carries, its
// kind kept; an endpoint out of reach is errdefs.ErrUnavailable. The
// caller closes the connection.
func (c *ExecClient) upgrade(ctx context.Context, endpoint string, query url.Values, protocol, what string) (httpstream.Connection, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errdefs.InvalidArgument("%s endpoint %q is not an http(s) URL", what, endpoint)
	}
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	if err := auth.SignRequest(ctx, req, c.Key, region, SigningService, nil, time.Now()); err != nil {
		return nil, err
	}
	rt, err := spdy.NewRoundTripper(c.TLS)
	if err != nil {
		return nil, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Unavailable("%s endpoint unreachable at %s: %v", what, endpoint, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		var eb ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, data)
		}
		return nil, kindError(eb.Kind, eb.Message)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		return nil, errdefs.Unavailable("%s at %s: %v", what, endpoint, err)
	}
	return conn, nil
}

// kindError rebuilds an error of the given wire kind.
func kindError(kind, message string) error {
	for _, k := range kinds {
		if kind == k.name {
			return fmt.Errorf("%s: %w", message, k.kind)
		}
	}
	return errors.New(message)
}
