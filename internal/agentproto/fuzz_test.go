package agentproto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var errKinds = []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrConflict,
	errdefs.ErrInvalidArgument, errdefs.ErrUnavailable, errdefs.ErrLimitExceeded}

// FuzzClientAnswers gives the agent's control plane client fuzzed answers
// (status and body) to Assignments and ReportStatus: the agent must not
// trust the control plane's bytes to be well formed. Properties: no panic;
// a non-2xx answer is an error of one of the errdefs kinds (so that the
// agent's retry logic can tell them apart); a 2xx answer to Assignments
// either decodes or is an error.
func FuzzClientAnswers(f *testing.F) {
	f.Add(200, []byte(`{"tasks":[{"id":"t1","cluster":"default","containers":[{"name":"app","image":"busybox"}],"cpuUnits":256,"memoryMiB":512}],"revision":7}`))
	f.Add(200, []byte(`{"tasks":null,"revision":-1}`))
	f.Add(200, []byte(`{"tasks":[{"lastStatus":"NOPE","createdAt":"yesterday"}]}`))
	f.Add(404, []byte(`{"kind":"NotFound","message":"host h1 is not registered"}`))
	f.Add(409, []byte(`{"kind":"Conflict","message":"x"}`))
	f.Add(400, []byte(`{"__type":"InvalidSignatureException","message":"bad"}`))
	f.Add(500, []byte(`<html>oops</html>`))
	f.Add(503, []byte(nil))
	f.Add(302, []byte(nil))
	f.Add(999, []byte(`{"kind":"Internal"}`))

	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		c, err := NewClient("http://control-plane.test", auth.Key{AccessKeyID: "AKIATEST", SecretAccessKey: "secret"}, "")
		if err != nil {
			t.Fatal(err)
		}
		c.http = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		}), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		ctx := context.Background()
		as, aerr := c.Assignments(ctx, "h1", 3)
		rerr := c.ReportStatus(ctx, "h1", StatusUpdate{TaskID: "t1", LastStatus: "RUNNING", At: time.Unix(1, 0)})
		if status/100 == 2 {
			_ = as // decoded, or an error: either is fine
			return
		}
		for _, err := range []error{aerr, rerr} {
			if err == nil {
				t.Fatalf("HTTP %d answered with no error", status)
			}
			kind := false
			for _, k := range errKinds {
				kind = kind || errors.Is(err, k)
			}
			if !kind {
				t.Fatalf("HTTP %d %q: error %v has no errdefs kind", status, body, err)
			}
		}
	})
}

// FuzzQueries decodes fuzzed log and exec queries as the agent's HTTP
// handlers do. Properties: no panic; a query that decodes encodes (with
// EncodeLogQuery / ExecQuery) to one that decodes to the same options.
func FuzzQueries(f *testing.F) {
	f.Add("container=app&follow=true&since=10m&tail=20")
	f.Add("since=2026-01-02T03:04:05.123456789Z&tail=0")
	f.Add("since=-5m&tail=-1&follow=maybe")
	f.Add(`container=app&command=["sh","-c","echo hi"]&env=["A=1"]&stdin=true&tty=1`)
	f.Add(`command=[]&env={}`)
	f.Add(`command=["x"]&tty=yes`)
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if o, err := DecodeLogQuery(q, now); err == nil {
			back, err := DecodeLogQuery(EncodeLogQuery(o), now)
			if err != nil {
				t.Fatalf("log options %+v encode to a query that does not decode: %v", o, err)
			}
			if !back.Since.Equal(o.Since) || back.Container != o.Container || back.Follow != o.Follow || back.Tail != o.Tail {
				t.Fatalf("log options changed in a round trip: %+v -> %+v", o, back)
			}
		} else if !errdefs.IsInvalidArgument(err) || err.Error() == "" {
			t.Fatalf("DecodeLogQuery error %v is not an invalid argument with a message", err)
		}
		if o, err := decodeExecQuery(q); err == nil {
			p := runtime.ExecProcess{Args: o.args, Env: o.env, TTY: o.tty}
			if o.stdin {
				p.Stdin = strings.NewReader("")
			}
			back, err := decodeExecQuery(ExecQuery(o.container, p))
			if err != nil {
				t.Fatalf("exec options %+v encode to a query that does not decode: %v", o, err)
			}
			if back.container != o.container || !reflect.DeepEqual(back.args, o.args) || len(back.env) != len(o.env) ||
				back.stdin != o.stdin || back.tty != o.tty {
				t.Fatalf("exec options changed in a round trip: %+v -> %+v", o, back)
			}
		} else if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("decodeExecQuery error %v is not an invalid argument", err)
		}
	})
}

// FuzzReadLogStream reads fuzzed log responses as the CLI and the control
// plane read an agent's. Properties: no panic; a 2xx stream yields one
// line per JSON line until the first bad one; an error answer is an error.
func FuzzReadLogStream(f *testing.F) {
	f.Add(200, []byte(`{"time":"2026-01-02T03:04:05Z","container":"app","stream":"stdout","text":"hi"}`+"\n"+`{"time":"2026-01-02T03:04:06Z","container":"app","stream":"stderr","text":""}`+"\n"))
	f.Add(200, []byte("not json\n"))
	f.Add(200, []byte(strings.Repeat("x", 70000)))
	f.Add(404, []byte(`{"kind":"NotFound","message":"task t1 not found"}`))
	f.Add(500, []byte(`garbage`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}
		n := 0
		err := ReadLogStream(resp, func(LogLine) error { n++; return nil })
		if status/100 != 2 && err == nil {
			t.Fatalf("HTTP %d read as a log stream of %d lines", status, n)
		}
		if lines := bytes.Count(body, []byte("\n")) + 1; n > lines {
			t.Fatalf("%d log lines from %d lines of body", n, lines)
		}
	})
}
