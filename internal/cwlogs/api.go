package cwlogs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store/jsonrec"
)

// RetentionDays are the retentionInDays values PutRetentionPolicy accepts.
var RetentionDays = []int32{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// Default and largest page sizes.
const (
	maxGroupsPage  = 50
	maxEventsPage  = 10000
	maxEventsBytes = 1 << 20
)

type CreateLogGroupInput struct {
	LogGroupName  string            `json:"logGroupName"`
	KmsKeyID      string            `json:"kmsKeyId,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	LogGroupClass string            `json:"logGroupClass,omitempty"`
}

type Empty struct{}

// CreateLogGroup creates a group.
func (s *Service) CreateLogGroup(ctx context.Context, in *CreateLogGroupInput) (*Empty, error) {
	if err := validGroupName(in.LogGroupName); err != nil {
		return nil, err
	}
	if in.KmsKeyID != "" {
		return nil, invalid("kmsKeyId is not supported: events are kept in the control plane's store (leave kmsKeyId unset)")
	}
	if c := in.LogGroupClass; c != "" && c != "STANDARD" {
		return nil, invalid("logGroupClass %q is not supported (accepted: STANDARD)", c)
	}
	return &Empty{}, s.createGroup(ctx, in.LogGroupName, s.cfg.Now().UnixMilli())
}

type GroupNameInput struct {
	LogGroupName string `json:"logGroupName"`
}

// DeleteLogGroup deletes a group with its streams and events.
func (s *Service) DeleteLogGroup(ctx context.Context, in *GroupNameInput) (*Empty, error) {
	if err := validGroupName(in.LogGroupName); err != nil {
		return nil, err
	}
	return &Empty{}, s.deleteGroup(ctx, in.LogGroupName)
}

type DescribeLogGroupsInput struct {
	LogGroupNamePrefix  string `json:"logGroupNamePrefix,omitempty"`
	LogGroupNamePattern string `json:"logGroupNamePattern,omitempty"`
	NextToken           string `json:"nextToken,omitempty"`
	Limit               *int32 `json:"limit,omitempty"`
}

type LogGroup struct {
	LogGroupName      string `json:"logGroupName"`
	CreationTime      int64  `json:"creationTime"`
	RetentionInDays   *int32 `json:"retentionInDays,omitempty"`
	MetricFilterCount int32  `json:"metricFilterCount"`
	Arn               string `json:"arn"`
	LogGroupArn       string `json:"logGroupArn"`
	StoredBytes       int64  `json:"storedBytes"`
	LogGroupClass     string `json:"logGroupClass"`
}

type DescribeLogGroupsOutput struct {
	LogGroups []LogGroup `json:"logGroups"`
	NextToken string     `json:"nextToken,omitempty"`
}

// DescribeLogGroups lists groups in name order.
func (s *Service) DescribeLogGroups(ctx context.Context, in *DescribeLogGroupsInput) (*DescribeLogGroupsOutput, error) {
	if in.LogGroupNamePrefix != "" && in.LogGroupNamePattern != "" {
		return nil, invalid("give logGroupNamePrefix or logGroupNamePattern, not both")
	}
	limit, err := pageLimit(in.Limit, maxGroupsPage, "limit")
	if err != nil {
		return nil, err
	}
	after, err := decodeToken[string](in.NextToken)
	if err != nil {
		return nil, err
	}
	groups, err := jsonrec.List[groupRecord](ctx, s.st, GroupPrefix+in.LogGroupNamePrefix)
	if err != nil {
		return nil, err
	}
	out := &DescribeLogGroupsOutput{LogGroups: []LogGroup{}}
	for _, g := range groups {
		if g.Name <= after || in.LogGroupNamePattern != "" && !strings.Contains(g.Name, in.LogGroupNamePattern) {
			continue
		}
		if len(out.LogGroups) == limit {
			out.NextToken = encodeToken(out.LogGroups[limit-1].LogGroupName)
			break
		}
		lg, err := s.describeGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		out.LogGroups = append(out.LogGroups, lg)
	}
	return out, nil
}

func (s *Service) describeGroup(ctx context.Context, g *groupRecord) (LogGroup, error) {
	streams, err := jsonrec.List[streamRecord](ctx, s.st, StreamPrefix+g.Name+":")
	if err != nil {
		return LogGroup{}, err
	}
	var stored int64
	for _, r := range streams {
		stored += r.storedBytes()
	}
	arn := "arn:aws:logs:" + s.cfg.Region + ":" + s.cfg.AccountID + ":log-group:" + g.Name
	lg := LogGroup{LogGroupName: g.Name, CreationTime: g.CreationTime, Arn: arn + ":*", LogGroupArn: arn, StoredBytes: stored, LogGroupClass: "STANDARD"}
	if g.RetentionInDays > 0 {
		d := g.RetentionInDays
		lg.RetentionInDays = &d
	}
	return lg, nil
}

type PutRetentionPolicyInput struct {
	LogGroupName    string `json:"logGroupName"`
	RetentionInDays int32  `json:"retentionInDays"`
}

// PutRetentionPolicy sets how long a group keeps events.
func (s *Service) PutRetentionPolicy(ctx context.Context, in *PutRetentionPolicyInput) (*Empty, error) {
	if !slices.Contains(RetentionDays, in.RetentionInDays) {
		days := make([]string, len(RetentionDays))
		for i, d := range RetentionDays {
			days[i] = strconv.Itoa(int(d))
		}
		return nil, invalid("retentionInDays %d is not valid: accepted values are %s", in.RetentionInDays, strings.Join(days, ", "))
	}
	return &Empty{}, s.setRetention(ctx, in.LogGroupName, in.RetentionInDays)
}

// DeleteRetentionPolicy makes a group keep events for the default time.
func (s *Service) DeleteRetentionPolicy(ctx context.Context, in *GroupNameInput) (*Empty, error) {
	return &Empty{}, s.setRetention(ctx, in.LogGroupName, 0)
}

func (s *Service) setRetention(ctx context.Context, group string, days int32) error {
	if err := validGroupName(group); err != nil {
		return err
	}
	_, err := jsonrec.Update(ctx, s.st, groupKey(group), func(g *groupRecord) (*groupRecord, error) {
		if g == nil {
			return nil, notFound("The specified log group does not exist.")
		}
		g.RetentionInDays = days
		return g, nil
	})
	return err
}

type CreateLogStreamInput struct {
	LogGroupName  string `json:"logGroupName"`
	LogStreamName string `json:"logStreamName"`
}

// CreateLogStream creates a stream in an existing group.
func (s *Service) CreateLogStream(ctx context.Context, in *CreateLogStreamInput) (*Empty, error) {
	if err := validGroupName(in.LogGroupName); err != nil {
		return nil, err
	}
	if err := validStreamName(in.LogStreamName); err != nil {
		return nil, err
	}
	if _, err := jsonrec.Get[groupRecord](ctx, s.st, groupKey(in.LogGroupName)); errdefs.IsNotFound(err) {
		return nil, notFound("The specified log group does not exist.")
	} else if err != nil {
		return nil, err
	}
	return &Empty{}, s.createStream(ctx, in.LogGroupName, in.LogStreamName, s.cfg.Now().UnixMilli())
}

type DescribeLogStreamsInput struct {
	LogGroupName        string `json:"logGroupName,omitempty"`
	LogGroupIdentifier  string `json:"logGroupIdentifier,omitempty"`
	LogStreamNamePrefix string `json:"logStreamNamePrefix,omitempty"`
	OrderBy             string `json:"orderBy,omitempty"`
	Descending          bool   `json:"descending,omitempty"`
	NextToken           string `json:"nextToken,omitempty"`
	Limit               *int32 `json:"limit,omitempty"`
}

type LogStream struct {
	LogStreamName       string `json:"logStreamName"`
	CreationTime        int64  `json:"creationTime"`
	FirstEventTimestamp *int64 `json:"firstEventTimestamp,omitempty"`
	LastEventTimestamp  *int64 `json:"lastEventTimestamp,omitempty"`
	LastIngestionTime   *int64 `json:"lastIngestionTime,omitempty"`
	Arn                 string `json:"arn"`
	StoredBytes         int64  `json:"storedBytes"`
}

type DescribeLogStreamsOutput struct {
	LogStreams []LogStream `json:"logStreams"`
	NextToken  string      `json:"nextToken,omitempty"`
}

// groupOf resolves logGroupName or logGroupIdentifier (a name or an ARN).
func (s *Service) groupOf(ctx context.Context, name, identifier string) (*groupRecord, error) {
	switch {
	case name != "" && identifier != "":
		return nil, invalid("give logGroupName or logGroupIdentifier, not both")
	case identifier != "":
		name = identifier
		if rest, ok := strings.CutPrefix(identifier, "arn:"); ok {
			_, after, found := strings.Cut(rest, ":log-group:")
			if !found {
				return nil, invalid("logGroupIdentifier %q is neither a log group's name nor its ARN (arn:aws:logs:<region>:<account>:log-group:<name>)", identifier)
			}
			name = strings.TrimSuffix(after, ":*")
		}
	case name == "":
		return nil, invalid("logGroupName is required")
	}
	if err := validGroupName(name); err != nil {
		return nil, err
	}
	g, err := jsonrec.Get[groupRecord](ctx, s.st, groupKey(name))
	if errdefs.IsNotFound(err) {
		return nil, notFound("The specified log group does not exist.")
	}
	return g, err
}

// DescribeLogStreams lists a group's streams by name or by last event.
func (s *Service) DescribeLogStreams(ctx context.Context, in *DescribeLogStreamsInput) (*DescribeLogStreamsOutput, error) {
	switch in.OrderBy {
	case "", "LogStreamName":
	case "LastEventTime":
		if in.LogStreamNamePrefix != "" {
			return nil, invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
		}
	default:
		return nil, invalid("orderBy %q is not valid: accepted values are LogStreamName, LastEventTime", in.OrderBy)
	}
	limit, err := pageLimit(in.Limit, maxGroupsPage, "limit")
	if err != nil {
		return nil, err
	}
	skip, err := decodeToken[int](in.NextToken)
	if err != nil {
		return nil, err
	}
	g, err := s.groupOf(ctx, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return nil, err
	}
	recs, err := jsonrec.List[streamRecord](ctx, s.st, StreamPrefix+g.Name+":"+in.LogStreamNamePrefix)
	if err != nil {
		return nil, err
	}
	cut := s.cutoff(g)
	streams := make([]LogStream, 0, len(recs))
	for _, r := range recs {
		ls := LogStream{LogStreamName: r.Name, CreationTime: r.CreationTime, StoredBytes: r.storedBytes(),
			Arn: "arn:aws:logs:" + s.cfg.Region + ":" + s.cfg.AccountID + ":log-group:" + g.Name + ":log-stream:" + r.Name}
		var first, last int64 = -1, -1
		for _, b := range r.Batches {
			if b.Last < cut {
				continue
			}
			if first < 0 || b.First < first {
				first = max(b.First, cut)
			}
			last = max(last, b.Last)
		}
		if last >= 0 {
			ls.FirstEventTimestamp, ls.LastEventTimestamp = &first, &last
		}
		if r.LastIngestion > 0 {
			li := r.LastIngestion
			ls.LastIngestionTime = &li
		}
		streams = append(streams, ls)
	}
	if in.OrderBy == "LastEventTime" {
		sort.SliceStable(streams, func(i, j int) bool {
			return derefOr(streams[i].LastEventTimestamp, 0) < derefOr(streams[j].LastEventTimestamp, 0)
		})
	}
	if in.Descending {
		slices.Reverse(streams)
	}
	out := &DescribeLogStreamsOutput{LogStreams: []LogStream{}}
	if skip > len(streams) || skip < 0 {
		return nil, invalid("nextToken is not valid: it is not a token this operation returned for this group")
	}
	streams = streams[skip:]
	if len(streams) > limit {
		streams = streams[:limit]
		out.NextToken = encodeToken(skip + limit)
	}
	out.LogStreams = streams
	return out, nil
}

type InputLogEvent struct {
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

type PutLogEventsInput struct {
	LogGroupName  string          `json:"logGroupName"`
	LogStreamName string          `json:"logStreamName"`
	LogEvents     []InputLogEvent `json:"logEvents"`
	SequenceToken string          `json:"sequenceToken,omitempty"`
}

type PutLogEventsOutput struct {
	NextSequenceToken string `json:"nextSequenceToken,omitempty"`
}

// PutLogEvents adds events to a stream (for tools and tests; tasks' output
// is shipped by their hosts' agents).
func (s *Service) PutLogEvents(ctx context.Context, in *PutLogEventsInput) (*PutLogEventsOutput, error) {
	if len(in.LogEvents) == 0 || len(in.LogEvents) > MaxBatchEvents {
		return nil, invalid("logEvents must hold 1 to %d events; got %d", MaxBatchEvents, len(in.LogEvents))
	}
	evs := make([]Event, len(in.LogEvents))
	for i, e := range in.LogEvents {
		if len(e.Message) > MaxEventBytes {
			return nil, invalid("logEvents[%d] holds %d bytes; an event's message may hold at most %d", i, len(e.Message), MaxEventBytes)
		}
		if i > 0 && e.Timestamp < in.LogEvents[i-1].Timestamp {
			return nil, invalid("Log events in a single PutLogEvents request must be in chronological order.")
		}
		evs[i] = Event{Time: time.UnixMilli(e.Timestamp), Message: e.Message}
	}
	if _, err := s.ingest(ctx, in.LogGroupName, in.LogStreamName, evs, true); err != nil {
		return nil, err
	}
	return &PutLogEventsOutput{}, nil
}

type GetLogEventsInput struct {
	LogGroupName       string `json:"logGroupName,omitempty"`
	LogGroupIdentifier string `json:"logGroupIdentifier,omitempty"`
	LogStreamName      string `json:"logStreamName"`
	StartTime          *int64 `json:"startTime,omitempty"`
	EndTime            *int64 `json:"endTime,omitempty"`
	NextToken          string `json:"nextToken,omitempty"`
	Limit              *int32 `json:"limit,omitempty"`
	StartFromHead      *bool  `json:"startFromHead,omitempty"`
	Unmask             bool   `json:"unmask,omitempty"`
}

type OutputLogEvent struct {
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
}

type GetLogEventsOutput struct {
	Events            []OutputLogEvent `json:"events"`
	NextForwardToken  string           `json:"nextForwardToken"`
	NextBackwardToken string           `json:"nextBackwardToken"`
}

// GetLogEvents pages through one stream's events. A token f/<pos> reads
// the events after position pos, b/<pos> the events before it; without
// one, startFromHead reads from the oldest, else the newest are read. At
// the end, the token given comes back (the CLI stops on a repeated token).
func (s *Service) GetLogEvents(ctx context.Context, in *GetLogEventsInput) (*GetLogEventsOutput, error) {
	limit, err := pageLimit(in.Limit, maxEventsPage, "limit")
	if err != nil {
		return nil, err
	}
	g, err := s.groupOf(ctx, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return nil, err
	}
	if err := validStreamName(in.LogStreamName); err != nil {
		return nil, err
	}
	r, err := jsonrec.Get[streamRecord](ctx, s.st, streamKey(g.Name, in.LogStreamName))
	if errdefs.IsNotFound(err) {
		return nil, notFound("The specified log stream does not exist.")
	} else if err != nil {
		return nil, err
	}
	forward := in.StartFromHead != nil && *in.StartFromHead
	pos := int64(1<<63 - 1) // from the end
	if forward {
		pos = -1 // from the head
	}
	if t := in.NextToken; t != "" {
		dir, num, ok := strings.Cut(t, "/")
		n, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || dir != "f" && dir != "b" {
			return nil, invalid("nextToken %q is not valid: give a nextForwardToken or nextBackwardToken this operation returned", t)
		}
		forward, pos = dir == "f", n
	}
	cut := s.cutoff(g)
	if in.StartTime != nil {
		cut = max(cut, *in.StartTime)
	}
	evs, err := s.streamEvents(ctx, r, cut)
	if err != nil {
		return nil, err
	}
	evs = slices.DeleteFunc(evs, func(e storedEvent) bool {
		return in.StartTime != nil && e.Time < *in.StartTime || in.EndTime != nil && e.Time >= *in.EndTime
	})
	var page []storedEvent
	if forward {
		i, _ := slices.BinarySearchFunc(evs, pos+1, func(e storedEvent, p int64) int { return cmpInt(e.Pos, p) })
		page = evs[i:min(len(evs), i+limit)]
		page = trimBytes(page, true)
	} else {
		i, _ := slices.BinarySearchFunc(evs, pos, func(e storedEvent, p int64) int { return cmpInt(e.Pos, p) })
		page = evs[max(0, i-limit):i]
		page = trimBytes(page, false)
	}
	out := &GetLogEventsOutput{Events: make([]OutputLogEvent, len(page))}
	for i, e := range page {
		out.Events[i] = OutputLogEvent{Timestamp: e.Time, Message: e.Message, IngestionTime: e.Ingestion}
	}
	if len(page) == 0 {
		if in.NextToken != "" {
			out.NextForwardToken, out.NextBackwardToken = "f/"+strconv.FormatInt(pos, 10), "b/"+strconv.FormatInt(pos, 10)
		} else {
			out.NextForwardToken, out.NextBackwardToken = "f/-1", "b/0"
			if !forward {
				out.NextForwardToken = "f/" + strconv.FormatInt(lastPos(evs), 10)
			}
		}
		return out, nil
	}
	out.NextForwardToken = "f/" + strconv.FormatInt(page[len(page)-1].Pos, 10)
	out.NextBackwardToken = "b/" + strconv.FormatInt(page[0].Pos, 10)
	return out, nil
}

func lastPos(evs []storedEvent) int64 {
	if len(evs) == 0 {
		return -1
	}
	return evs[len(evs)-1].Pos
}

// trimBytes keeps events of a page up to maxEventsBytes, from its start
// (head) or its end.
func trimBytes(page []storedEvent, head bool) []storedEvent {
	var n int64
	if head {
		for i, e := range page {
			if n += e.size(); n > maxEventsBytes && i > 0 {
				return page[:i]
			}
		}
		return page
	}
	for i := len(page) - 1; i >= 0; i-- {
		if n += page[i].size(); n > maxEventsBytes && i < len(page)-1 {
			return page[i+1:]
		}
	}
	return page
}

type FilterLogEventsInput struct {
	LogGroupName        string   `json:"logGroupName,omitempty"`
	LogGroupIdentifier  string   `json:"logGroupIdentifier,omitempty"`
	LogStreamNames      []string `json:"logStreamNames,omitempty"`
	LogStreamNamePrefix string   `json:"logStreamNamePrefix,omitempty"`
	StartTime           *int64   `json:"startTime,omitempty"`
	EndTime             *int64   `json:"endTime,omitempty"`
	FilterPattern       string   `json:"filterPattern,omitempty"`
	NextToken           string   `json:"nextToken,omitempty"`
	Limit               *int32   `json:"limit,omitempty"`
	Interleaved         *bool    `json:"interleaved,omitempty"`
	Unmask              bool     `json:"unmask,omitempty"`
}

type FilteredLogEvent struct {
	LogStreamName string `json:"logStreamName"`
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
	EventID       string `json:"eventId"`
}

type SearchedLogStream struct {
	LogStreamName      string `json:"logStreamName"`
	SearchedCompletely bool   `json:"searchedCompletely"`
}

type FilterLogEventsOutput struct {
	Events             []FilteredLogEvent  `json:"events"`
	SearchedLogStreams []SearchedLogStream `json:"searchedLogStreams"`
	NextToken          string              `json:"nextToken,omitempty"`
}

// filterCursor is where a FilterLogEvents page ended: events sort by
// time, then stream, then position.
type filterCursor struct {
	Time   int64  `json:"t"`
	Stream string `json:"s"`
	Pos    int64  `json:"p"`
}

func (c filterCursor) less(o filterCursor) bool {
	if c.Time != o.Time {
		return c.Time < o.Time
	}
	if c.Stream != o.Stream {
		return c.Stream < o.Stream
	}
	return c.Pos < o.Pos
}

// FilterLogEvents reads the events of a group's streams that match a
// filter pattern (FilterPattern), in time order across streams.
func (s *Service) FilterLogEvents(ctx context.Context, in *FilterLogEventsInput) (*FilterLogEventsOutput, error) {
	if len(in.LogStreamNames) > 0 && in.LogStreamNamePrefix != "" {
		return nil, invalid("give logStreamNames or logStreamNamePrefix, not both")
	}
	if len(in.LogStreamNames) > 100 {
		return nil, invalid("logStreamNames may hold up to 100 names; got %d", len(in.LogStreamNames))
	}
	limit, err := pageLimit(in.Limit, maxEventsPage, "limit")
	if err != nil {
		return nil, err
	}
	match, err := ParseFilterPattern(in.FilterPattern)
	if err != nil {
		return nil, err
	}
	var after *filterCursor
	if in.NextToken != "" {
		c, err := decodeToken[filterCursor](in.NextToken)
		if err != nil {
			return nil, err
		}
		after = &c
	}
	g, err := s.groupOf(ctx, in.LogGroupName, in.LogGroupIdentifier)
	if err != nil {
		return nil, err
	}
	recs, err := jsonrec.List[streamRecord](ctx, s.st, StreamPrefix+g.Name+":"+in.LogStreamNamePrefix)
	if err != nil {
		return nil, err
	}
	if len(in.LogStreamNames) > 0 {
		recs = slices.DeleteFunc(recs, func(r *streamRecord) bool { return !slices.Contains(in.LogStreamNames, r.Name) })
	}
	cut := s.cutoff(g)
	if in.StartTime != nil {
		cut = max(cut, *in.StartTime) // batches wholly before startTime are not read
	}
	type hit struct {
		c filterCursor
		e storedEvent
	}
	var hits []hit
	out := &FilterLogEventsOutput{Events: []FilteredLogEvent{}, SearchedLogStreams: []SearchedLogStream{}}
	for _, r := range recs {
		evs, err := s.streamEvents(ctx, r, cut)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if in.StartTime != nil && e.Time < *in.StartTime || in.EndTime != nil && e.Time > *in.EndTime {
				continue
			}
			c := filterCursor{e.Time, r.Name, e.Pos}
			if after != nil && !after.less(c) || !match.Match(e.Message) {
				continue
			}
			hits = append(hits, hit{c, e})
		}
		out.SearchedLogStreams = append(out.SearchedLogStreams, SearchedLogStream{LogStreamName: r.Name, SearchedCompletely: true})
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].c.less(hits[j].c) })
	var size int64
	for i, h := range hits {
		size += h.e.size()
		if i == limit || size > maxEventsBytes && i > 0 {
			out.NextToken = encodeToken(hits[i-1].c)
			break
		}
		out.Events = append(out.Events, FilteredLogEvent{LogStreamName: h.c.Stream, Timestamp: h.e.Time, Message: h.e.Message,
			IngestionTime: h.e.Ingestion, EventID: eventID(g.Name, h.c.Stream, h.e.Pos)})
	}
	return out, nil
}

// eventID names an event uniquely and stably: digits, as CloudWatch's.
func eventID(group, stream string, pos int64) string {
	h := fnv.New64a()
	h.Write([]byte(group + ":" + stream))
	return fmt.Sprintf("%020d%020d", h.Sum64(), pos)
}

// pageLimit reads a limit between 1 and most, most when unset.
func pageLimit(l *int32, most int, name string) (int, error) {
	if l == nil {
		return most, nil
	}
	if *l < 1 || int(*l) > most {
		return 0, invalid("%s %d is not valid: it must be between 1 and %d", name, *l, most)
	}
	return int(*l), nil
}

func encodeToken(v any) string {
	data, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(data)
}

// decodeToken reads a token encodeToken made; "" is T's zero value.
func decodeToken[T any](tok string) (T, error) {
	var v T
	if tok == "" {
		return v, nil
	}
	data, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		err = json.Unmarshal(data, &v)
	}
	if err != nil {
		return v, invalid("nextToken %q is not valid: give the nextToken this operation returned", tok)
	}
	return v, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
