package guest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// guestSeeds are streams a guest sends: real messages, and hostile ones.
func guestSeeds() []string {
	lines := func(ms ...Msg) string {
		var b bytes.Buffer
		c := NewConn(nil, &b)
		for _, m := range ms {
			c.Send(m)
		}
		return b.String()
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return []string{
		lines(Msg{Op: EvReady},
			Msg{Op: EvStarted, Container: "app"},
			Msg{Op: EvLog, Container: "app", Stream: "stdout", Data: []byte("hello")},
			Msg{Op: EvLog, Container: "app", Stream: "stderr", Data: []byte("part"), Partial: true},
			Msg{Op: EvExit, Container: "app", Code: 137, OOMKilled: true, Time: at}),
		lines(Msg{Op: EvState, State: []ContainerState{{Name: "app", Started: true}, {Name: "side", Started: true, Exited: true, Code: 1, ExitedAt: at}}},
			Msg{Op: EvReply, ID: 1}, Msg{Op: EvOutput, ID: 2, Stream: "stdout", Data: []byte{0, 1, 2}}, Msg{Op: EvExecExit, ID: 2, Code: 0}),
		lines(Msg{Op: EvReady, Error: "mount /dev/vdb: no such device"}),
		lines(Msg{Op: EvStarted, Container: "../../victim"},
			Msg{Op: EvLog, Container: "app", Stream: "stdout\n2020-01-01T00:00:00Z stderr F forged", Data: []byte("y")},
			Msg{Op: EvLog, Container: "app", Stream: "stdout", Data: []byte("line\n2020-01-01T00:00:00Z stderr F forged")},
			Msg{Op: EvExit, Container: "app/../../x"}, Msg{Op: EvState, State: []ContainerState{{Name: "..", Exited: true}}}),
		"{\"op\":\"log\",\"c\":\"app\",\"s\":\"stdout\",\"d\":\"aGk=\"}\nnot json\n{\"op\":\"exit\",\"c\":\"app\",\"code\":1e99}\n{\"op\":\"reply\",\"id\":-1}\n\n{}\n",
		"{\"op\":\"log\",\"c\":\"app\",\"s\":\"stdout\",\"d\":\"" + strings.Repeat("A", 4096) + "\"}",
	}
}

// FuzzConn reads arbitrary byte streams with a Conn, as the monitor reads
// the guest (with a small limit so that long lines are reached). Properties:
// Recv never panics and ends at the stream's end; a line is either a
// message or an ErrBadMsg (never more than one result per line, never
// more than the limit kept); every message Recv returns is sent by Send as
// one line that Recv reads back as the same message.
func FuzzConn(f *testing.F) {
	for _, s := range guestSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		const limit = 1024
		c := NewConnLimit(bytes.NewReader(stream), io.Discard, limit)
		lines := bytes.Count(stream, []byte("\n")) + 1
		for n := 0; ; n++ {
			if n > lines {
				t.Fatalf("Recv returned %d results for %d lines", n, lines)
			}
			m, err := c.Recv()
			if errors.Is(err, ErrBadMsg) {
				continue
			}
			if err != nil {
				if err != io.EOF {
					t.Fatalf("Recv on a byte stream: %v, want a message, ErrBadMsg or io.EOF", err)
				}
				return
			}
			var b bytes.Buffer
			if err := NewConn(nil, &b).Send(m); err != nil {
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
			back, err := NewConn(&b, io.Discard).Recv()
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
func normalize(m Msg) Msg {
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

var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [PF] [^\n]*$`)

// FuzzMonitor runs the host-side monitor against a fake VM that, after the
// hello, sends the fuzzed stream and closes. The guest is untrusted.
// Properties: the monitor never panics and returns once the channel closes;
// it creates files only in its log, exit and started directories and the
// ready file, named after the sandbox's containers ("app", "side"); a file
// outside is untouched; every line of a log file is a CRI line the monitor
// wrote (a guest cannot forge lines).
func FuzzMonitor(f *testing.F) {
	for _, s := range guestSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "sandbox")
		cfg, raw, _, done, victim := startHostileMonitor(t, base, 4096, "app", "side")
		raw.Write(stream)
		raw.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the monitor did not return within 20s of the channel closing")
		}

		if got, _ := os.ReadFile(victim); string(got) != "precious" {
			t.Fatalf("the guest reached a host file outside the sandbox: it now holds %q", got)
		}
		check := func(d string, allowed ...string) {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if !slices.Contains(allowed, e.Name()) {
					t.Fatalf("the monitor made %s in %s", e.Name(), d)
				}
			}
		}
		check(base, "sandbox", "victim", "control.sock", "monitor.sock")
		check(dir, "logs", "exits", "started", "ready", "monitor.json")
		check(cfg.ExitDir, "app", "side")
		check(cfg.StartedDir, "app", "side")
		check(cfg.LogDir, "app.log", "side.log")
		for _, name := range []string{"app.log", "side.log"} {
			b, err := os.ReadFile(filepath.Join(cfg.LogDir, name))
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
				if line != "" && !criLine.MatchString(line) {
					t.Fatalf("log %s has a line the monitor did not write: %q", name, line)
				}
			}
		}
	})
}
