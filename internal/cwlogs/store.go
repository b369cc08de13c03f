package cwlogs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/jsonrec"
)

// Prefixes of the records in the shared store.
const (
	GroupPrefix  = "logs/groups/"
	StreamPrefix = "logs/streams/"
	EventPrefix  = "logs/events/"
)

// BatchBytes is the size up to which events are appended to a stream's
// last batch rather than starting a new one.
const BatchBytes = 64 << 10

// eventOverhead is what CloudWatch Logs counts for an event beside its
// message.
const eventOverhead = 26

// MaxEventBytes and MaxBatchEvents are CloudWatch Logs' limits on an
// event's message and on the events of one batch.
const (
	MaxEventBytes  = 256<<10 - eventOverhead
	MaxBatchEvents = 10000
)

// Defaults of Config.
const (
	DefaultRetention     = 30 * 24 * time.Hour
	DefaultMaxGroupBytes = 256 << 20
	DefaultSweepInterval = time.Minute
)

// Config configures a Service.
type Config struct {
	// Store holds the groups, streams and events. Required.
	Store store.Store
	// Region and AccountID appear in ARNs. Required.
	Region    string
	AccountID string
	// DefaultRetention is how long events of a group without a retention
	// policy are kept; DefaultRetention by default.
	DefaultRetention time.Duration
	// Day is the length of one day of a retention policy's
	// retentionInDays: 24 h, shorter only in tests of retention.
	Day time.Duration
	// MaxGroupBytes caps what a group keeps (the events' messages plus 26
	// bytes each, as storedBytes counts them): the oldest batches go
	// first. DefaultMaxGroupBytes by default.
	MaxGroupBytes int64
	// SweepInterval is how often Run deletes expired events.
	SweepInterval time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Service is the log store with its API. It is safe for concurrent use.
type Service struct {
	cfg Config
	st  store.Store
	log *slog.Logger
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errdefs.InvalidArgument("cwlogs: Store is required")
	}
	if cfg.Region == "" || len(cfg.AccountID) != 12 {
		return nil, errdefs.InvalidArgument("cwlogs: Region (got %q) and a 12-digit AccountID (got %q) are required", cfg.Region, cfg.AccountID)
	}
	if cfg.DefaultRetention < 0 || cfg.Day < 0 || cfg.MaxGroupBytes < 0 || cfg.SweepInterval < 0 {
		return nil, errdefs.InvalidArgument("cwlogs: DefaultRetention, Day, MaxGroupBytes and SweepInterval must not be negative (0: the default)")
	}
	if cfg.DefaultRetention == 0 {
		cfg.DefaultRetention = DefaultRetention
	}
	if cfg.Day == 0 {
		cfg.Day = 24 * time.Hour
	}
	if cfg.MaxGroupBytes == 0 {
		cfg.MaxGroupBytes = DefaultMaxGroupBytes
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = min(DefaultSweepInterval, cfg.Day)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, st: cfg.Store, log: cfg.Logger}, nil
}

// groupRecord is a log group as stored.
type groupRecord struct {
	Name            string `json:"name"`
	CreationTime    int64  `json:"creationTime"` // ms since the epoch
	RetentionInDays int32  `json:"retentionInDays,omitempty"`
}

// streamRecord is a log stream as stored.
type streamRecord struct {
	Group        string `json:"group"`
	Name         string `json:"name"`
	CreationTime int64  `json:"creationTime"`
	// Acked is the source offset up to which events were taken.
	Acked         int64      `json:"acked"`
	LastIngestion int64      `json:"lastIngestion,omitempty"`
	Batches       []batchRef `json:"batches,omitempty"`
}

// batchRef indexes one batch of a stream.
type batchRef struct {
	Start int64 `json:"start"` // the source offset of its key
	First int64 `json:"first"` // its oldest and newest event's timestamps, ms
	Last  int64 `json:"last"`
	Bytes int64 `json:"bytes"`
}

// batchRecord is one stored batch.
type batchRecord struct {
	End    int64         `json:"end"` // the source offset its last event ends at
	Events []storedEvent `json:"events"`
}

type storedEvent struct {
	Time      int64  `json:"t"` // ms since the epoch
	Ingestion int64  `json:"i"`
	Pos       int64  `json:"p"` // the source offset the event ends at: its place in the stream
	Message   string `json:"m"`
}

func (e storedEvent) size() int64 { return int64(len(e.Message)) + eventOverhead }

func (r *streamRecord) storedBytes() int64 {
	var n int64
	for _, b := range r.Batches {
		n += b.Bytes
	}
	return n
}

func groupKey(g string) string        { return GroupPrefix + g }
func streamKey(g, s string) string    { return StreamPrefix + g + ":" + s }
func eventsPrefix(g, s string) string { return EventPrefix + g + ":" + s + ":" }
func batchKey(g, s string, start int64) string {
	return fmt.Sprintf("%s%016x", eventsPrefix(g, s), start)
}

// Event is one event shipped from a source: Start and End are the offsets
// in the source (a container's log file) where it begins and ends, End >
// Start, growing from one event to the next.
type Event struct {
	Time    time.Time
	Message string
	Start   int64
	End     int64
}

// EnsureStream creates stream in group unless it exists; the group is
// created too when createGroup is set, else a missing group is an error of
// kind errdefs.ErrNotFound with CloudWatch's ResourceNotFoundException
// message.
func (s *Service) EnsureStream(ctx context.Context, group, stream string, createGroup bool) error {
	if err := validGroupName(group); err != nil {
		return err
	}
	if err := validStreamName(stream); err != nil {
		return err
	}
	now := s.cfg.Now().UnixMilli()
	if _, err := jsonrec.Get[groupRecord](ctx, s.st, groupKey(group)); errdefs.IsNotFound(err) {
		if !createGroup {
			return notFound("The specified log group does not exist.")
		}
		if err := s.createGroup(ctx, group, now); err != nil && !errdefs.IsAlreadyExists(err) {
			return err
		}
	} else if err != nil {
		return err
	}
	err := s.createStream(ctx, group, stream, now)
	if errdefs.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (s *Service) createGroup(ctx context.Context, group string, now int64) error {
	data, _ := json.Marshal(groupRecord{Name: group, CreationTime: now})
	_, err := s.st.Put(ctx, groupKey(group), data, store.MustNotExist)
	if errdefs.IsAlreadyExists(err) {
		return newError(codeAlreadyExists, errdefs.ErrAlreadyExists, "The specified log group already exists")
	}
	return err
}

func (s *Service) createStream(ctx context.Context, group, stream string, now int64) error {
	data, _ := json.Marshal(streamRecord{Group: group, Name: stream, CreationTime: now})
	_, err := s.st.Put(ctx, streamKey(group, stream), data, store.MustNotExist)
	if errdefs.IsAlreadyExists(err) {
		return newError(codeAlreadyExists, errdefs.ErrAlreadyExists, "The specified log stream already exists")
	}
	return err
}

// Ingest adds events of one source to stream of group (both must exist:
// EnsureStream) and returns the source offset the stream has taken up to,
// which the sender acknowledges. Events that end at or before what the
// stream took already are dropped: sending a batch again adds nothing
// twice. It blocks on the store's writes.
func (s *Service) Ingest(ctx context.Context, group, stream string, events []Event) (int64, error) {
	return s.ingest(ctx, group, stream, events, false)
}

// ingest is Ingest; assign gives the events the positions that follow the
// stream's last (PutLogEvents, whose events come from no source file).
func (s *Service) ingest(ctx context.Context, group, stream string, events []Event, assign bool) (int64, error) {
	g, err := jsonrec.Get[groupRecord](ctx, s.st, groupKey(group))
	if errdefs.IsNotFound(err) {
		return 0, notFound("The specified log group does not exist.")
	} else if err != nil {
		return 0, err
	}
	for {
		kv, err := s.st.Get(ctx, streamKey(group, stream))
		if errdefs.IsNotFound(err) {
			return 0, notFound("The specified log stream does not exist.")
		} else if err != nil {
			return 0, err
		}
		var rec streamRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return 0, fmt.Errorf("cwlogs: stream record %s is damaged: %w", kv.Key, err)
		}
		taken := rec.Acked
		var last *batchRecord
		if n := len(rec.Batches); n > 0 {
			last, err = jsonrec.Get[batchRecord](ctx, s.st, batchKey(group, stream, rec.Batches[n-1].Start))
			if errdefs.IsNotFound(err) {
				rec.Batches, last = rec.Batches[:n-1], nil // deleted by a sweep meanwhile
			} else if err != nil {
				return 0, err
			} else {
				taken = max(taken, last.End)
			}
		}
		now := s.cfg.Now().UnixMilli()
		var add []storedEvent
		var end int64
		dropped := 0
		for i, e := range events {
			if assign {
				e.Start, e.End = taken+int64(i), taken+int64(i)+1
			}
			switch {
			case e.End <= taken:
				continue // taken already
			case e.Start < taken || e.End <= e.Start:
				dropped++ // straddles what was taken: cannot be split
				continue
			}
			add = append(add, storedEvent{Time: e.Time.UnixMilli(), Ingestion: now, Pos: e.End, Message: e.Message})
			end = e.End
		}
		if dropped > 0 {
			s.log.Warn("log events overlapping what their stream already holds were dropped", "group", group, "stream", stream, "events", dropped, "taken", taken)
		}
		if len(add) == 0 {
			return taken, nil
		}
		var ref *batchRef
		var b *batchRecord
		if n := len(rec.Batches); n > 0 && last != nil && rec.Batches[n-1].Bytes < BatchBytes {
			ref, b = &rec.Batches[n-1], last
		} else {
			rec.Batches = append(rec.Batches, batchRef{Start: taken, First: add[0].Time})
			ref, b = &rec.Batches[len(rec.Batches)-1], &batchRecord{}
		}
		b.Events = append(slices.Clip(b.Events), add...)
		b.End = end
		for _, e := range add {
			ref.Bytes += e.size()
			ref.First, ref.Last = min(ref.First, e.Time), max(ref.Last, e.Time)
		}
		data, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		if _, err := s.st.Put(ctx, batchKey(group, stream, ref.Start), data, store.AnyRevision); err != nil {
			return 0, err
		}
		rec.Acked, rec.LastIngestion = end, now
		data, _ = json.Marshal(rec)
		if _, err := s.st.Put(ctx, kv.Key, data, kv.Revision); errdefs.IsConflict(err) {
			continue // another writer came first: its batch is read again
		} else if err != nil {
			return 0, err
		}
		if err := s.enforceCap(ctx, g.Name); err != nil {
			s.log.Warn("log group's size cap could not be applied", "group", group, "err", err)
		}
		return end, nil
	}
}

// enforceCap drops the oldest batches of group while it holds more than
// MaxGroupBytes, sparing each stream's newest batch.
func (s *Service) enforceCap(ctx context.Context, group string) error {
	streams, err := jsonrec.List[streamRecord](ctx, s.st, StreamPrefix+group+":")
	if err != nil {
		return err
	}
	var total int64
	type cand struct {
		stream string
		ref    batchRef
	}
	var cands []cand
	for _, r := range streams {
		total += r.storedBytes()
		for i, b := range r.Batches {
			if i < len(r.Batches)-1 {
				cands = append(cands, cand{r.Name, b})
			}
		}
	}
	if total <= s.cfg.MaxGroupBytes {
		return nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ref.Last < cands[j].ref.Last })
	drop := map[string][]int64{}
	var freed int64
	for _, c := range cands {
		if total-freed <= s.cfg.MaxGroupBytes {
			break
		}
		drop[c.stream] = append(drop[c.stream], c.ref.Start)
		freed += c.ref.Bytes
	}
	for stream, starts := range drop {
		if err := s.dropBatches(ctx, group, stream, func(b batchRef) bool { return slices.Contains(starts, b.Start) }); err != nil {
			return err
		}
	}
	if freed > 0 {
		s.log.Warn("log group is over its size cap: its oldest events were dropped", "group", group,
			"stored_bytes", total-freed, "dropped_bytes", freed, "cap_bytes", s.cfg.MaxGroupBytes)
	}
	return nil
}

// dropBatches removes the batches of a stream that drop selects, from its
// index first and then from the store.
func (s *Service) dropBatches(ctx context.Context, group, stream string, drop func(batchRef) bool) error {
	var gone []batchRef
	for {
		kv, err := s.st.Get(ctx, streamKey(group, stream))
		if errdefs.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		var rec streamRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return fmt.Errorf("cwlogs: stream record %s is damaged: %w", kv.Key, err)
		}
		gone = gone[:0]
		keep := rec.Batches[:0:0]
		for _, b := range rec.Batches {
			if drop(b) {
				gone = append(gone, b)
			} else {
				keep = append(keep, b)
			}
		}
		if len(gone) == 0 {
			return nil
		}
		rec.Batches = keep
		data, _ := json.Marshal(rec)
		if _, err := s.st.Put(ctx, kv.Key, data, kv.Revision); errdefs.IsConflict(err) {
			continue
		} else if err != nil {
			return err
		}
		break
	}
	for _, b := range gone {
		if err := s.st.Delete(ctx, batchKey(group, stream, b.Start), store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// retention is how long group g keeps events.
func (s *Service) retention(g *groupRecord) time.Duration {
	if g.RetentionInDays > 0 {
		return time.Duration(g.RetentionInDays) * s.cfg.Day
	}
	return s.cfg.DefaultRetention
}

// cutoff is the time (ms) before which group g's events are expired.
func (s *Service) cutoff(g *groupRecord) int64 {
	return s.cfg.Now().Add(-s.retention(g)).UnixMilli()
}

// Sweep deletes the batches of every group whose events are all older
// than the group's retention. It blocks on the store.
func (s *Service) Sweep(ctx context.Context) error {
	groups, err := jsonrec.List[groupRecord](ctx, s.st, GroupPrefix)
	if err != nil {
		return err
	}
	for _, g := range groups {
		cut := s.cutoff(g)
		streams, err := jsonrec.List[streamRecord](ctx, s.st, StreamPrefix+g.Name+":")
		if err != nil {
			return err
		}
		for _, r := range streams {
			if len(r.Batches) == 0 || r.Batches[0].Last >= cut && !slices.ContainsFunc(r.Batches, func(b batchRef) bool { return b.Last < cut }) {
				continue
			}
			if err := s.dropBatches(ctx, g.Name, r.Name, func(b batchRef) bool { return b.Last < cut }); err != nil {
				return err
			}
			s.log.Debug("expired log events deleted", "group", g.Name, "stream", r.Name)
		}
	}
	return nil
}

// Run sweeps expired events every SweepInterval until ctx is done.
func (s *Service) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.SweepInterval)
	defer tick.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweeping expired log events failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// streamEvents reads the events of a stream, in stream order, that are at
// or after cutoff (ms).
func (s *Service) streamEvents(ctx context.Context, r *streamRecord, cutoff int64) ([]storedEvent, error) {
	var out []storedEvent
	for _, ref := range r.Batches {
		if ref.Last < cutoff {
			continue
		}
		b, err := jsonrec.Get[batchRecord](ctx, s.st, batchKey(r.Group, r.Name, ref.Start))
		if errdefs.IsNotFound(err) {
			continue // dropped meanwhile
		} else if err != nil {
			return nil, err
		}
		for _, e := range b.Events {
			if e.Time >= cutoff {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// deleteGroup removes group with its streams and events.
func (s *Service) deleteGroup(ctx context.Context, group string) error {
	if err := s.st.Delete(ctx, groupKey(group), store.AnyRevision); errdefs.IsNotFound(err) {
		return notFound("The specified log group does not exist.")
	} else if err != nil {
		return err
	}
	for _, prefix := range []string{StreamPrefix + group + ":", EventPrefix + group + ":"} {
		kvs, _, err := s.st.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := s.st.Delete(ctx, kv.Key, store.AnyRevision); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// validGroupName checks a log group's name as CloudWatch Logs does.
func validGroupName(name string) error {
	if name == "" || len(name) > 512 {
		return invalid("log group name %q is not valid: it must have 1 to 512 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/#", r)) {
			return invalid("log group name %q is not valid: it may hold letters, digits and . _ - / # only", name)
		}
	}
	return nil
}

// validStreamName checks a log stream's name as CloudWatch Logs does.
func validStreamName(name string) error {
	if name == "" || len(name) > 512 || strings.ContainsAny(name, ":*") {
		return invalid("log stream name %q is not valid: it must have 1 to 512 characters, none of them : or *", name)
	}
	return nil
}

// StreamEvent is one event of a stream as Events reads it.
type StreamEvent struct {
	Time    time.Time
	Message string
	// Pos is the event's place in the stream: pass the last one read as
	// Events' after to read what follows.
	Pos int64
}

// Events reads the events of stream in group that follow position after
// (-1: from the first), within the group's retention, in stream order. A
// missing group or stream is an error of kind errdefs.ErrNotFound. It
// blocks on the store's reads; the caller owns the result.
func (s *Service) Events(ctx context.Context, group, stream string, after int64) ([]StreamEvent, error) {
	g, err := jsonrec.Get[groupRecord](ctx, s.st, groupKey(group))
	if errdefs.IsNotFound(err) {
		return nil, notFound("The specified log group does not exist.")
	} else if err != nil {
		return nil, err
	}
	r, err := jsonrec.Get[streamRecord](ctx, s.st, streamKey(group, stream))
	if errdefs.IsNotFound(err) {
		return nil, notFound("The specified log stream does not exist.")
	} else if err != nil {
		return nil, err
	}
	// A batch's events end at or before the next batch's start: batches
	// read already are skipped.
	for len(r.Batches) > 1 && r.Batches[1].Start <= after {
		r.Batches = r.Batches[1:]
	}
	evs, err := s.streamEvents(ctx, r, s.cutoff(g))
	if err != nil {
		return nil, err
	}
	var out []StreamEvent
	for _, e := range evs {
		if e.Pos > after {
			out = append(out, StreamEvent{Time: time.UnixMilli(e.Time), Message: e.Message, Pos: e.Pos})
		}
	}
	return out, nil
}
