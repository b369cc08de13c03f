package image

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"vessel.dev/vessel/internal/errdefs"
)

// limitTransport caps every registry answer the store reads: blobs (and
// the redirects they lead to) at blobLimit, everything else (manifests,
// indexes, tokens, errors) at limit, whatever Content-Length says. The
// registry client also stops a blob at its declared size, which add checks
// against the limits before asking for it; this is the floor under both.
type limitTransport struct {
	inner     http.RoundTripper // nil: remote.DefaultTransport
	limit     int64
	blobLimit int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	inner := t.inner
	if inner == nil {
		inner = remote.DefaultTransport
	}
	resp, err := inner.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	// A redirected request carries the answer that redirected it: what it
	// is (a blob or not) is decided by the first request of the chain.
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	limit, what := t.limit, "registry answer (manifest, index or token)"
	knob := "Config.MaxManifestSize"
	if strings.Contains(first.URL.Path, "/blobs/") {
		limit, what, knob = t.blobLimit, "blob", "Config.MaxLayerSize"
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, errdefs.LimitExceeded("%s %s from %s is %d bytes, more than the %d-byte limit (%s)", what, first.URL.Path, req.URL.Host, resp.ContentLength, limit, knob)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: limit, err: errdefs.LimitExceeded("%s %s from %s is larger than the %d-byte limit (%s)", what, first.URL.Path, req.URL.Host, limit, knob)}
	return resp, nil
}

// cappedBody fails a read that goes past its limit.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n - 1, c.err
	}
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }

// budget is a byte allowance shared by the layers of one image being
// unpacked at once; nil allows everything.
type budget struct {
	left atomic.Int64
	err  error
}

func newBudget(n int64, err error) *budget {
	b := &budget{err: err}
	b.left.Store(n)
	return b
}

// take spends n bytes and fails once the allowance is overdrawn.
func (b *budget) take(n int64) error {
	if b == nil || n == 0 {
		return nil
	}
	if b.left.Add(-n) < 0 {
		return b.err
	}
	return nil
}
