package task

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

func TestNew(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	then := now.Add(-time.Hour)
	code := 2
	template := &Task{Family: "web", Cluster: "c", CPUUnits: 256, MemoryMiB: 512, Runtime: "runc", Hostname: "web-0",
		Subnets: []string{"a"}, StartedBy: "me", Tags: []Tag{{Key: "k", Value: "v"}},
		HostID: "h", Subnet: "a", IP: "10.0.0.9", PullProgress: "1/2", StopCode: StopCodeUserInitiated, StoppedReason: "r",
		LastStatus: StatusRunning, DesiredStatus: StatusStopped, Version: 7, CreatedAt: then,
		ConnectivityAt: then, PullStartedAt: then, PullStoppedAt: then, StartedAt: then, StoppingAt: then,
		ExecutionStoppedAt: then, StoppedAt: then,
		Containers: []Container{{Name: "app", Image: "busybox", Essential: true, Command: []string{"serve"},
			LastStatus: StatusStopped, ExitCode: &code, Reason: "r", RuntimeID: "x", ImageDigest: "d", HealthStatus: HealthHealthy,
			RestartCount: 2, Ready: true, Started: true, StartedAt: then, FinishedAt: then,
			LastExitCode: &code, LastReason: "r", LastStartedAt: then, LastFinishedAt: then}}}
	keep := template.Clone()
	got, err := New(template, "id1", "arn:id1", now)
	if err != nil {
		t.Fatal(err)
	}
	want := &Task{ID: "id1", ARN: "arn:id1", Family: "web", Cluster: "c", CPUUnits: 256, MemoryMiB: 512, Runtime: "runc", Hostname: "web-0",
		Subnets: []string{"a"}, StartedBy: "me", Group: "family:web", Tags: []Tag{{Key: "k", Value: "v"}},
		LastStatus: StatusProvisioning, DesiredStatus: StatusRunning, Version: 1, CreatedAt: now,
		Containers: []Container{{Name: "app", Image: "busybox", Essential: true, Command: []string{"serve"}, LastStatus: StatusPending}}}
	if g, w := jsonOf(t, got), jsonOf(t, want); g != w {
		t.Errorf("New:\n got %s\nwant %s", g, w)
	}
	if jsonOf(t, template) != jsonOf(t, keep) {
		t.Error("New changed its template")
	}
	got.Containers[0].Command[0] = "changed"
	if template.Containers[0].Command[0] != "serve" {
		t.Error("New's task shares memory with its template")
	}

	// Hostnames of 63 characters, with dots.
	for _, h := range []string{strings.Repeat("a", 63), "web.v1-0"} {
		if g, err := New(&Task{Hostname: h, Containers: want.Containers}, "i", "a", now); err != nil || g.Hostname != h {
			t.Errorf("hostname %q: %v, %+v", h, err, g)
		}
	}

	// A group given is kept; no family, no group.
	if g, _ := New(&Task{Group: "service:web", Family: "web", Containers: want.Containers}, "i", "a", now); g.Group != "service:web" {
		t.Errorf("group %q, want service:web", g.Group)
	}
	if g, _ := New(&Task{Containers: want.Containers}, "i", "a", now); g.Group != "" {
		t.Errorf("group %q, want none", g.Group)
	}

	for _, c := range []struct {
		name     string
		template *Task
		want     string
	}{
		{"no containers", &Task{Family: "web"}, "at least one container"},
		{"unknown runtime", &Task{Runtime: "docker", Containers: want.Containers}, `runtime "docker" is not known: the runtimes are microvm, gvisor, runc, sim`},
		{"hostname with _", &Task{Hostname: "web_0", Containers: want.Containers}, `hostname "web_0" is not accepted: use at most 64 characters, labels of letters, digits and '-' (not at a label's start or end) separated by single dots`},
		{"hostname too long", &Task{Hostname: strings.Repeat("a", 64), Containers: want.Containers}, "is not accepted"},
		{"hostname ending in -", &Task{Hostname: "web-", Containers: want.Containers}, "is not accepted"},
		{"hostname beginning with .", &Task{Hostname: ".web", Containers: want.Containers}, "is not accepted"},
		{"hostname with a space", &Task{Hostname: "web 0", Containers: want.Containers}, "is not accepted"},
		{"hostname with two dots in a row", &Task{Hostname: "web..0", Containers: want.Containers}, "is not accepted"},
		{"hostname with a label ending in -", &Task{Hostname: "web-.a", Containers: want.Containers}, "is not accepted"},
		{"host domain without a hostname", &Task{HostDomain: "nginx.default.svc.cluster.local", Containers: want.Containers},
			`domain "nginx.default.svc.cluster.local" needs a hostname`},
		{"host domain with _", &Task{Hostname: "web-0", HostDomain: "my_svc.default.svc.cluster.local", Containers: want.Containers},
			`"web-0.my_svc.default.svc.cluster.local" is not a DNS name`},
	} {
		_, err := New(c.template, "i", "a", now)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid argument saying %q", c.name, err, c.want)
		}
	}
}

func TestResolveRuntime(t *testing.T) {
	rt := func(v string) []Tag { return []Tag{{Key: "other", Value: "x"}, {Key: TagRuntime, Value: v}} }
	for _, c := range []struct {
		name                        string
		launch, definition, cluster []Tag
		want, err                   string
	}{
		{name: "none", want: ""},
		{name: "other tags only", launch: []Tag{{Key: "k", Value: "v"}}, want: ""},
		{name: "cluster", cluster: rt("gvisor"), want: "gvisor"},
		{name: "definition over cluster", definition: rt("runc"), cluster: rt("gvisor"), want: "runc"},
		{name: "launch over all", launch: rt("microvm"), definition: rt("runc"), cluster: rt("gvisor"), want: "microvm"},
		{name: "last of a list", launch: append(rt("runc"), Tag{Key: TagRuntime, Value: "sim"}), want: "sim"},
		{name: "unknown", launch: rt("docker"), err: `runtime "docker" (tag vessel:runtime) is not known: the runtimes are microvm, gvisor, runc, sim`},
		{name: "unknown cluster default", cluster: rt("kata"), err: `runtime "kata"`},
		{name: "unknown but overridden", launch: rt("runc"), definition: rt("docker"), want: "runc"},
		{name: "empty names none", launch: rt(""), definition: rt("runc"), err: `runtime ""`},
	} {
		got, err := ResolveRuntime(c.launch, c.definition, c.cluster)
		if c.err != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %q, %v; want an invalid argument saying %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
