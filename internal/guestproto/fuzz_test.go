package guestproto_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/guestproto/guestprototest"
)

// FuzzConn reads arbitrary byte streams with a Conn, as the monitor reads
// the guest (with a small limit so that long lines are reached). Properties:
// Recv never panics and ends at the stream's end; a line is either a
// message or an ErrBadMsg (never more than one result per line, never
// more than the limit kept); every message Recv returns is sent by Send as
// one line that Recv reads back as the same message.
func FuzzConn(f *testing.F) {
	for _, s := range guestprototest.Streams() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		const limit = 1024
		c := guestproto.NewConnLimit(bytes.NewReader(stream), io.Discard, limit)
		lines := bytes.Count(stream, []byte("\n")) + 1
		for n := 0; ; n++ {
			if n > lines {
				t.Fatalf("Recv returned %d results for %d lines", n, lines)
			}
			m, err := c.Recv()
			if errors.Is(err, guestproto.ErrBadMsg) {
				continue
			}
			if err != nil {
				if err != io.EOF {
					t.Fatalf("Recv on a byte stream: %v, want a message, ErrBadMsg or io.EOF", err)
				}
				return
			}
			var b bytes.Buffer
			if err := guestproto.NewConn(nil, &b).Send(m); err != nil {
				// A message with a time JSON cannot carry (year
				// outside 0-9999) is the only thing that should not
				// re-encode.
				if !strings.Contains(err.Error(), "year outside of range") {
					t.Fatalf("Send of a received message %+v: %v", m, err)
				}
				continue
			}
			if bytes.Count(b.Bytes(), []byte("\n")) != 1 {
				t.Fatalf("Send wrote %q: not exactly one line", b.Bytes())
			}
			back, err := guestproto.NewConn(&b, io.Discard).Recv()
			if err != nil {
				t.Fatalf("Recv of what Send wrote: %v", err)
			}
			if !reflect.DeepEqual(normalize(back), normalize(m)) {
				t.Fatalf("message changed in a round trip:\n%+v\n%+v", m, back)
			}
		}
	})
}

// normalize makes empty and nil slices alike (omitempty drops both) and
// times comparable.
func normalize(m guestproto.Msg) guestproto.Msg {
	if len(m.Data) == 0 {
		m.Data = nil
	}
	if len(m.Args) == 0 {
		m.Args = nil
	}
	if len(m.Env) == 0 {
		m.Env = nil
	}
	if len(m.State) == 0 {
		m.State = nil
	}
	for i := range m.State {
		m.State[i].ExitedAt = m.State[i].ExitedAt.UTC()
	}
	m.Time = m.Time.UTC()
	return m
}
