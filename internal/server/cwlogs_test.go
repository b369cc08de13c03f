package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsclient"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// logsClient is the SDK's CloudWatch Logs client with key k.
func (e *env) logsClient(k auth.Key) *cloudwatchlogs.Client {
	cfg := aws.Config{Region: "us-east-1", RetryMaxAttempts: 1, HTTPClient: awsclient.HTTPClient(nil),
		Credentials: credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")}
	return cloudwatchlogs.NewFromConfig(cfg, func(o *cloudwatchlogs.Options) { o.BaseEndpoint = aws.String(e.url) })
}

// TestCloudWatchLogsWire drives every CloudWatch Logs operation through
// the SDK's client: its requests decode here, and our answers and typed
// exceptions decode there.
func TestCloudWatchLogsWire(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	cw := e.logsClient(e.key)
	c := ctx(t)
	for _, g := range []string{"/ecs/web", "/ecs/api", "/other"} {
		if _, err := cw.CreateLogGroup(c, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(g)}); err != nil {
			t.Fatalf("CreateLogGroup %s: %v", g, err)
		}
	}
	_, err := cw.CreateLogGroup(c, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("/ecs/web")})
	var exists *cwtypes.ResourceAlreadyExistsException
	if !errors.As(err, &exists) {
		t.Fatalf("CreateLogGroup again: %v; want ResourceAlreadyExistsException", err)
	}
	_, err = cw.CreateLogGroup(c, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("bad:name")})
	var invalid *cwtypes.InvalidParameterException
	if !errors.As(err, &invalid) || !strings.Contains(err.Error(), "letters, digits") {
		t.Fatalf("CreateLogGroup bad:name: %v; want InvalidParameterException saying what is accepted", err)
	}
	page1, err := cw.DescribeLogGroups(c, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/ecs/"), Limit: aws.Int32(1)})
	if err != nil || len(page1.LogGroups) != 1 || aws.ToString(page1.LogGroups[0].LogGroupName) != "/ecs/api" || page1.NextToken == nil ||
		aws.ToString(page1.LogGroups[0].Arn) != "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/api:*" || page1.LogGroups[0].CreationTime == nil {
		t.Fatalf("DescribeLogGroups page 1 = %+v, %v", page1, err)
	}
	page2, err := cw.DescribeLogGroups(c, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/ecs/"), NextToken: page1.NextToken})
	if err != nil || len(page2.LogGroups) != 1 || aws.ToString(page2.LogGroups[0].LogGroupName) != "/ecs/web" || page2.NextToken != nil {
		t.Fatalf("DescribeLogGroups page 2 = %+v, %v", page2, err)
	}
	if _, err := cw.PutRetentionPolicy(c, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: aws.String("/ecs/web"), RetentionInDays: aws.Int32(4)}); !errors.As(err, &invalid) {
		t.Fatalf("PutRetentionPolicy 4 days: %v; want InvalidParameterException", err)
	}
	if _, err := cw.PutRetentionPolicy(c, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: aws.String("/ecs/web"), RetentionInDays: aws.Int32(7)}); err != nil {
		t.Fatalf("PutRetentionPolicy: %v", err)
	}
	g, _ := cw.DescribeLogGroups(c, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/ecs/web")})
	if len(g.LogGroups) != 1 || aws.ToInt32(g.LogGroups[0].RetentionInDays) != 7 {
		t.Fatalf("retention not shown: %+v", g.LogGroups)
	}
	if _, err := cw.DeleteRetentionPolicy(c, &cloudwatchlogs.DeleteRetentionPolicyInput{LogGroupName: aws.String("/ecs/web")}); err != nil {
		t.Fatalf("DeleteRetentionPolicy: %v", err)
	}

	if _, err := cw.CreateLogStream(c, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String("/ecs/web"), LogStreamName: aws.String("web/app/1")}); err != nil {
		t.Fatalf("CreateLogStream: %v", err)
	}
	now := time.Now().Add(-time.Minute)
	var evs []cwtypes.InputLogEvent
	for i := 0; i < 12; i++ {
		msg := fmt.Sprintf("INFO request %d ok", i)
		if i%4 == 0 {
			msg = fmt.Sprintf(`{"level":"error","n":%d}`, i)
		}
		evs = append(evs, cwtypes.InputLogEvent{Timestamp: aws.Int64(now.Add(time.Duration(i) * time.Second).UnixMilli()), Message: aws.String(msg)})
	}
	if _, err := cw.PutLogEvents(c, &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String("/ecs/web"), LogStreamName: aws.String("web/app/1"), LogEvents: evs}); err != nil {
		t.Fatalf("PutLogEvents: %v", err)
	}
	ls, err := cw.DescribeLogStreams(c, &cloudwatchlogs.DescribeLogStreamsInput{LogGroupName: aws.String("/ecs/web"), OrderBy: cwtypes.OrderByLastEventTime, Descending: aws.Bool(true)})
	if err != nil || len(ls.LogStreams) != 1 || aws.ToInt64(ls.LogStreams[0].LastEventTimestamp) != now.Add(11*time.Second).UnixMilli() {
		t.Fatalf("DescribeLogStreams = %+v, %v", ls, err)
	}
	_, err = cw.DescribeLogStreams(c, &cloudwatchlogs.DescribeLogStreamsInput{LogGroupName: aws.String("/ecs/web"), OrderBy: cwtypes.OrderByLastEventTime, LogStreamNamePrefix: aws.String("web")})
	if !errors.As(err, &invalid) {
		t.Fatalf("DescribeLogStreams LastEventTime with a prefix: %v; want InvalidParameterException", err)
	}

	head, err := cw.GetLogEvents(c, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String("/ecs/web"), LogStreamName: aws.String("web/app/1"),
		StartFromHead: aws.Bool(true), Limit: aws.Int32(5)})
	if err != nil || len(head.Events) != 5 || aws.ToString(head.Events[1].Message) != "INFO request 1 ok" || head.NextForwardToken == nil || head.Events[0].IngestionTime == nil {
		t.Fatalf("GetLogEvents from the head = %+v, %v", head, err)
	}
	next, err := cw.GetLogEvents(c, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String("/ecs/web"), LogStreamName: aws.String("web/app/1"),
		NextToken: head.NextForwardToken, Limit: aws.Int32(100)})
	if err != nil || len(next.Events) != 7 || aws.ToString(next.Events[0].Message) != "INFO request 5 ok" {
		t.Fatalf("GetLogEvents forward = %+v, %v", next, err)
	}
	end, err := cw.GetLogEvents(c, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String("/ecs/web"), LogStreamName: aws.String("web/app/1"), NextToken: next.NextForwardToken})
	if err != nil || len(end.Events) != 0 || aws.ToString(end.NextForwardToken) != aws.ToString(next.NextForwardToken) {
		t.Fatalf("GetLogEvents at the end = %+v, %v; want the same token back", end, err)
	}
	var got []string
	p := cloudwatchlogs.NewFilterLogEventsPaginator(cw, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("/ecs/web"),
		FilterPattern: aws.String(`{ $.level = "error" }`), Limit: aws.Int32(2)})
	for p.HasMorePages() {
		out, err := p.NextPage(c)
		if err != nil {
			t.Fatalf("FilterLogEvents: %v", err)
		}
		for _, ev := range out.Events {
			got = append(got, aws.ToString(ev.Message))
			if aws.ToString(ev.LogStreamName) != "web/app/1" || aws.ToString(ev.EventId) == "" {
				t.Fatalf("FilterLogEvents event %+v", ev)
			}
		}
	}
	if strings.Join(got, " ") != `{"level":"error","n":0} {"level":"error","n":4} {"level":"error","n":8}` {
		t.Fatalf("FilterLogEvents with a JSON pattern found %q", got)
	}
	terms, err := cw.FilterLogEvents(c, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("/ecs/web"), LogStreamNames: []string{"web/app/1"},
		FilterPattern: aws.String(`?"request 3" ?"request 5"`), StartTime: aws.Int64(now.UnixMilli())})
	if err != nil || len(terms.Events) != 2 || len(terms.SearchedLogStreams) != 1 {
		t.Fatalf("FilterLogEvents with ? alternatives = %+v, %v", terms, err)
	}

	_, err = cw.GetLogEvents(c, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String("/ecs/none"), LogStreamName: aws.String("x")})
	var notFound *cwtypes.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("GetLogEvents of a missing group: %v; want ResourceNotFoundException", err)
	}
	code, msg, status := apiErr(t, err)
	if code != "ResourceNotFoundException" || status != http.StatusBadRequest || msg != "The specified log group does not exist." {
		t.Fatalf("missing group: %s %d %q", code, status, msg)
	}
	if _, err := cw.DeleteLogGroup(c, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String("/ecs/web")}); err != nil {
		t.Fatalf("DeleteLogGroup: %v", err)
	}
	if _, err := cw.DeleteLogGroup(c, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String("/ecs/web")}); !errors.As(err, &notFound) {
		t.Fatalf("DeleteLogGroup again: %v; want ResourceNotFoundException", err)
	}
	// An operation outside the subset is named, with what is supported.
	_, err = cw.DescribeMetricFilters(c, &cloudwatchlogs.DescribeMetricFiltersInput{})
	if code, msg, _ := apiErr(t, err); code != "UnknownOperationException" || !strings.Contains(msg, "FilterLogEvents") {
		t.Fatalf("DescribeMetricFilters: %s %q", code, msg)
	}
}

// TestLogsNeedTheirActions: the API's operations are logs:<Op> actions: a
// read-only key reads events but creates nothing, a custom key gets what it
// lists, a host key calls none.
func TestLogsNeedTheirActions(t *testing.T) {
	e := newKeyEnv(t)
	c := ctx(t)
	admin := e.logsClient(e.key)
	if _, err := admin.CreateLogGroup(c, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String("g")}); err != nil {
		t.Fatal(err)
	}
	ro := e.logsClient(e.create("auditor", auth.PolicyReadOnly))
	if _, err := ro.FilterLogEvents(c, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g")}); err != nil {
		t.Errorf("read-only FilterLogEvents: %v", err)
	}
	if _, err := ro.DescribeLogGroups(c, &cloudwatchlogs.DescribeLogGroupsInput{}); err != nil {
		t.Errorf("read-only DescribeLogGroups: %v", err)
	}
	_, err := ro.DeleteLogGroup(c, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String("g")})
	wantDenied(t, err, "auditor", "logs:DeleteLogGroup", http.StatusBadRequest)
	cu := e.logsClient(e.create("tailer", "", "logs:FilterLogEvents"))
	if _, err := cu.FilterLogEvents(c, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g")}); err != nil {
		t.Errorf("custom logs:FilterLogEvents: %v", err)
	}
	_, err = cu.PutRetentionPolicy(c, &cloudwatchlogs.PutRetentionPolicyInput{LogGroupName: aws.String("g"), RetentionInDays: aws.Int32(1)})
	wantDenied(t, err, "tailer", "logs:PutRetentionPolicy", http.StatusBadRequest)
}

// awslogsDef registers a task definition whose container uses awslogs.
func (e *env) awslogsDef(family string, opts map[string]string) string {
	e.t.Helper()
	out, err := e.ecs.RegisterTaskDefinition(ctx(e.t), &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family), Cpu: aws.String("256"), Memory: aws.String("512"),
		NetworkMode: ecstypes.NetworkModeAwsvpc, RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"),
			LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: opts}}},
	})
	if err != nil {
		e.t.Fatalf("RegisterTaskDefinition: %v", err)
	}
	return *out.TaskDefinition.TaskDefinitionArn
}

// TestTaskLogEventsOnlyFromItsHost: the agent protocol's log routes take
// the group and stream from the task's record, serve only the host the
// task is placed on, and drop a batch sent again; a missing group without
// awslogs-create-group is ECS's ResourceInitializationError.
func TestTaskLogEventsOnlyFromItsHost(t *testing.T) {
	keyH1, keyH2 := newHostKey(t, "h1"), newHostKey(t, "h2")
	e := newEnvWith(t, envOptions{noAgent: true}, func(c *server.Config) {
		c.Keyring = auth.NewStaticKeyring(append(c.Keys, keyH1, keyH2)...)
	})
	c := ctx(t)
	h1, err := agentproto.NewClient(e.url, keyH1, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := agentproto.NewClient(e.url, keyH2, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct {
		id string
		cl *agentproto.Client
	}{{"h1", h1}, {"h2", h2}} {
		if err := h.cl.RegisterHost(c, agentproto.Host{ID: h.id, MilliCPU: 1000, MemoryMiB: 2048, Runtimes: []string{"sim"}}); err != nil {
			t.Fatal(err)
		}
	}
	opts := map[string]string{"awslogs-group": "/ecs/logs", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}
	missing := e.run(e.awslogsDef("nogroup", opts))
	opts["awslogs-create-group"] = "true"
	arn := e.run(e.awslogsDef("withgroup", opts))
	taskOn := func(arn string) (string, string) {
		id := arn[strings.LastIndex(arn, "/")+1:]
		var t task.Task
		testutil.Eventually(e.t, 20*time.Second, func() error {
			kv, err := e.st.Get(c, "tasks/"+id)
			if err == nil {
				err = json.Unmarshal(kv.Value, &t)
			}
			if err == nil && t.HostID == "" {
				err = fmt.Errorf("task %s is not placed yet", id)
			}
			return err
		})
		return id, t.HostID
	}
	id, host := taskOn(arn)
	missingID, missingHost := taskOn(missing)
	if host == "" || missingHost == "" {
		t.Fatal("the tasks were not placed")
	}
	clientOf := map[string]*agentproto.Client{"h1": h1, "h2": h2}
	other := map[string]string{"h1": "h2", "h2": "h1"}

	res, err := clientOf[missingHost].CreateTaskLogStreams(c, missingHost, missingID)
	if err != nil || !strings.Contains(res.Failure, "ResourceInitializationError") || !strings.Contains(res.Failure, "The specified log group does not exist") {
		t.Fatalf("CreateTaskLogStreams without the group = %+v, %v; want ECS's ResourceInitializationError", res, err)
	}
	if _, err := clientOf[other[host]].CreateTaskLogStreams(c, other[host], id); !errdefs.IsNotFound(err) {
		t.Fatalf("CreateTaskLogStreams from another host: %v; want not found", err)
	}
	if _, err := h1.CreateTaskLogStreams(c, "h2", id); err == nil || !strings.Contains(err.Error(), "may act only for that host") {
		t.Fatalf("h1's key acting for h2: %v; want refused", err)
	}
	if res, err := clientOf[host].CreateTaskLogStreams(c, host, id); err != nil || res.Failure != "" {
		t.Fatalf("CreateTaskLogStreams = %+v, %v", res, err)
	}
	batch := agentproto.LogEventsBatch{Container: "app", Events: []agentproto.LogEvent{
		{Time: time.Now(), Message: "one", Start: 0, End: 10}, {Time: time.Now(), Message: "two", Start: 10, End: 20}}}
	if _, err := clientOf[other[host]].PutTaskLogEvents(c, other[host], id, batch); !errdefs.IsNotFound(err) {
		t.Fatalf("PutTaskLogEvents from another host: %v; want not found", err)
	}
	for range 2 {
		ack, err := clientOf[host].PutTaskLogEvents(c, host, id, batch)
		if err != nil || ack.Acked != 20 {
			t.Fatalf("PutTaskLogEvents = %+v, %v; want acked 20", ack, err)
		}
	}
	huge := agentproto.LogEventsBatch{Container: "app", Events: []agentproto.LogEvent{{Time: time.Now(), Message: strings.Repeat("x", 256<<10), Start: 20, End: 30}}}
	if _, err := clientOf[host].PutTaskLogEvents(c, host, id, huge); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("PutTaskLogEvents of a 256 KiB event: %v; want refused, saying the limit", err)
	}
	overlap := agentproto.LogEventsBatch{Container: "app", Events: []agentproto.LogEvent{{Time: time.Now(), Message: "a", Start: 20, End: 30}, {Time: time.Now(), Message: "b", Start: 25, End: 35}}}
	if _, err := clientOf[host].PutTaskLogEvents(c, host, id, overlap); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("PutTaskLogEvents of overlapping events: %v; want refused", err)
	}
	if _, err := clientOf[host].PutTaskLogEvents(c, host, id, agentproto.LogEventsBatch{Container: "other", Events: batch.Events}); !errdefs.IsNotFound(err) {
		t.Fatalf("PutTaskLogEvents for a container without awslogs: %v; want not found", err)
	}
	out, err := e.logsClient(e.key).GetLogEvents(c, &cloudwatchlogs.GetLogEventsInput{LogGroupName: aws.String("/ecs/logs"),
		LogStreamName: aws.String("web/app/" + id), StartFromHead: aws.Bool(true)})
	if err != nil || len(out.Events) != 2 || aws.ToString(out.Events[1].Message) != "two" {
		t.Fatalf("the stream web/app/%s = %+v, %v; want one and two, once each", id, out, err)
	}
}

// TestAWSLogsGroupMissingStopsTask: a task whose awslogs group does not
// exist, without awslogs-create-group, stops with TaskFailedToStart and
// ECS's reason; with awslogs-create-group the group and the stream
// prefix/container-name/task-id are created as it starts.
func TestAWSLogsGroupMissingStopsTask(t *testing.T) {
	e := newEnv(t, envOptions{})
	opts := map[string]string{"awslogs-group": "/ecs/missing", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}
	arn := e.run(e.awslogsDef("nogroup", opts))
	stopped := e.waitStatus(arn, "STOPPED")
	if stopped.StopCode != ecstypes.TaskStopCodeTaskFailedToStart ||
		!strings.HasPrefix(aws.ToString(stopped.StoppedReason), "ResourceInitializationError: failed to validate logger args") ||
		!strings.Contains(aws.ToString(stopped.StoppedReason), "The specified log group does not exist") {
		t.Fatalf("stopCode %s, reason %q; want TaskFailedToStart with ECS's ResourceInitializationError", stopped.StopCode, aws.ToString(stopped.StoppedReason))
	}
	opts["awslogs-create-group"] = "true"
	arn = e.run(e.awslogsDef("withgroup", opts))
	e.waitStatus(arn, "RUNNING")
	id := arn[strings.LastIndex(arn, "/")+1:]
	ls, err := e.logsClient(e.key).DescribeLogStreams(ctx(t), &cloudwatchlogs.DescribeLogStreamsInput{LogGroupName: aws.String("/ecs/missing")})
	if err != nil || len(ls.LogStreams) != 1 || aws.ToString(ls.LogStreams[0].LogStreamName) != "web/app/"+id {
		t.Fatalf("DescribeLogStreams = %+v, %v; want the stream web/app/%s", ls, err, id)
	}
	// `vessel logs` of an awslogs task reads the control plane's copy.
	t0 := time.Now()
	if _, err := e.srv.PutTaskLogEvents(ctx(t), "h1", id, agentproto.LogEventsBatch{Container: "app", Events: []agentproto.LogEvent{
		{Time: t0, Message: "first", Start: 0, End: 5}, {Time: t0.Add(time.Millisecond), Message: "second", Start: 5, End: 11}}}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	err = e.srv.TaskLogs(ctx(t), "default", id, agentproto.LogOptions{Tail: 1}, func(l agentproto.LogLine) error {
		lines = append(lines, l.Container+": "+l.Text)
		return nil
	})
	if err != nil || strings.Join(lines, "|") != "app: second" {
		t.Fatalf("TaskLogs tail 1 = %q, %v; want app: second", lines, err)
	}
}
