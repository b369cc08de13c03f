package httpserve

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamsOutliveReadTimeout: ReadTimeout cuts a request whose body
// trickles, but neither a hijacked stream whose client writes after it (an
// exec's stdin) nor a long poll that answers after it: Go's server lifts
// the read deadline once the request is read and on hijack, which New's
// servers rely on.
func TestStreamsOutliveReadTimeout(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprint(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		buf.Flush()
		line, err := buf.ReadString('\n') // the client's "stdin"
		if err != nil {
			fmt.Fprintf(conn, "read failed: %v\n", err)
			return
		}
		fmt.Fprintf(conn, "got %s", line)
	})
	for _, c := range []struct {
		name string
		h    http.Handler
		want string
	}{
		{"stream", stream, "got xhello\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(c.h)
			srv.Config.ReadTimeout = readTimeout
			srv.Start()
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A one-byte body the handler does not read, as a stream's
			// first bytes.
			fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nx")
			r := bufio.NewReader(conn)
			resp, err := http.ReadResponse(r, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			time.Sleep(3 * readTimeout) // the client types after ReadTimeout
			fmt.Fprint(conn, "hello\n")
			got, _ := r.ReadString('\n')
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("stream answered %q, want %q", got, c.want)
			}
		})
	}
}

func TestNewSetsEveryTimeout(t *testing.T) {
	s := New(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Fatalf("timeouts: header %v, read %v, idle %v", s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout)
	}
}

func TestLongPollAndSlowBody(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * readTimeout): // a long poll
		}
		io.WriteString(w, "done")
	}))
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("long poll: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "done" {
		t.Errorf("long poll answered %q, want done", b)
	}

	// A body that trickles past ReadTimeout is cut off.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	cut := false
	for i := 0; i < 100 && !cut; i++ {
		if _, err := conn.Write([]byte("x")); err != nil {
			cut = true
		}
		time.Sleep(readTimeout / 5)
	}
	got, _ := io.ReadAll(conn)
	if strings.Contains(string(got), "done") {
		t.Errorf("a body trickling past ReadTimeout was served: %q", got)
	}
}
