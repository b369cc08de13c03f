package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/store/bolt"
)

// storeSink is the control plane's side of LogSink on a real log store;
// loseAcks makes the next n calls store their batch and then fail, as a
// connection cut after the control plane wrote and before the agent heard.
type storeSink struct {
	svc      *cwlogs.Service
	loseAcks int
	calls    int
}

var _ agentproto.LogSink = (*storeSink)(nil)

func (s *storeSink) CreateTaskLogStreams(ctx context.Context, hostID, taskID string) (agentproto.LogStreamsResult, error) {
	return agentproto.LogStreamsResult{}, s.svc.EnsureStream(ctx, "g", "p/app/"+taskID, true)
}

func (s *storeSink) PutTaskLogEvents(ctx context.Context, hostID, taskID string, b agentproto.LogEventsBatch) (agentproto.LogEventsAck, error) {
	s.calls++
	evs := make([]cwlogs.Event, len(b.Events))
	for i, e := range b.Events {
		evs[i] = cwlogs.Event{Time: e.Time, Message: e.Message, Start: e.Start, End: e.End}
	}
	acked, err := s.svc.Ingest(ctx, "g", "p/app/"+taskID, evs)
	if err == nil && s.loseAcks > 0 {
		s.loseAcks--
		return agentproto.LogEventsAck{}, errors.New("connection reset after the batch was stored")
	}
	return agentproto.LogEventsAck{Acked: acked}, err
}

func newStoreSink(t *testing.T) *storeSink {
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := cwlogs.New(cwlogs.Config{Store: st, Region: "us-east-1", AccountID: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	s := &storeSink{svc: svc}
	if _, err := s.CreateTaskLogStreams(context.Background(), "h1", "t1"); err != nil {
		t.Fatal(err)
	}
	return s
}

// messages is the stream's content, from its head.
func (s *storeSink) messages(t *testing.T) []string {
	t.Helper()
	var out []string
	in := &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "p/app/t1", StartFromHead: ptr(true)}
	for {
		page, err := s.svc.GetLogEvents(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			out = append(out, e.Message)
		}
		if page.NextForwardToken == in.NextToken {
			return out
		}
		in.NextToken = page.NextForwardToken
	}
}

func ptr[T any](v T) *T { return &v }

// criLog appends lines to a container's log file in the CRI format the
// runtimes write; a line ending in \r is written as a partial (P) line.
type criLog struct {
	t    *testing.T
	path string
	now  time.Time
}

func (l *criLog) write(lines ...string) {
	l.t.Helper()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	for _, line := range lines {
		l.now = l.now.Add(time.Millisecond)
		tag := "F"
		if text, ok := strings.CutSuffix(line, "\r"); ok {
			tag, line = "P", text
		}
		fmt.Fprintf(f, "%s stdout %s %s\n", l.now.Format(time.RFC3339Nano), tag, line)
	}
}

func newShipper(dir string, start *regexp.Regexp) *containerShipper {
	cs := &containerShipper{name: "app", path: filepath.Join(dir, "app.log"), statePath: filepath.Join(dir, "app"+awslogsStateExt), start: start}
	if err := cs.load(); err != nil {
		panic(err)
	}
	return cs
}

// TestShipperNoLineLostOrTwice: lines shipped over several passes, acks
// lost after the control plane stored the batch, an agent that restarts
// from its saved offset, and one whose saved offset is older than what the
// control plane holds (killed between the store's write and its own):
// every line is in the stream once, in order.
func TestShipperNoLineLostOrTwice(t *testing.T) {
	dir := t.TempDir()
	sink := newStoreSink(t)
	log := &criLog{t: t, path: filepath.Join(dir, "app.log"), now: time.Now()}
	ctx := context.Background()
	var want []string
	line := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("line %d", i))
		}
		want = append(want, out...)
		return out
	}
	cs := newShipper(dir, nil)
	log.write(line(0, 5)...)
	if ok, err := cs.pass(ctx, sink, "h1", "t1", false); !ok || err != nil {
		t.Fatalf("pass = %v, %v", ok, err)
	}
	log.write(line(5, 8)...)
	log.write("a long line \r", "written in \r", "parts")
	want = append(want, "a long line written in parts")
	sink.loseAcks = 1
	if _, err := cs.pass(ctx, sink, "h1", "t1", false); err == nil {
		t.Fatal("a pass whose ack was lost succeeded")
	}
	if ok, err := cs.pass(ctx, sink, "h1", "t1", false); !ok || err != nil {
		t.Fatalf("pass after a lost ack = %v, %v", ok, err)
	}
	old, err := os.ReadFile(cs.statePath)
	if err != nil {
		t.Fatal(err)
	}
	log.write(line(8, 12)...)
	if ok, err := cs.pass(ctx, sink, "h1", "t1", false); !ok || err != nil {
		t.Fatalf("pass = %v, %v", ok, err)
	}
	// Killed after the control plane stored lines 8 to 11, before the
	// agent saved their ack: its saved offset is the older one.
	if err := os.WriteFile(cs.statePath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	log.write(line(12, 14)...)
	cs = newShipper(dir, nil)
	if ok, err := cs.pass(ctx, sink, "h1", "t1", true); !ok || err != nil {
		t.Fatalf("pass after a restart = %v, %v", ok, err)
	}
	// Restarted again with the saved offset intact: nothing is sent again.
	calls := sink.calls
	cs = newShipper(dir, nil)
	if ok, err := cs.pass(ctx, sink, "h1", "t1", true); !ok || err != nil || sink.calls != calls {
		t.Fatalf("pass with nothing new = %v, %v, %d calls; want none", ok, err, sink.calls-calls)
	}
	// The runtime truncates the file at its size cap: new lines follow.
	if err := os.Truncate(log.path, 0); err != nil {
		t.Fatal(err)
	}
	log.write(line(14, 15)...)
	if ok, err := cs.pass(ctx, sink, "h1", "t1", true); !ok || err != nil {
		t.Fatalf("pass after a truncation = %v, %v", ok, err)
	}
	got := sink.messages(t)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("stream holds\n%q\nwant\n%q", got, want)
	}
}

// TestShipperMultiline: lines not matching the start pattern join the
// event before them; an event waits for its next line, and is sent once
// the task ends or no line joined it for multilineFlush.
func TestShipperMultiline(t *testing.T) {
	dir := t.TempDir()
	sink := newStoreSink(t)
	log := &criLog{t: t, path: filepath.Join(dir, "app.log"), now: time.Now()}
	ctx := context.Background()
	cs := newShipper(dir, regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`))
	log.write("orphan continuation",
		"2026-01-02 INFO start",
		"2026-01-02 ERROR boom",
		"java.lang.IllegalStateException: boom",
		"\tat app.Main.run(Main.java:10)",
		"\tat app.Main.main(Main.java:3)")
	if ok, err := cs.pass(ctx, sink, "h1", "t1", false); ok || err != nil {
		t.Fatalf("pass = %v, %v; want the trace's event held back", ok, err)
	}
	if got := sink.messages(t); strings.Join(got, "|") != "orphan continuation|2026-01-02 INFO start" {
		t.Fatalf("before the trace ends: %q", got)
	}
	log.write("\tat app.Boot.main(Boot.java:1)", "2026-01-02 INFO after")
	if _, err := cs.pass(ctx, sink, "h1", "t1", false); err != nil {
		t.Fatal(err)
	}
	// Killed now: a new agent assembles the held event again from the
	// acknowledged offset.
	cs = newShipper(dir, regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`))
	if ok, err := cs.pass(ctx, sink, "h1", "t1", true); !ok || err != nil {
		t.Fatalf("final pass = %v, %v", ok, err)
	}
	want := []string{"orphan continuation", "2026-01-02 INFO start",
		"2026-01-02 ERROR boom\njava.lang.IllegalStateException: boom\n\tat app.Main.run(Main.java:10)\n\tat app.Main.main(Main.java:3)\n\tat app.Boot.main(Boot.java:1)",
		"2026-01-02 INFO after"}
	if got := sink.messages(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("stream holds\n%q\nwant\n%q", got, want)
	}
}
