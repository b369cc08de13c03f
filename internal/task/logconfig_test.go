package task

import (
	"strings"
	"testing"
)

func TestParseAWSLogs(t *testing.T) {
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{AWSLogsGroup: "/ecs/web", AWSLogsRegion: "eu-west-1", AWSLogsStreamPrefix: "web"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	lc, err := ParseAWSLogs(base(map[string]string{AWSLogsCreateGroup: "true", AWSLogsMode: "non-blocking", AWSLogsMaxBufferSize: "25m"}))
	if err != nil || !lc.CreateGroup || lc.MaxBufferSize != 25<<20 || lc.StreamName("app", "0a1b") != "web/app/0a1b" {
		t.Fatalf("ParseAWSLogs = %+v, %v", lc, err)
	}
	for _, tt := range []struct {
		size string
		want int64
	}{{"4096", 4096}, {"4k", 4 << 10}, {"4MiB", 4 << 20}, {"1g", 1 << 30}, {"2mb", 2 << 20}} {
		lc, err := ParseAWSLogs(base(map[string]string{AWSLogsMode: "non-blocking", AWSLogsMaxBufferSize: tt.size}))
		if err != nil || lc.MaxBufferSize != tt.want {
			t.Errorf("max-buffer-size %s = %+v, %v; want %d", tt.size, lc, err, tt.want)
		}
	}
	tests := []struct {
		opts        map[string]string
		starts, not []string // lines that start an event, and lines that continue one
	}{
		{base(nil), nil, nil},
		{base(map[string]string{AWSLogsMultilinePattern: `^\[`}), []string{"[INFO] x", "[ERROR] y"}, []string{"  at Foo.bar", "Caused by: z"}},
		{base(map[string]string{AWSLogsMultilinePattern: `ERROR|INFO`}), []string{"x ERROR y"}, []string{"\tat x"}},
		{base(map[string]string{AWSLogsDatetimeFormat: `%Y-%m-%d %H:%M:%S`}), []string{"2026-12-05 12:41:40 started"},
			[]string{"x 2026-12-05 12:41:40", "  at Foo.bar", "2026-13-05 12:41:40"}},
		{base(map[string]string{AWSLogsDatetimeFormat: `[%b %d, %Y %I:%M:%S %p]`}), []string{"[Dec 05, 2026 01:41:40 PM] x"}, []string{"Dec 05, 2026"}},
	}
	for _, tt := range tests {
		lc, err := ParseAWSLogs(tt.opts)
		if err != nil {
			t.Fatalf("%v: %v", tt.opts, err)
		}
		re, err := lc.StartPattern()
		if err != nil || (re == nil) != (tt.starts == nil) {
			t.Fatalf("%v: StartPattern = %v, %v", tt.opts, re, err)
		}
		for _, l := range tt.starts {
			if !re.MatchString(l) {
				t.Errorf("%v: %q does not start an event", tt.opts, l)
			}
		}
		for _, l := range tt.not {
			if re.MatchString(l) {
				t.Errorf("%v: %q starts an event; want it to continue one", tt.opts, l)
			}
		}
	}
	if _, err := ParseAWSLogs(base(map[string]string{AWSLogsDatetimeFormat: "%Y %"})); err == nil || !strings.Contains(err.Error(), "lone %") {
		t.Fatalf("a lone %%: %v", err)
	}
}
