package podtask

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

func TestConvertRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		pod  corev1.RestartPolicy
		want string
	}{
		{"", task.RestartAlways},
		{corev1.RestartPolicyAlways, task.RestartAlways},
		{corev1.RestartPolicyOnFailure, task.RestartOnFailure},
		{corev1.RestartPolicyNever, task.RestartNever},
	} {
		pod := basePod()
		pod.Spec.RestartPolicy = tc.pod
		got, err := Convert(pod, baseInputs())
		if err != nil {
			t.Fatalf("%q: %v", tc.pod, err)
		}
		if got.RestartPolicy != tc.want {
			t.Errorf("restartPolicy %q: task's %q, want %q", tc.pod, got.RestartPolicy, tc.want)
		}
	}
	pod := basePod()
	pod.Spec.RestartPolicy = "Sometimes"
	if _, err := Convert(pod, baseInputs()); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "Sometimes") {
		t.Errorf("unknown restartPolicy: %v, want an invalid argument naming it", err)
	}
}

func TestConvertProbes(t *testing.T) {
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090}}
	handler := func(h corev1.ProbeHandler) *corev1.Probe { return &corev1.Probe{ProbeHandler: h} }
	tests := []struct {
		name    string
		set     func(c *corev1.Container)
		check   func(t *testing.T, c task.Container)
		wantErr string // substring of an invalid-argument error
	}{
		{name: "none", set: func(c *corev1.Container) {},
			check: func(t *testing.T, c task.Container) {
				if c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
					t.Errorf("probes %v %v %v, want none", c.LivenessProbe, c.ReadinessProbe, c.StartupProbe)
				}
			}},
		{name: "exec liveness with timings",
			set: func(c *corev1.Container) {
				c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ok"}}},
					InitialDelaySeconds: 5, PeriodSeconds: 7, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 4}
			},
			check: func(t *testing.T, c task.Container) {
				want := &task.Probe{Exec: []string{"cat", "/tmp/ok"}, InitialDelay: 5 * time.Second, Period: 7 * time.Second,
					Timeout: 2 * time.Second, SuccessThreshold: 1, FailureThreshold: 4}
				if !reflect.DeepEqual(c.LivenessProbe, want) {
					t.Errorf("liveness %+v, want %+v", c.LivenessProbe, want)
				}
			}},
		{name: "httpGet readiness on a named port",
			set: func(c *corev1.Container) {
				c.ReadinessProbe = handler(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz",
					Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTPS, Host: "localhost",
					HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "1"}}}})
			},
			check: func(t *testing.T, c task.Container) {
				want := &task.HTTPGetProbe{Path: "/healthz", Port: 8080, Scheme: "HTTPS", Host: "localhost",
					Headers: []task.HTTPHeader{{Name: "X-Probe", Value: "1"}}}
				if c.ReadinessProbe == nil || !reflect.DeepEqual(c.ReadinessProbe.HTTPGet, want) {
					t.Errorf("readiness %+v, want httpGet %+v", c.ReadinessProbe, want)
				}
			}},
		{name: "httpGet on a numeric port",
			set: func(c *corev1.Container) {
				c.LivenessProbe = handler(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(3000)}})
			},
			check: func(t *testing.T, c task.Container) {
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Port != 3000 {
					t.Errorf("liveness %+v, want httpGet on 3000", c.LivenessProbe)
				}
			}},
		{name: "tcpSocket startup on a named port",
			set: func(c *corev1.Container) {
				c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("admin")}},
					FailureThreshold: 30, PeriodSeconds: 1}
			},
			check: func(t *testing.T, c task.Container) {
				want := &task.Probe{TCPSocket: &task.TCPSocketProbe{Port: 9090}, FailureThreshold: 30, Period: time.Second}
				if !reflect.DeepEqual(c.StartupProbe, want) {
					t.Errorf("startup %+v, want %+v", c.StartupProbe, want)
				}
			}},
		{name: "grpc is rejected",
			set: func(c *corev1.Container) {
				c.LivenessProbe = handler(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}})
			},
			wantErr: "grpc probes are not supported"},
		{name: "unknown port name",
			set: func(c *corev1.Container) {
				c.ReadinessProbe = handler(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("metrics")}})
			},
			wantErr: `port "metrics" names none of the container's ports`},
		{name: "no handler",
			set: func(c *corev1.Container) {
				c.ReadinessProbe = &corev1.Probe{PeriodSeconds: 3}
			},
			wantErr: "exactly one of exec"},
		{name: "liveness successThreshold above 1",
			set: func(c *corev1.Container) {
				c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}},
					SuccessThreshold: 2}
			},
			wantErr: "accepts only 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := basePod()
			pod.Spec.Containers[0].Ports = ports
			tc.set(&pod.Spec.Containers[0])
			got, err := Convert(pod, baseInputs())
			if tc.wantErr != "" {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "container app") {
					t.Fatalf("error %v, want an invalid argument naming container app and saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, *got.Container("app"))
		})
	}
}
