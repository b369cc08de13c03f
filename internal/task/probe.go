package task

import (
	"fmt"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// Restart policies, as a Kubernetes pod's restartPolicy. The empty policy
// is ECS's behaviour: no container is restarted, and an essential
// container's exit stops the task.
const (
	RestartAlways    = "Always"    // restart an essential container whatever its exit
	RestartOnFailure = "OnFailure" // restart it when it exits with a code other than 0
	RestartNever     = "Never"     // never restart; the task stops once all have exited
)

// RestartPolicies lists the accepted values of Task.RestartPolicy.
var RestartPolicies = []string{"", RestartAlways, RestartOnFailure, RestartNever}

// Restarts reports whether the policy restarts a container that exited
// with code.
func Restarts(policy string, code int) bool {
	switch policy {
	case RestartAlways:
		return true
	case RestartOnFailure:
		return code != 0
	}
	return false
}

// Probe defaults, as Kubernetes', used where a Probe field is zero.
const (
	DefaultProbePeriod           = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeSuccessThreshold = 1
	DefaultProbeFailureThreshold = 3
)

// Probe schemes of an HTTPGetProbe.
const (
	SchemeHTTP  = "HTTP"
	SchemeHTTPS = "HTTPS"
)

// Probe is a Kubernetes container probe, run by the host agent. Exactly
// one of Exec, HTTPGet and TCPSocket is set.
type Probe struct {
	// Exec runs in the container; exit code 0 is a success.
	Exec []string `json:"exec,omitempty"`
	// HTTPGet asks the task's IP (or Host); a status of 200..399 is a
	// success.
	HTTPGet *HTTPGetProbe `json:"httpGet,omitempty"`
	// TCPSocket succeeds when a connection to the task's IP is accepted.
	TCPSocket *TCPSocketProbe `json:"tcpSocket,omitempty"`

	// InitialDelay passes after the container starts before the first
	// probe; Period between probes (10 s when 0); Timeout bounds each probe
	// (1 s when 0).
	InitialDelay time.Duration `json:"initialDelay,omitempty"`
	Period       time.Duration `json:"period,omitempty"`
	Timeout      time.Duration `json:"timeout,omitempty"`
	// SuccessThreshold successes in a row (1 when 0) make the probe pass,
	// FailureThreshold failures in a row (3 when 0) make it fail.
	SuccessThreshold int `json:"successThreshold,omitempty"`
	FailureThreshold int `json:"failureThreshold,omitempty"`
}

// HTTPGetProbe is an HTTP GET probe.
type HTTPGetProbe struct {
	Path string `json:"path,omitempty"`
	Port int    `json:"port"`
	// Scheme is SchemeHTTP (the default) or SchemeHTTPS; certificates are
	// not verified, as the kubelet does not.
	Scheme string `json:"scheme,omitempty"`
	// Host defaults to the task's IP.
	Host    string       `json:"host,omitempty"`
	Headers []HTTPHeader `json:"headers,omitempty"`
}

// HTTPHeader is one header of an HTTPGetProbe.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketProbe is a TCP connection probe on the task's IP.
type TCPSocketProbe struct {
	Port int `json:"port"`
}

// Clone returns a deep copy of p (nil for nil).
func (p *Probe) Clone() *Probe {
	if p == nil {
		return nil
	}
	c := *p
	c.Exec = append([]string(nil), p.Exec...)
	if p.HTTPGet != nil {
		h := *p.HTTPGet
		h.Headers = append([]HTTPHeader(nil), p.HTTPGet.Headers...)
		c.HTTPGet = &h
	}
	if p.TCPSocket != nil {
		s := *p.TCPSocket
		c.TCPSocket = &s
	}
	return &c
}

// WithDefaults returns a copy of p with Kubernetes' defaults in place of
// zero Period, Timeout and thresholds, and HTTP as the default scheme.
func (p Probe) WithDefaults() Probe {
	if p.Period <= 0 {
		p.Period = DefaultProbePeriod
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultProbeTimeout
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	if p.HTTPGet != nil && p.HTTPGet.Scheme == "" {
		h := *p.HTTPGet
		h.Scheme = SchemeHTTP
		p.HTTPGet = &h
	}
	return p
}

// Validate checks a probe of the given kind ("liveness", "readiness" or
// "startup"); errors are of kind errdefs.ErrInvalidArgument and say what
// would be accepted.
func (p *Probe) Validate(kind string) error {
	if p == nil {
		return nil
	}
	n := 0
	if len(p.Exec) > 0 {
		n++
	}
	if p.HTTPGet != nil {
		n++
		h := p.HTTPGet
		if err := validPort(kind, "httpGet", h.Port); err != nil {
			return err
		}
		switch strings.ToUpper(h.Scheme) {
		case "", SchemeHTTP, SchemeHTTPS:
		default:
			return errdefs.InvalidArgument("%s probe: httpGet scheme %q is not supported; use HTTP or HTTPS", kind, h.Scheme)
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			return errdefs.InvalidArgument("%s probe: httpGet path %q must start with /", kind, h.Path)
		}
		for _, hd := range h.Headers {
			if hd.Name == "" || strings.ContainsAny(hd.Name, " :\r\n") {
				return errdefs.InvalidArgument("%s probe: httpGet header name %q is not valid", kind, hd.Name)
			}
		}
	}
	if p.TCPSocket != nil {
		n++
		if err := validPort(kind, "tcpSocket", p.TCPSocket.Port); err != nil {
			return err
		}
	}
	if n != 1 {
		return errdefs.InvalidArgument("%s probe has %d handlers; exactly one of exec (a non-empty command), httpGet and tcpSocket is accepted", kind, n)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"initialDelay", p.InitialDelay}, {"period", p.Period}, {"timeout", p.Timeout}} {
		if d.v < 0 {
			return errdefs.InvalidArgument("%s probe: %s is %s; it must not be negative", kind, d.name, d.v)
		}
	}
	if p.SuccessThreshold < 0 || p.FailureThreshold < 0 {
		return errdefs.InvalidArgument("%s probe: successThreshold %d and failureThreshold %d must not be negative (0 takes the defaults 1 and 3)",
			kind, p.SuccessThreshold, p.FailureThreshold)
	}
	if kind != "readiness" && p.SuccessThreshold > 1 {
		return errdefs.InvalidArgument("%s probe: successThreshold is %d; a %s probe accepts only 1", kind, p.SuccessThreshold, kind)
	}
	return nil
}

func validPort(kind, handler string, port int) error {
	if port < 1 || port > 65535 {
		return errdefs.InvalidArgument("%s probe: %s port %d is out of range; accepted ports are 1..65535", kind, handler, port)
	}
	return nil
}

// ValidateRestartAndProbes checks the task's RestartPolicy and its
// containers' probes. Errors are of kind errdefs.ErrInvalidArgument and
// name the container.
func (t *Task) ValidateRestartAndProbes() error {
	ok := false
	for _, p := range RestartPolicies {
		ok = ok || p == t.RestartPolicy
	}
	if !ok {
		return errdefs.InvalidArgument("restart policy %q is not known; accepted policies are Always, OnFailure, Never, or none", t.RestartPolicy)
	}
	for i := range t.Containers {
		c := &t.Containers[i]
		for _, p := range []struct {
			kind  string
			probe *Probe
		}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
			if err := p.probe.Validate(p.kind); err != nil {
				return fmt.Errorf("container %s: %w", c.Name, err)
			}
		}
	}
	return nil
}
