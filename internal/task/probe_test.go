package task

import (
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

func TestRestarts(t *testing.T) {
	tests := []struct {
		policy string
		code   int
		want   bool
	}{
		{"", 1, false}, {"", 0, false},
		{RestartAlways, 0, true}, {RestartAlways, 137, true},
		{RestartOnFailure, 0, false}, {RestartOnFailure, 1, true},
		{RestartNever, 1, false}, {RestartNever, 0, false},
	}
	for _, tt := range tests {
		if got := Restarts(tt.policy, tt.code); got != tt.want {
			t.Errorf("Restarts(%q, %d) = %v, want %v", tt.policy, tt.code, got, tt.want)
		}
	}
}

func TestProbeWithDefaults(t *testing.T) {
	p := Probe{HTTPGet: &HTTPGetProbe{Port: 80}}.WithDefaults()
	if p.Period != 10*time.Second || p.Timeout != time.Second || p.SuccessThreshold != 1 || p.FailureThreshold != 3 ||
		p.HTTPGet.Scheme != SchemeHTTP {
		t.Errorf("defaults: %+v (scheme %q)", p, p.HTTPGet.Scheme)
	}
	q := Probe{Exec: []string{"true"}, Period: 2 * time.Second, Timeout: 3 * time.Second, SuccessThreshold: 2, FailureThreshold: 5}.WithDefaults()
	if q.Period != 2*time.Second || q.Timeout != 3*time.Second || q.SuccessThreshold != 2 || q.FailureThreshold != 5 {
		t.Errorf("set values changed: %+v", q)
	}
}

func TestValidateRestartAndProbes(t *testing.T) {
	exec := &Probe{Exec: []string{"true"}}
	tests := []struct {
		name    string
		policy  string
		probe   *Probe
		kind    string // liveness, readiness or startup
		wantErr string
	}{
		{name: "ECS task", policy: ""},
		{name: "Always with exec liveness", policy: RestartAlways, probe: exec, kind: "liveness"},
		{name: "OnFailure with http readiness", policy: RestartOnFailure, kind: "readiness",
			probe: &Probe{HTTPGet: &HTTPGetProbe{Port: 8080, Path: "/healthz", Scheme: "HTTPS", Headers: []HTTPHeader{{Name: "X-A", Value: "1"}}},
				SuccessThreshold: 3}},
		{name: "Never with tcp startup", policy: RestartNever, kind: "startup", probe: &Probe{TCPSocket: &TCPSocketProbe{Port: 22}}},
		{name: "unknown policy", policy: "always", wantErr: `restart policy "always" is not known`},
		{name: "no handler", policy: RestartAlways, kind: "liveness", probe: &Probe{}, wantErr: "has 0 handlers"},
		{name: "two handlers", policy: RestartAlways, kind: "readiness",
			probe: &Probe{Exec: []string{"true"}, TCPSocket: &TCPSocketProbe{Port: 1}}, wantErr: "has 2 handlers"},
		{name: "port out of range", policy: RestartAlways, kind: "readiness",
			probe: &Probe{TCPSocket: &TCPSocketProbe{Port: 70000}}, wantErr: "port 70000 is out of range"},
		{name: "bad scheme", policy: RestartAlways, kind: "readiness",
			probe: &Probe{HTTPGet: &HTTPGetProbe{Port: 80, Scheme: "FTP"}}, wantErr: `scheme "FTP" is not supported`},
		{name: "relative path", policy: RestartAlways, kind: "readiness",
			probe: &Probe{HTTPGet: &HTTPGetProbe{Port: 80, Path: "healthz"}}, wantErr: "must start with /"},
		{name: "negative period", policy: RestartAlways, kind: "liveness",
			probe: &Probe{Exec: []string{"true"}, Period: -time.Second}, wantErr: "period is -1s"},
		{name: "negative threshold", policy: RestartAlways, kind: "liveness",
			probe: &Probe{Exec: []string{"true"}, FailureThreshold: -1}, wantErr: "must not be negative"},
		{name: "startup success threshold", policy: RestartAlways, kind: "startup",
			probe: &Probe{Exec: []string{"true"}, SuccessThreshold: 2}, wantErr: "a startup probe accepts only 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Container{Name: "app"}
			switch tt.kind {
			case "liveness":
				c.LivenessProbe = tt.probe
			case "readiness":
				c.ReadinessProbe = tt.probe
			case "startup":
				c.StartupProbe = tt.probe
			}
			tk := &Task{RestartPolicy: tt.policy, Containers: []Container{c}}
			err := tk.ValidateRestartAndProbes()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want an invalid argument saying %q", err, tt.wantErr)
			}
			if tt.kind != "" && !strings.Contains(err.Error(), "container app: "+tt.kind+" probe") {
				t.Errorf("error %q does not name the container and probe", err)
			}
		})
	}
}

func TestCloneCopiesProbes(t *testing.T) {
	tk := &Task{Containers: []Container{{Name: "app", LastExitCode: new(int),
		ReadinessProbe: &Probe{HTTPGet: &HTTPGetProbe{Port: 80, Headers: []HTTPHeader{{Name: "A", Value: "1"}}}},
		LivenessProbe:  &Probe{Exec: []string{"true"}}}}}
	c := tk.Clone()
	c.Containers[0].ReadinessProbe.HTTPGet.Headers[0].Value = "2"
	c.Containers[0].LivenessProbe.Exec[0] = "false"
	*c.Containers[0].LastExitCode = 5
	if tk.Containers[0].ReadinessProbe.HTTPGet.Headers[0].Value != "1" || tk.Containers[0].LivenessProbe.Exec[0] != "true" ||
		*tk.Containers[0].LastExitCode != 0 {
		t.Errorf("Clone shares probes or the last exit code with the original")
	}
}
