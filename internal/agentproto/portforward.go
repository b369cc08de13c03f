package agentproto

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"vessel.dev/vessel/internal/errdefs"
)

// A port-forward travels as an exec does: a SigV4-signed POST whose query
// carries the task's port (port=N), upgraded to SPDY/3.1, on which the
// client opens one stream, the connection's bytes both ways. Each side
// closes its sending half at its input's end (a stream's Close), and the
// other keeps sending until its own end, as TCP's half-close. The server
// connects to the port before it upgrades, so that what stops it (no such
// task, a task not running, nothing listening) is answered as a plain HTTP
// error with its kind, as every agent protocol call.
//
// The agent serves it for the tasks of its own host, dialling the task's
// own address there (its subnet's bridge is local: no tunnel, no other
// host on the way); the control plane's public route relays it to the
// agent of the task's host, as it relays an exec.

// PortForwardProtocol is the stream protocol version a port-forward
// negotiates.
const PortForwardProtocol = "v1.portforward.vessel.dev"

// Conn is one forwarded connection: bytes both ways, whose sending half
// can be closed alone while the other side still answers.
type Conn interface {
	io.ReadWriteCloser
	// CloseWrite ends what this side sends; reads go on until the other
	// side ends too.
	CloseWrite() error
}

// PortDialer is what ServePortForward connects with: one task.
type PortDialer interface {
	// DialPort connects to port of the task's own address, from the host
	// that runs it, and returns the connection, which the caller closes;
	// ctx bounds the connection's life. It blocks until the connection is
	// made or refused. A task the host does not run is an error of kind
	// errdefs.ErrNotFound, a task not running one of errdefs.ErrConflict,
	// a port nothing accepts on one of errdefs.ErrUnavailable.
	DialPort(ctx context.Context, port int) (Conn, error)
}

// PortQuery encodes a port-forward's port as a URL query.
func PortQuery(port int) url.Values {
	return url.Values{"port": {strconv.Itoa(port)}}
}

// decodePortQuery reads the port of a port-forward's query.
func decodePortQuery(q url.Values) (int, error) {
	s := q.Get("port")
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return 0, errdefs.InvalidArgument("port %q is not a TCP port: give port=N with N from 1 to 65535", s)
	}
	return port, nil
}

// ServePortForward answers a port-forward request r with target, as
// described above. The caller has authenticated r. It blocks until both
// directions of the connection have ended, or the client has gone.
func ServePortForward(w http.ResponseWriter, r *http.Request, target PortDialer) {
	port, err := decodePortQuery(r.URL.Query())
	if err != nil {
		WriteError(w, err)
		return
	}
	// The request's context lasts while this handler runs: the connection
	// lives as long.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	conn, err := target.DialPort(ctx, port)
	if err != nil {
		WriteError(w, err)
		return
	}
	defer conn.Close()
	if _, err := httpstream.Handshake(r, w, []string{PortForwardProtocol}); err != nil {
		return // Handshake answered
	}
	streams := make(chan httpstream.Stream, 1)
	sconn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		select {
		case streams <- s:
			return nil
		default:
			return errors.New("port-forward: one stream per connection")
		}
	})
	if sconn == nil {
		return // the upgrader answered
	}
	defer sconn.Close()
	var data httpstream.Stream
	select {
	case data = <-streams:
	case <-time.After(streamWait):
		return
	case <-sconn.CloseChan():
		return
	}
	go func() {
		select {
		case <-sconn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	if Splice(ctx, streamConn{data}, conn) != nil {
		return
	}
	// The client hangs up once it has read everything.
	select {
	case <-sconn.CloseChan():
	case <-time.After(streamWait):
	}
}

// streamConn is a SPDY stream as a Conn: its Close ends the stream both
// ways (a reset), its CloseWrite only this side's sending.
type streamConn struct{ s httpstream.Stream }

func (c streamConn) Read(p []byte) (int, error)  { return c.s.Read(p) }
func (c streamConn) Write(p []byte) (int, error) { return c.s.Write(p) }
func (c streamConn) CloseWrite() error           { return c.s.Close() }
func (c streamConn) Close() error                { return c.s.Reset() }

// forwarded is the client's end of a port-forward: the data stream on its
// own SPDY connection, which Close ends.
type forwarded struct {
	streamConn
	conn httpstream.Connection
	stop func() bool
}

func (f *forwarded) Close() error {
	f.stop()
	return f.conn.Close()
}

// PortForward connects to port of a task through the port-forward
// endpoint at endpoint (a URL without query): an agent's, for a task of
// its host, or the control plane's public one. ctx bounds the
// connection's life; the caller closes it. Errors keep their errdefs kind;
// an endpoint out of reach is errdefs.ErrUnavailable.
func (c *ExecClient) PortForward(ctx context.Context, endpoint string, port int) (Conn, error) {
	if port < 1 || port > 65535 {
		return nil, errdefs.InvalidArgument("port %d is not a TCP port: give one from 1 to 65535", port)
	}
	conn, err := c.upgrade(ctx, endpoint, PortQuery(port), PortForwardProtocol, "port-forward")
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	s, err := conn.CreateStream(http.Header{})
	if err != nil {
		stop()
		conn.Close()
		return nil, errdefs.Unavailable("port-forward at %s: opening its stream: %v", endpoint, err)
	}
	return &forwarded{streamConn: streamConn{s}, conn: conn, stop: stop}, nil
}

// Splice copies what a receives to b and what b receives to a. When one
// side's input ends, the other side's sending half is closed
// (CloseWrite), so that its answer still flows back; Splice returns once
// both directions have ended so, leaving a and b to the caller to close.
// An error in either direction, or ctx done, closes both at once and ends
// the other direction; the first such error is returned (nil for ctx).
func Splice(ctx context.Context, a, b Conn) error {
	closeBoth := func() {
		a.Close()
		b.Close()
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	errs := make(chan error, 2)
	pipe := func(dst, src Conn) {
		_, err := io.Copy(dst, src)
		if err == nil {
			err = dst.CloseWrite()
		}
		errs <- err
	}
	go pipe(a, b)
	go pipe(b, a)
	var first error
	for range 2 {
		if err := <-errs; err != nil && first == nil {
			first = err
			closeBoth()
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return first
}
