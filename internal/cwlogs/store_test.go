package cwlogs_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/store/bolt"
)

// fixture is a Service on a real bbolt file with a clock the test moves.
type fixture struct {
	svc  *cwlogs.Service
	st   *bolt.Store
	now  time.Time
	logs *bytes.Buffer
}

func newFixture(t *testing.T, tweak func(*cwlogs.Config)) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), logs: &bytes.Buffer{}}
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	cfg := cwlogs.Config{Store: st, Region: "us-east-1", AccountID: "123456789012",
		Logger: slog.New(slog.NewTextHandler(f.logs, nil)), Now: func() time.Time { return f.now }}
	if tweak != nil {
		tweak(&cfg)
	}
	if f.svc, err = cwlogs.New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// lines makes events of source lines "line <i>", each 10 bytes long in
// the source, at one second apart from t0.
func lines(t0 time.Time, from, to int) []cwlogs.Event {
	var out []cwlogs.Event
	for i := from; i < to; i++ {
		out = append(out, cwlogs.Event{Time: t0.Add(time.Duration(i) * time.Second), Message: fmt.Sprintf("line %d", i),
			Start: int64(i * 10), End: int64(i*10 + 10)})
	}
	return out
}

// messages reads a whole stream from its head.
func (f *fixture) messages(t *testing.T, group, stream string) []string {
	t.Helper()
	var out []string
	in := &cwlogs.GetLogEventsInput{LogGroupName: group, LogStreamName: stream, StartFromHead: ptr(true), Limit: ptr(int32(7))}
	for {
		page, err := f.svc.GetLogEvents(context.Background(), in)
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

func want(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("line %d", i))
	}
	return out
}

// TestIngestAtLeastOnceNoDuplicates: batches sent again, batches that
// overlap what was taken, and a batch sent again after its stream record
// was lost (the replica failed between its two writes) add every line
// once, in order.
func TestIngestAtLeastOnceNoDuplicates(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.svc.EnsureStream(ctx, "/ecs/web", "ecs/web/t1", false); cwlogs.Code(err) != "ResourceNotFoundException" {
		t.Fatalf("EnsureStream without the group: %v; want ResourceNotFoundException", err)
	}
	if err := f.svc.EnsureStream(ctx, "/ecs/web", "ecs/web/t1", true); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.EnsureStream(ctx, "/ecs/web", "ecs/web/t1", true); err != nil {
		t.Fatalf("EnsureStream again: %v", err)
	}
	t0 := f.now
	steps := []struct {
		events    []cwlogs.Event
		wantAcked int64
	}{
		{lines(t0, 0, 5), 50},
		{lines(t0, 0, 5), 50}, // sent again: the ack was lost
		{lines(t0, 3, 9), 90}, // overlaps: resumed from an older saved offset
		{lines(t0, 9, 12), 120},
		{lines(t0, 0, 12), 120}, // everything again
	}
	for i, s := range steps {
		acked, err := f.svc.Ingest(ctx, "/ecs/web", "ecs/web/t1", s.events)
		if err != nil || acked != s.wantAcked {
			t.Fatalf("step %d: Ingest = %d, %v; want %d", i, acked, err, s.wantAcked)
		}
	}
	// The stream record goes back to an older state: its last batch holds
	// more than the record says it took.
	kvs, _, _ := f.st.List(ctx, cwlogs.StreamPrefix)
	old := kvs[0]
	if _, err := f.svc.Ingest(ctx, "/ecs/web", "ecs/web/t1", lines(t0, 12, 14)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Put(ctx, old.Key, old.Value, -1); err != nil {
		t.Fatal(err)
	}
	if acked, err := f.svc.Ingest(ctx, "/ecs/web", "ecs/web/t1", lines(t0, 12, 15)); err != nil || acked != 150 {
		t.Fatalf("Ingest after the stream record was lost = %d, %v; want 150", acked, err)
	}
	got := f.messages(t, "/ecs/web", "ecs/web/t1")
	if strings.Join(got, ",") != strings.Join(want(0, 15), ",") {
		t.Fatalf("stream holds %q; want lines 0 to 14 once each", got)
	}
}

// TestGetLogEventsTokens: forward and backward pages, startFromHead,
// startTime and endTime.
func TestGetLogEventsTokens(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.svc.EnsureStream(ctx, "g", "s", true)
	t0 := f.now.Add(-time.Hour)
	if _, err := f.svc.Ingest(ctx, "g", "s", lines(t0, 0, 20)); err != nil {
		t.Fatal(err)
	}
	tail, err := f.svc.GetLogEvents(ctx, &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "s", Limit: ptr(int32(5))})
	if err != nil || len(tail.Events) != 5 || tail.Events[0].Message != "line 15" || tail.Events[4].Message != "line 19" {
		t.Fatalf("newest page = %+v, %v; want lines 15 to 19", tail, err)
	}
	back, err := f.svc.GetLogEvents(ctx, &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "s", Limit: ptr(int32(5)), NextToken: tail.NextBackwardToken})
	if err != nil || len(back.Events) != 5 || back.Events[0].Message != "line 10" {
		t.Fatalf("backward page = %+v, %v; want lines 10 to 14", back, err)
	}
	fwd, err := f.svc.GetLogEvents(ctx, &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "s", NextToken: tail.NextForwardToken})
	if err != nil || len(fwd.Events) != 0 || fwd.NextForwardToken != tail.NextForwardToken {
		t.Fatalf("forward past the end = %+v, %v; want no events and the same token", fwd, err)
	}
	f.svc.Ingest(ctx, "g", "s", lines(t0, 20, 22))
	fwd, err = f.svc.GetLogEvents(ctx, &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "s", NextToken: tail.NextForwardToken})
	if err != nil || len(fwd.Events) != 2 || fwd.Events[0].Message != "line 20" {
		t.Fatalf("forward after new events = %+v, %v; want lines 20 and 21", fwd, err)
	}
	win, err := f.svc.GetLogEvents(ctx, &cwlogs.GetLogEventsInput{LogGroupName: "g", LogStreamName: "s", StartFromHead: ptr(true),
		StartTime: ptr(t0.Add(3 * time.Second).UnixMilli()), EndTime: ptr(t0.Add(6 * time.Second).UnixMilli())})
	if err != nil || len(win.Events) != 3 || win.Events[0].Message != "line 3" || win.Events[2].Message != "line 5" {
		t.Fatalf("startTime/endTime window = %+v, %v; want lines 3 to 5", win, err)
	}
	for _, in := range []*cwlogs.GetLogEventsInput{
		{LogGroupName: "g", LogStreamName: "s", NextToken: "x/1"},
		{LogGroupName: "g", LogStreamName: "s", Limit: ptr(int32(0))},
		{LogGroupName: "g", LogStreamName: "missing"},
		{LogGroupName: "missing", LogStreamName: "s"},
		{LogGroupName: "g:x", LogStreamName: "s"},
	} {
		if _, err := f.svc.GetLogEvents(ctx, in); cwlogs.Code(err) == "" {
			t.Errorf("GetLogEvents %+v: %v; want an API exception", in, err)
		}
	}
}

// TestFilterLogEventsAcrossStreams: events of several streams in time
// order, by pattern, by stream, in pages whose token resumes exactly.
func TestFilterLogEventsAcrossStreams(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	t0 := f.now.Add(-time.Hour)
	for i, s := range []string{"app/a/1", "app/b/1"} {
		f.svc.EnsureStream(ctx, "g", s, true)
		var evs []cwlogs.Event
		for j := 0; j < 10; j++ {
			level := "INFO"
			if j%3 == 0 {
				level = "ERROR"
			}
			evs = append(evs, cwlogs.Event{Time: t0.Add(time.Duration(2*j+i) * time.Second), Message: fmt.Sprintf("%s %s %d", level, s, j),
				Start: int64(j), End: int64(j + 1)})
		}
		if _, err := f.svc.Ingest(ctx, "g", s, evs); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	ids := map[string]bool{}
	in := &cwlogs.FilterLogEventsInput{LogGroupName: "g", FilterPattern: "ERROR", Limit: ptr(int32(3))}
	for {
		out, err := f.svc.FilterLogEvents(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out.Events {
			got = append(got, e.Message)
			if ids[e.EventID] {
				t.Fatalf("event id %s given twice", e.EventID)
			}
			ids[e.EventID] = true
		}
		if out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	wantMsgs := "ERROR app/a/1 0,ERROR app/b/1 0,ERROR app/a/1 3,ERROR app/b/1 3,ERROR app/a/1 6,ERROR app/b/1 6,ERROR app/a/1 9,ERROR app/b/1 9"
	if strings.Join(got, ",") != wantMsgs {
		t.Fatalf("filtered %q; want %q", got, wantMsgs)
	}
	one, err := f.svc.FilterLogEvents(ctx, &cwlogs.FilterLogEventsInput{LogGroupName: "g", LogStreamNames: []string{"app/b/1"},
		StartTime: ptr(t0.Add(5 * time.Second).UnixMilli()), EndTime: ptr(t0.Add(8 * time.Second).UnixMilli())}) // endTime is inclusive here
	if err != nil || len(one.Events) != 2 || one.Events[0].Message != "INFO app/b/1 2" || len(one.SearchedLogStreams) != 1 {
		t.Fatalf("one stream in a window = %+v, %v; want its events 2 and 3", one, err)
	}
	if _, err := f.svc.FilterLogEvents(ctx, &cwlogs.FilterLogEventsInput{LogGroupName: "g", FilterPattern: "{ $.a = "}); cwlogs.Code(err) != "InvalidParameterException" {
		t.Fatalf("a bad pattern: %v; want InvalidParameterException", err)
	}
}

// TestRetention: a group's retention hides older events at once and the
// sweep deletes them; a group without a policy keeps them for
// DefaultRetention.
func TestRetention(t *testing.T) {
	f := newFixture(t, func(c *cwlogs.Config) { c.DefaultRetention = 10 * 24 * time.Hour })
	ctx := context.Background()
	for _, g := range []string{"short", "default"} {
		f.svc.EnsureStream(ctx, g, "s", true)
		// Lines 0-4 three days old, 5-9 new, in separate batches.
		if _, err := f.svc.Ingest(ctx, g, "s", lines(f.now.Add(-72*time.Hour), 0, 5)); err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("x", cwlogs.BatchBytes)
		if _, err := f.svc.Ingest(ctx, g, "s", []cwlogs.Event{{Time: f.now.Add(-72 * time.Hour), Message: big, Start: 50, End: 51}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Ingest(ctx, g, "s", lines(f.now.Add(-time.Minute), 6, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.PutRetentionPolicy(ctx, &cwlogs.PutRetentionPolicyInput{LogGroupName: "short", RetentionInDays: 2}); cwlogs.Code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "1, 3, 5") {
		t.Fatalf("retentionInDays 2: %v; want InvalidParameterException listing the accepted values", err)
	}
	if _, err := f.svc.PutRetentionPolicy(ctx, &cwlogs.PutRetentionPolicyInput{LogGroupName: "short", RetentionInDays: 1}); err != nil {
		t.Fatal(err)
	}
	if got := f.messages(t, "short", "s"); strings.Join(got, ",") != strings.Join(want(6, 10), ",") {
		t.Fatalf("short retention shows %q; want lines 6 to 9", got)
	}
	if got := f.messages(t, "default", "s"); len(got) != 10 {
		t.Fatalf("default retention shows %d events; want all 10", len(got))
	}
	before := storedBytes(t, f, "short")
	if err := f.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if after := storedBytes(t, f, "short"); after >= before-cwlogs.BatchBytes {
		t.Fatalf("storedBytes %d after the sweep, %d before; want the old batches gone", after, before)
	}
	if got := f.messages(t, "short", "s"); strings.Join(got, ",") != strings.Join(want(6, 10), ",") {
		t.Fatalf("after the sweep: %q; want lines 6 to 9", got)
	}
	if _, err := f.svc.DeleteRetentionPolicy(ctx, &cwlogs.GroupNameInput{LogGroupName: "default"}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(8 * 24 * time.Hour) // the old lines are 11 days old now
	if got := f.messages(t, "default", "s"); strings.Join(got, ",") != strings.Join(want(6, 10), ",") {
		t.Fatalf("default retention after 11 days shows %q; want lines 6 to 9", got)
	}
}

func storedBytes(t *testing.T, f *fixture, group string) int64 {
	t.Helper()
	out, err := f.svc.DescribeLogGroups(context.Background(), &cwlogs.DescribeLogGroupsInput{LogGroupNamePrefix: group})
	if err != nil || len(out.LogGroups) != 1 {
		t.Fatalf("DescribeLogGroups %s = %+v, %v", group, out, err)
	}
	return out.LogGroups[0].StoredBytes
}

// TestSizeCap: a group over its cap loses its oldest batches first, says
// so in the log, and storedBytes shows what is kept.
func TestSizeCap(t *testing.T) {
	f := newFixture(t, func(c *cwlogs.Config) { c.MaxGroupBytes = 3 * cwlogs.BatchBytes })
	ctx := context.Background()
	f.svc.EnsureStream(ctx, "g", "s", true)
	msg := strings.Repeat("y", cwlogs.BatchBytes)
	for i := 0; i < 6; i++ {
		ev := cwlogs.Event{Time: f.now.Add(time.Duration(i) * time.Second), Message: fmt.Sprintf("%d%s", i, msg), Start: int64(i), End: int64(i + 1)}
		if _, err := f.svc.Ingest(ctx, "g", "s", []cwlogs.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	got := f.messages(t, "g", "s")
	if len(got) == 0 || len(got) > 3 || got[len(got)-1][0] != '5' || got[0][0] == '0' {
		t.Fatalf("kept %d events; want at most 3, the newest", len(got))
	}
	if b := storedBytes(t, f, "g"); b > 3*cwlogs.BatchBytes {
		t.Fatalf("storedBytes %d; want at most the cap %d", b, 3*cwlogs.BatchBytes)
	}
	if !strings.Contains(f.logs.String(), "size cap") {
		t.Fatalf("the log does not say the group went over its cap: %s", f.logs)
	}
}

// TestGroupsAndStreams: create, describe with prefix and pages, delete.
func TestGroupsAndStreams(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, g := range []string{"/ecs/a", "/ecs/b", "/ecs/c", "/other"} {
		if _, err := f.svc.CreateLogGroup(ctx, &cwlogs.CreateLogGroupInput{LogGroupName: g}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.CreateLogGroup(ctx, &cwlogs.CreateLogGroupInput{LogGroupName: "/ecs/a"}); cwlogs.Code(err) != "ResourceAlreadyExistsException" {
		t.Fatalf("CreateLogGroup twice: %v", err)
	}
	if _, err := f.svc.CreateLogGroup(ctx, &cwlogs.CreateLogGroupInput{LogGroupName: "bad name"}); cwlogs.Code(err) != "InvalidParameterException" {
		t.Fatalf("CreateLogGroup with a space: %v", err)
	}
	var names []string
	in := &cwlogs.DescribeLogGroupsInput{LogGroupNamePrefix: "/ecs/", Limit: ptr(int32(2))}
	for {
		out, err := f.svc.DescribeLogGroups(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range out.LogGroups {
			names = append(names, g.LogGroupName)
		}
		if out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	if strings.Join(names, ",") != "/ecs/a,/ecs/b,/ecs/c" {
		t.Fatalf("groups %q", names)
	}
	f.svc.EnsureStream(ctx, "/ecs/a", "x/1", false)
	f.svc.Ingest(ctx, "/ecs/a", "x/1", lines(f.now, 0, 3))
	ls, err := f.svc.DescribeLogStreams(ctx, &cwlogs.DescribeLogStreamsInput{LogGroupName: "/ecs/a"})
	if err != nil || len(ls.LogStreams) != 1 || ls.LogStreams[0].StoredBytes != 3*(6+26) || ls.LogStreams[0].LastEventTimestamp == nil {
		t.Fatalf("DescribeLogStreams = %+v, %v", ls, err)
	}
	if _, err := f.svc.DeleteLogGroup(ctx, &cwlogs.GroupNameInput{LogGroupName: "/ecs/a"}); err != nil {
		t.Fatal(err)
	}
	if kvs, _, _ := f.st.List(ctx, "logs/"); len(kvs) != 3 {
		t.Fatalf("after DeleteLogGroup the store holds %d log records; want the 3 other groups only", len(kvs))
	}
	if _, err := f.svc.DeleteLogGroup(ctx, &cwlogs.GroupNameInput{LogGroupName: "/ecs/a"}); cwlogs.Code(err) != "ResourceNotFoundException" {
		t.Fatalf("DeleteLogGroup twice: %v", err)
	}
}
