package auth

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// trickle is a request body that hands out one byte per Read until
// released, and counts what was read: a slow client with a huge body.
type trickle struct {
	read    chan int
	release chan struct{}
	n       atomic.Int64 // bytes handed out; read by the test while the copy runs
}

func (b *trickle) Read(p []byte) (int, error) {
	select {
	case <-b.release:
		return 0, io.EOF
	default:
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := b.n.Add(1)
	select {
	case b.read <- int(n):
	default:
	}
	p[0] = 'x'
	time.Sleep(time.Millisecond)
	return 1, nil
}

// TestUnknownKeyIsRefusedBeforeTheBody: a request signed with an unknown
// key that announces a huge body and sends it slowly is answered
// UnrecognizedClient before its body is read: the verifier looks the key up
// before it buffers anything. The server sees the answer's status while
// the client is still sending.
func TestUnknownKeyIsRefusedBeforeTheBody(t *testing.T) {
	known, _ := NewKey()
	v, err := NewVerifier(VerifierConfig{Keys: []Key{known}})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Bool
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(true)
	}), writeJSONError))
	defer srv.Close()

	unknown, _ := NewKey()
	const size = 1 << 30 // announced, never sent
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(""))
	req.ContentLength = size
	if err := SignRequest(req.Context(), req, unknown, "us-east-1", "ecs", []byte("{}"), time.Now()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers only, by hand, then a body that trickles.
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Host, size)
	for name, vals := range req.Header {
		for _, val := range vals {
			fmt.Fprintf(conn, "%s: %s\r\n", name, val)
		}
	}
	fmt.Fprint(conn, "\r\n")
	body := &trickle{read: make(chan int, 1), release: make(chan struct{})}
	defer close(body.release)
	go io.Copy(conn, body)

	// A verifier that read the body first would still be reading it
	// (at a byte a millisecond, 10 MiB take hours): no answer comes.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(data), "unknown access key ID") {
		t.Fatalf("HTTP %d %s; want 400 UnrecognizedClient", resp.StatusCode, data)
	}
	if reached.Load() {
		t.Fatal("the handler ran for an unknown key")
	}
	if n := body.n.Load(); n >= size {
		t.Fatalf("the whole %d-byte body was sent before the answer", n)
	}
	t.Logf("refused after the client had sent %d of %d announced bytes", body.n.Load(), size)
}
