package bandwidth

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerSendsEveryByte checks that a limited answer arrives whole,
// written through the limit in chunks (the body is larger than one), and
// that answers match refuses are not wrapped.
func TestHandlerSendsEveryByte(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 10*chunk/16+3)
	var wrapped []bool
	h := New(64<<20).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := w.(*writer)
		wrapped = append(wrapped, ok)
		w.Write(body)
	}), func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/blobs/") })
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		path    string
		wrapped bool
	}{{"/blobs/x", true}, {"/manifests/x", false}} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes (%v), want the %d sent", tc.path, len(got), err, len(body))
		}
		if w := wrapped[len(wrapped)-1]; w != tc.wrapped {
			t.Errorf("%s: limited %v, want %v", tc.path, w, tc.wrapped)
		}
	}
}
