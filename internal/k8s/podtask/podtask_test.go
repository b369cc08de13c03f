package podtask

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/task"
)

func basePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "shop", UID: "uid-123",
			Labels:      map[string]string{"app": "web", LabelFargateProfile: "fp"},
			Annotations: map[string]string{"team": "blue"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers:         []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
		},
	}
}

func baseInputs() Inputs {
	return Inputs{
		ConfigMaps:  map[string]map[string]string{"cm": {"k": "cm-v", "A": "1"}},
		Secrets:     map[string]map[string][]byte{"sec": {"pw": []byte("s3cret"), "B": []byte("2")}},
		ClusterName: "default", Subnets: []string{"10.0.1.0/24"}, Runtime: "gvisor",
		ServiceAccountToken: "tok",
	}
}

func ptr[T any](v T) *T { return &v }

func TestConvertTask(t *testing.T) {
	pod := basePod()
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	in := baseInputs()
	got, err := Convert(pod, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUUnits != 2048 || got.MemoryMiB != 9*1024 { // EKS's worked example
		t.Errorf("size = %d/%d, want 2048/9216", got.CPUUnits, got.MemoryMiB)
	}
	if c := CapacityProvisioned(got); c != "2vCPU 9GB" {
		t.Errorf("CapacityProvisioned = %q", c)
	}
	if got.Cluster != "default" || got.Runtime != "gvisor" || !reflect.DeepEqual(got.Subnets, in.Subnets) ||
		got.EphemeralStorageGiB != 20 || got.LastStatus != "" || got.StartedBy != StartedBy {
		t.Errorf("task = %+v", got)
	}
	wantTags := []task.Tag{{Key: TagPodNamespace, Value: "shop"}, {Key: TagPodName, Value: "web-1"},
		{Key: TagPodUID, Value: "uid-123"}, {Key: TagProfile, Value: "fp"}}
	if !reflect.DeepEqual(got.Tags, wantTags) {
		t.Errorf("tags = %+v", got.Tags)
	}
	in.Profile = "explicit"
	got, _ = Convert(pod, in)
	if got.Tags[3].Value != "explicit" {
		t.Errorf("profile tag = %+v, want Inputs.Profile", got.Tags[3])
	}
	got.Subnets[0] = "changed"
	if in.Subnets[0] != "10.0.1.0/24" {
		t.Error("task shares Inputs.Subnets")
	}
	delete(pod.Labels, LabelFargateProfile)
	got, _ = Convert(pod, baseInputs())
	if len(got.Tags) != 3 {
		t.Errorf("tags without a profile = %+v", got.Tags)
	}
	if CapacityProvisioned(&task.Task{CPUUnits: 256, MemoryMiB: 512}) != "0.25vCPU 0.5GB" {
		t.Error("smallest size misformatted")
	}
}

func TestConvertTooLarge(t *testing.T) {
	pod := basePod()
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32")}
	_, err := Convert(pod, baseInputs())
	var tl *sizing.TooLargeError
	if !errors.As(err, &tl) || tl.Reason != "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE" {
		t.Fatalf("err = %v, want *sizing.TooLargeError", err)
	}
}

func TestConvertContainers(t *testing.T) {
	sidecar := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name  string
		mod   func(*corev1.Pod)
		check func(t *testing.T, cs []task.Container)
	}{
		{"command is entryPoint, args is command", func(p *corev1.Pod) {
			p.Spec.Containers[0].Command = []string{"/bin/sh", "-c"}
			p.Spec.Containers[0].Args = []string{"echo hi"}
			p.Spec.Containers[0].WorkingDir = "/srv"
		}, func(t *testing.T, cs []task.Container) {
			c := cs[0]
			if !reflect.DeepEqual(c.EntryPoint, []string{"/bin/sh", "-c"}) || !reflect.DeepEqual(c.Command, []string{"echo hi"}) ||
				c.WorkingDir != "/srv" || c.Image != "nginx:1.27" || c.Name != "app" {
				t.Errorf("container = %+v", c)
			}
		}},
		{"no command or args keep the image's", nil, func(t *testing.T, cs []task.Container) {
			if cs[0].EntryPoint != nil || cs[0].Command != nil {
				t.Errorf("entryPoint %q command %q, want nil", cs[0].EntryPoint, cs[0].Command)
			}
		}},
		{"args expand env", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
			p.Spec.Containers[0].Command = []string{"echo", "$(GREETING)"}
			p.Spec.Containers[0].Args = []string{"$(GREETING) $(NOPE) $$(GREETING)"}
		}, func(t *testing.T, cs []task.Container) {
			if cs[0].EntryPoint[1] != "hi" || cs[0].Command[0] != "hi $(NOPE) $(GREETING)" {
				t.Errorf("expanded = %q %q", cs[0].EntryPoint, cs[0].Command)
			}
		}},
		{"app container essential, no deps", nil, func(t *testing.T, cs []task.Container) {
			if len(cs) != 1 || !cs[0].Essential || cs[0].DependsOn != nil {
				t.Errorf("containers = %+v", cs)
			}
		}},
		{"init containers in order", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1", Image: "busybox"}, {Name: "i2", Image: "busybox"}}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "envoy"})
		}, func(t *testing.T, cs []task.Container) {
			want := []struct {
				name      string
				essential bool
				deps      []task.Dependency
			}{
				{"i1", false, nil},
				{"i2", false, []task.Dependency{{Container: "i1", Condition: task.ConditionSuccess}}},
				{"app", true, []task.Dependency{{Container: "i2", Condition: task.ConditionSuccess}}},
				{"side", true, []task.Dependency{{Container: "i2", Condition: task.ConditionSuccess}}},
			}
			if len(cs) != len(want) {
				t.Fatalf("%d containers, want %d", len(cs), len(want))
			}
			for i, w := range want {
				if cs[i].Name != w.name || cs[i].Essential != w.essential || !reflect.DeepEqual(cs[i].DependsOn, w.deps) {
					t.Errorf("container %d = %s essential=%v deps=%+v, want %+v", i, cs[i].Name, cs[i].Essential, cs[i].DependsOn, w)
				}
			}
		}},
		{"sidecar init container is waited for with START", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}, {Name: "proxy", RestartPolicy: &sidecar}}
		}, func(t *testing.T, cs []task.Container) {
			if !reflect.DeepEqual(cs[1].DependsOn, []task.Dependency{{Container: "i1", Condition: task.ConditionSuccess}}) ||
				cs[1].Essential ||
				!reflect.DeepEqual(cs[2].DependsOn, []task.Dependency{{Container: "proxy", Condition: task.ConditionStart}}) {
				t.Errorf("containers = %+v", cs)
			}
		}},
		{"default stop timeout", nil, func(t *testing.T, cs []task.Container) {
			if cs[0].StopTimeout != 30*time.Second {
				t.Errorf("stopTimeout = %v", cs[0].StopTimeout)
			}
		}},
		{"grace period", func(p *corev1.Pod) {
			p.Spec.TerminationGracePeriodSeconds = ptr[int64](45)
			p.Spec.InitContainers = []corev1.Container{{Name: "i"}}
		}, func(t *testing.T, cs []task.Container) {
			if cs[0].StopTimeout != 45*time.Second || cs[1].StopTimeout != 45*time.Second {
				t.Errorf("stopTimeouts = %v %v", cs[0].StopTimeout, cs[1].StopTimeout)
			}
		}},
		{"grace period clamped to 120 s", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr[int64](3600) },
			func(t *testing.T, cs []task.Container) {
				if cs[0].StopTimeout != 120*time.Second {
					t.Errorf("stopTimeout = %v", cs[0].StopTimeout)
				}
			}},
		{"grace period 0 is 1 s", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr[int64](0) },
			func(t *testing.T, cs []task.Container) {
				if cs[0].StopTimeout != time.Second {
					t.Errorf("stopTimeout = %v", cs[0].StopTimeout)
				}
			}},
		{"user from pod and container", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr[int64](1000), RunAsGroup: ptr[int64](3000)}
			p.Spec.Containers = append(p.Spec.Containers,
				corev1.Container{Name: "b", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr[int64](0)}},
				corev1.Container{Name: "c", SecurityContext: &corev1.SecurityContext{RunAsGroup: ptr[int64](5)}})
		}, func(t *testing.T, cs []task.Container) {
			if cs[0].User != "1000:3000" || cs[1].User != "0:3000" || cs[2].User != "1000:5" {
				t.Errorf("users = %q %q %q", cs[0].User, cs[1].User, cs[2].User)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			if tt.mod != nil {
				tt.mod(pod)
			}
			got, err := Convert(pod, baseInputs())
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got.Containers)
		})
	}
}

func TestConvertVolumes(t *testing.T) {
	vol := func(name string, vs corev1.VolumeSource) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: vs}
	}
	tests := []struct {
		name    string
		vols    []corev1.Volume
		kind    func(error) bool // nil = accepted
		wantMsg string
	}{
		{"supported types", []corev1.Volume{
			vol("e", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}),
			vol("c", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}),
			vol("s", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}),
			vol("d", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}),
			vol("kube-api-access", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{}},
			}}}),
		}, nil, ""},
		{"optional missing configmap", []corev1.Volume{vol("c", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}})}, nil, ""},
		{"missing configmap", []corev1.Volume{vol("c", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}})}, errdefs.IsNotFound, `volume "c": configmap "nope" not found`},
		{"missing secret", []corev1.Volume{vol("s", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "nope"}})},
			errdefs.IsNotFound, `volume "s": secret "nope" not found`},
		{"optional missing secret", []corev1.Volume{vol("s", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "nope", Optional: ptr(true)}})}, nil, ""},
		{"missing projected configmap", []corev1.Volume{vol("p", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}}}})},
			errdefs.IsNotFound, `configmap "kube-root-ca.crt" not found`},
		{"missing projected secret", []corev1.Volume{vol("p", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}}}})},
			errdefs.IsNotFound, `secret "x" not found`},
		{"unsupported projected source", []corev1.Volume{vol("p", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Path: "b"}}}}})},
			errdefs.IsInvalidArgument, `volume "p": projected source 0 is of an unsupported type`},
		{"pvc", []corev1.Volume{vol("data", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}})},
			errdefs.IsInvalidArgument, `volume "data" is of an unsupported volume type (persistentVolumeClaim)`},
		{"serviceAccountToken without a token", []corev1.Volume{vol("p", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}})},
			errdefs.IsInvalidArgument, `volume "p": a serviceAccountToken source needs the pod's token`},
		{"hostPath", []corev1.Volume{vol("h", corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}})},
			errdefs.IsInvalidArgument, "(hostPath); Vessel supports emptyDir, configMap, secret, downwardAPI and projected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			pod.Spec.Volumes = tt.vols
			in := baseInputs()
			if strings.Contains(tt.name, "without a token") {
				in.ServiceAccountToken = ""
			}
			_, err := Convert(pod, in)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Convert = %v", err)
				}
				return
			}
			if !tt.kind(err) || !strings.Contains(fmtErr(err), tt.wantMsg) {
				t.Errorf("Convert = %v, want kind and %q", err, tt.wantMsg)
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestConvertPorts(t *testing.T) {
	pod := basePod()
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080},
		{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
	}
	tk, err := Convert(pod, baseInputs())
	if err != nil {
		t.Fatal(err)
	}
	want := []task.Port{{Name: "http", ContainerPort: 8080, Protocol: "tcp"}, {Name: "dns", ContainerPort: 53, Protocol: "udp"}}
	if got := tk.Containers[0].Ports; !reflect.DeepEqual(got, want) {
		t.Errorf("ports %+v, want %+v", got, want)
	}
}
