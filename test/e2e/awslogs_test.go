package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"vessel.dev/vessel/internal/testutil"
	"vessel.dev/vessel/test/fleet"
)

// logEvents is what `aws logs filter-log-events` and `get-log-events`
// print.
type logEvents struct {
	Events []struct {
		LogStreamName string `json:"logStreamName"`
		Timestamp     int64  `json:"timestamp"`
		Message       string `json:"message"`
		EventID       string `json:"eventId"`
	} `json:"events"`
}

func (l logEvents) messages() []string {
	var out []string
	for _, e := range l.Events {
		out = append(out, e.Message)
	}
	return out
}

// awsWithTail finds an aws CLI with `aws logs tail` (version 2, as the
// Debian package awscli installs): the first aws on PATH may be a version 1
// without it.
func awsWithTail(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"aws", "/usr/bin/aws"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if exec.Command(path, "logs", "tail", "help").Run() == nil {
			return path
		}
		tried = append(tried, path)
	}
	t.Fatalf("no aws CLI with `aws logs tail` (version 2; tried %v): install the Debian package awscli", tried)
	return ""
}

// TestAWSLogsEndToEnd runs runc tasks whose containers use the awslogs
// driver and reads their output with the real aws CLI: `aws logs tail
// --follow` shows lines while the task prints them; filter-log-events
// finds events by a term and by a JSON pattern; a multi-line pattern joins
// a stack trace into one event; the server (with its in-process agent) is
// killed with SIGKILL while a task prints, and after its restart every
// line is in the stream once; a group's retention (a day of --logs-day 4s)
// hides and then deletes older events; `vessel logs` reads the shipped
// copy; a missing group fails the task with ECS's reason.
func TestAWSLogsEndToEnd(t *testing.T) {
	s := startRuncServer(t, "--logs-day", "4s")
	reg := newRegistry(t)
	img := reg.push("busybox:1", []string{"sh"}, busyboxLayer(t))
	c := s.ecsClient()
	register := func(family, group string, extra map[string]string, script string) string {
		t.Helper()
		opts := map[string]string{"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": family}
		for k, v := range extra {
			opts[k] = v
		}
		_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				Command: []string{"sh", "-c", script}, StopTimeout: aws.Int32(2),
				LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: opts}}}})
		if err != nil {
			t.Fatalf("registering %s: %v", family, err)
		}
		return runOne(t, c, family)
	}
	s.aws(nil, "logs", "create-log-group", "--log-group-name", "/e2e/web")

	t.Run("MissingGroup", func(t *testing.T) {
		arn := register("nogroup", "/e2e/none", nil, "echo never")
		st := waitFor(t, c, arn, "STOPPED", 60*time.Second)
		if st.StopCode != ecstypes.TaskStopCodeTaskFailedToStart || !strings.Contains(aws.ToString(st.StoppedReason), "The specified log group does not exist") {
			t.Fatalf("stopCode %s reason %q; want TaskFailedToStart, ECS's ResourceInitializationError", st.StopCode, aws.ToString(st.StoppedReason))
		}
	})

	t.Run("TailFollowAndFilter", func(t *testing.T) {
		// Twenty ticks over ten seconds, then a JSON error and an ERROR.
		arn := register("ticker", "/e2e/web", nil,
			`i=0; while [ $i -lt 20 ]; do echo "tick-$i"; i=$((i+1)); sleep 0.5; done; `+
				`echo '{"level":"error","code":503}'; echo '{"level":"info","code":200}'; echo "ERROR disk full"`)
		tail := exec.Command(awsWithTail(t), "logs", "tail", "/e2e/web", "--follow", "--format", "short", "--endpoint-url", s.endpoint)
		// The CLI writes lines without flushing them: unbuffered, a pipe
		// gets each as it is written.
		tail.Env = append(s.awsEnv(""), "PYTHONUNBUFFERED=1")
		out, err := tail.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		tail.Stderr = &stderr
		if err := tail.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { tail.Process.Kill(); tail.Wait() }()
		var mu sync.Mutex
		seen := map[string]int{}
		seenAt := map[string]time.Time{}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				_, msg, _ := strings.Cut(sc.Text(), " ") // "<time> <message>"
				mu.Lock()
				seen[msg]++
				if seenAt[msg].IsZero() {
					seenAt[msg] = time.Now()
				}
				mu.Unlock()
			}
		}()
		testutil.Eventually(t, 60*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if seen["ERROR disk full"] == 0 {
				return fmt.Errorf("aws logs tail --follow showed %d lines, not yet the last (stderr %q)", len(seen), stderr.String())
			}
			return nil
		})
		mu.Lock()
		for i := range 20 {
			if n := seen[fmt.Sprintf("tick-%d", i)]; n != 1 {
				t.Errorf("aws logs tail showed tick-%d %d times; want once", i, n)
			}
		}
		first := seenAt["tick-0"]
		mu.Unlock()
		st := waitFor(t, c, arn, "STOPPED", 30*time.Second)
		if st.StoppedAt == nil || !first.Before(*st.StoppedAt) {
			t.Errorf("aws logs tail showed tick-0 at %v, the task stopped at %v: lines are not followed as the task prints them", first, st.StoppedAt)
		}

		var found logEvents
		s.aws(&found, "logs", "filter-log-events", "--log-group-name", "/e2e/web", "--filter-pattern", `{ $.level = "error" }`)
		if got := found.messages(); len(got) != 1 || got[0] != `{"level":"error","code":503}` {
			t.Fatalf("filter-log-events with a JSON pattern found %q", got)
		}
		s.aws(&found, "logs", "filter-log-events", "--log-group-name", "/e2e/web", "--filter-pattern", `ERROR "disk full"`,
			"--log-stream-names", "ticker/app/"+taskID(arn))
		if got := found.messages(); len(got) != 1 || got[0] != "ERROR disk full" {
			t.Fatalf("filter-log-events with terms found %q", got)
		}
		stdout, _, _ := s.vessel("logs", arn)
		if !strings.Contains(stdout, "tick-19") || !strings.Contains(stdout, "ERROR disk full") {
			t.Fatalf("vessel logs of an awslogs task:\n%s", stdout)
		}
	})

	t.Run("MultilineStackTrace", func(t *testing.T) {
		arn := register("trace", "/e2e/trace", map[string]string{"awslogs-create-group": "true", "awslogs-multiline-pattern": `^\d{4}-\d{2}-\d{2}`},
			`echo "2026-01-02 INFO starting"; echo "2026-01-02 ERROR failed"; echo "java.lang.IllegalStateException: boom"; `+
				`printf '\tat app.Main.run(Main.java:10)\n\tat app.Main.main(Main.java:3)\n'; echo "2026-01-02 INFO exiting"`)
		waitFor(t, c, arn, "STOPPED", 60*time.Second)
		want := "2026-01-02 INFO starting|2026-01-02 ERROR failed\njava.lang.IllegalStateException: boom\n\tat app.Main.run(Main.java:10)\n\tat app.Main.main(Main.java:3)|2026-01-02 INFO exiting"
		var got logEvents
		testutil.Eventually(t, 30*time.Second, func() error {
			s.aws(&got, "logs", "get-log-events", "--log-group-name", "/e2e/trace", "--log-stream-name", "trace/app/"+taskID(arn), "--start-from-head")
			if strings.Join(got.messages(), "|") != want {
				return fmt.Errorf("get-log-events shows %q; want %q", got.messages(), want)
			}
			return nil
		})
	})

	t.Run("AgentKilledDuringOutput", func(t *testing.T) {
		const lines = 150
		arn := register("counter", "/e2e/counter", map[string]string{"awslogs-create-group": "true"},
			fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "count-$i"; i=$((i+1)); sleep 0.05; done`, lines))
		waitFor(t, c, arn, "RUNNING", 60*time.Second)
		testutil.Eventually(t, 30*time.Second, func() error {
			var got logEvents
			s.aws(&got, "logs", "filter-log-events", "--log-group-name", "/e2e/counter")
			if len(got.Events) < 10 {
				return fmt.Errorf("%d lines shipped so far", len(got.Events))
			}
			return nil
		})
		s.kill(syscall.SIGKILL)
		time.Sleep(time.Second) // the task prints on meanwhile
		s.start()
		c = s.ecsClient()
		waitFor(t, c, arn, "STOPPED", 60*time.Second)
		testutil.Eventually(t, 30*time.Second, func() error {
			var got logEvents
			s.aws(&got, "logs", "filter-log-events", "--log-group-name", "/e2e/counter")
			count := map[string]int{}
			for _, m := range got.messages() {
				count[m]++
			}
			var wrong []string
			for i := range lines {
				if n := count[fmt.Sprintf("count-%d", i)]; n != 1 {
					wrong = append(wrong, fmt.Sprintf("count-%d shown %d times", i, n))
				}
			}
			if len(wrong) > 0 || len(got.Events) != lines {
				return fmt.Errorf("%d events; %s", len(got.Events), strings.Join(wrong, ", "))
			}
			return nil
		})
	})

	t.Run("Retention", func(t *testing.T) {
		// A day is 4 s here (--logs-day): a retention of 1 day hides what
		// is older than 4 s at once, and the sweep deletes it.
		var groups struct {
			LogGroups []struct {
				LogGroupName    string `json:"logGroupName"`
				RetentionInDays int    `json:"retentionInDays"`
				StoredBytes     int64  `json:"storedBytes"`
			} `json:"logGroups"`
		}
		s.aws(&groups, "logs", "describe-log-groups", "--log-group-name-prefix", "/e2e/web")
		if len(groups.LogGroups) != 1 || groups.LogGroups[0].StoredBytes == 0 {
			t.Fatalf("describe-log-groups = %+v; want /e2e/web holding events", groups)
		}
		s.aws(nil, "logs", "put-retention-policy", "--log-group-name", "/e2e/web", "--retention-in-days", "1")
		testutil.Eventually(t, 30*time.Second, func() error {
			var got logEvents
			s.aws(&got, "logs", "filter-log-events", "--log-group-name", "/e2e/web")
			s.aws(&groups, "logs", "describe-log-groups", "--log-group-name-prefix", "/e2e/web")
			if len(got.Events) != 0 || groups.LogGroups[0].StoredBytes != 0 || groups.LogGroups[0].RetentionInDays != 1 {
				return fmt.Errorf("%d events, storedBytes %d, retention %d days; want none kept past the retention",
					len(got.Events), groups.LogGroups[0].StoredBytes, groups.LogGroups[0].RetentionInDays)
			}
			return nil
		})
		// The other groups, without a policy, keep theirs.
		var trace logEvents
		s.aws(&trace, "logs", "filter-log-events", "--log-group-name", "/e2e/trace")
		if len(trace.Events) != 3 {
			t.Fatalf("/e2e/trace without a retention policy holds %d events; want its 3", len(trace.Events))
		}
	})
}

// TestAWSLogsHostAgentKilled: a `vessel agent` host of a fleet, killed
// with SIGKILL while its runc task prints numbered lines and started
// again, ships every line once: the stream holds each line exactly once,
// in order.
func TestAWSLogsHostAgentKilled(t *testing.T) {
	f := newFleet(t)
	s := f.Server(fleet.ServerConfig{})
	reg := newRegistryAt(t, f.Gateway().String(), nil)
	img := reg.push("busybox:1", nil, busyboxLayer(t))
	host := f.Agent([]*fleet.Server{s}, fleet.AgentConfig{Runtime: "runc", Args: []string{"--insecure-registry", reg.host}})
	c := s.ECS()
	const lines = 200
	_, err := c.RegisterTaskDefinition(context.Background(), &ecs.RegisterTaskDefinitionInput{Family: aws.String("counter"),
		Cpu: aws.String("256"), Memory: aws.String("512"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
			Command: []string{"sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "count-$i"; i=$((i+1)); sleep 0.05; done`, lines)},
			LogConfiguration: &ecstypes.LogConfiguration{LogDriver: ecstypes.LogDriverAwslogs, Options: map[string]string{
				"awslogs-group": "/fleet/counter", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "counter", "awslogs-create-group": "true"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	arn := runOne(t, c, "counter")
	messages := func() []string {
		t.Helper()
		b, err := s.AWS("logs", "filter-log-events", "--log-group-name", "/fleet/counter")
		var got logEvents
		if err == nil {
			err = json.Unmarshal(b, &got)
		}
		if err != nil {
			t.Fatalf("filter-log-events: %v", err)
		}
		return got.messages()
	}
	testutil.Eventually(t, 90*time.Second, func() error {
		if n := len(messages()); n < 20 {
			return fmt.Errorf("%d lines shipped so far", n)
		}
		return nil
	})
	host.Kill()
	if n := len(messages()); n >= lines {
		t.Fatalf("all %d lines were shipped before the agent was killed: the kill tests nothing", n)
	}
	time.Sleep(time.Second) // the task prints on meanwhile
	host.Start()
	waitFor(t, c, arn, "STOPPED", 90*time.Second)
	testutil.Eventually(t, 60*time.Second, func() error {
		got := messages()
		var want []string
		for i := range lines {
			want = append(want, fmt.Sprintf("count-%d", i))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("the stream holds %d events, want count-0 to count-%d once each, in order: %q", len(got), lines-1, got)
		}
		return nil
	})
}
