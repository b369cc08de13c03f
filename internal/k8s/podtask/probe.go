package podtask

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// restartPolicy maps a pod's restartPolicy to the task's; Kubernetes'
// default is Always.
func restartPolicy(p corev1.RestartPolicy) string {
	switch p {
	case corev1.RestartPolicyOnFailure:
		return task.RestartOnFailure
	case corev1.RestartPolicyNever:
		return task.RestartNever
	case "", corev1.RestartPolicyAlways:
		return task.RestartAlways
	}
	return string(p) // rejected by the task's validation, naming it
}

// probes maps the container's liveness, readiness and startup probes.
func probes(c *corev1.Container, tc *task.Container) (err error) {
	if tc.LivenessProbe, err = probe(c, "liveness", c.LivenessProbe); err != nil {
		return err
	}
	if tc.ReadinessProbe, err = probe(c, "readiness", c.ReadinessProbe); err != nil {
		return err
	}
	tc.StartupProbe, err = probe(c, "startup", c.StartupProbe)
	return err
}

func probe(c *corev1.Container, kind string, p *corev1.Probe) (*task.Probe, error) {
	if p == nil {
		return nil, nil
	}
	secs := func(n int32) time.Duration { return time.Duration(n) * time.Second }
	out := &task.Probe{InitialDelay: secs(p.InitialDelaySeconds), Period: secs(p.PeriodSeconds),
		Timeout: secs(p.TimeoutSeconds), SuccessThreshold: int(p.SuccessThreshold), FailureThreshold: int(p.FailureThreshold)}
	h := p.ProbeHandler
	switch {
	case h.GRPC != nil:
		return nil, errdefs.InvalidArgument("container %s: %s probe: grpc probes are not supported by Vessel; use exec, httpGet or tcpSocket",
			c.Name, kind)
	case h.Exec != nil:
		out.Exec = append([]string(nil), h.Exec.Command...)
	case h.HTTPGet != nil:
		port, err := containerPort(c, kind, "httpGet", h.HTTPGet.Port)
		if err != nil {
			return nil, err
		}
		out.HTTPGet = &task.HTTPGetProbe{Path: h.HTTPGet.Path, Port: port, Scheme: string(h.HTTPGet.Scheme), Host: h.HTTPGet.Host}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			out.HTTPGet.Headers = append(out.HTTPGet.Headers, task.HTTPHeader{Name: hd.Name, Value: hd.Value})
		}
	case h.TCPSocket != nil:
		port, err := containerPort(c, kind, "tcpSocket", h.TCPSocket.Port)
		if err != nil {
			return nil, err
		}
		out.TCPSocket = &task.TCPSocketProbe{Port: port}
	}
	return out, nil
}

// containerPort resolves a probe's port: a number, or the name of one of
// the container's ports.
func containerPort(c *corev1.Container, kind, handler string, p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name != "" && cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, errdefs.InvalidArgument("container %s: %s probe: %s port %q names none of the container's ports; use a number or a name from ports[].name",
		c.Name, kind, handler, p.StrVal)
}
