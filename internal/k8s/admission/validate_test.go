package admission

import (
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/errdefs"
)

func vesselPod(opts ...podOpt) *corev1.Pod {
	return newPod("default", append([]podOpt{scheduler(SchedulerName)}, opts...)...)
}

func privileged(p *corev1.Pod) {
	t := true
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &t}
}

func addCaps(caps ...corev1.Capability) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: caps}}
	}
}

func initContainer(c corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, c) }
}

func gpu(name corev1.ResourceName, limit bool) podOpt {
	return func(p *corev1.Pod) {
		rl := corev1.ResourceList{name: resource.MustParse("1")}
		if limit {
			p.Spec.Containers[0].Resources.Limits = rl
		} else {
			p.Spec.Containers[0].Resources.Requests = rl
		}
	}
}

func TestValidate(t *testing.T) {
	yes := true
	no := false
	unmasked := corev1.UnmaskedProcMount
	ptr64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name string
		pod  *corev1.Pod
		want []string // nil = accepted
	}{
		{"plain pod", vesselPod(), nil},
		{"other scheduler is not checked", newPod("default", privileged), nil},
		{"privileged", vesselPod(privileged), []string{"invalid SecurityContext fields: Privileged"}},
		{"privileged false is fine", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &no}
		}), nil},
		{"privileged init container", vesselPod(initContainer(corev1.Container{Name: "i",
			SecurityContext: &corev1.SecurityContext{Privileged: &yes}})),
			[]string{"invalid SecurityContext fields: Privileged"}},
		{"privileged ephemeral container", vesselPod(func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "dbg", SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}}
		}), []string{"invalid SecurityContext fields: Privileged"}},
		{"capability added", vesselPod(addCaps("NET_ADMIN")), []string{"invalid SecurityContext fields: Capabilities added: NET_ADMIN"}},
		{"SYS_PTRACE allowed", vesselPod(addCaps("SYS_PTRACE")), nil},
		{"CAP_SYS_PTRACE allowed", vesselPod(addCaps("CAP_SYS_PTRACE")), nil},
		{"SYS_PTRACE with others", vesselPod(addCaps("SYS_PTRACE", "NET_ADMIN", "SYS_ADMIN")),
			[]string{"invalid SecurityContext fields: Capabilities added: NET_ADMIN, SYS_ADMIN"}},
		{"dropping capabilities is fine", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
		}), nil},
		{"same capability in two containers listed once", vesselPod(addCaps("NET_RAW"),
			initContainer(corev1.Container{Name: "i", SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}}})),
			[]string{"invalid SecurityContext fields: Capabilities added: NET_RAW"}},
		{"privileged and capability", vesselPod(addCaps("NET_ADMIN"), initContainer(corev1.Container{Name: "i",
			SecurityContext: &corev1.SecurityContext{Privileged: &yes}})),
			[]string{"invalid SecurityContext fields: Privileged, Capabilities added: NET_ADMIN"}},
		{"restricted profile is admitted", vesselPod(func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: ptr64(1000), FSGroup: ptr64(2000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}}
		}), nil},
		{"restricted profile without added capabilities", vesselPod(func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: ptr64(1000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
		}), nil},
		{"seccomp Unconfined", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
		}), []string{"invalid SecurityContext fields: spec.containers[app].securityContext.seccompProfile.type Unconfined is not supported: " +
			"every sandbox runs the default seccomp allow-list (accepted: RuntimeDefault)"}},
		{"procMount Unmasked in an init container", vesselPod(initContainer(corev1.Container{Name: "i",
			SecurityContext: &corev1.SecurityContext{ProcMount: &unmasked}})),
			[]string{"invalid SecurityContext fields: spec.initContainers[i].securityContext.procMount Unmasked is not supported: " +
				"/proc is always masked (accepted: Default)"}},
		{"EKS's words first, then the fields", vesselPod(addCaps("NET_ADMIN"), func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}
		}), []string{"invalid SecurityContext fields: Capabilities added: NET_ADMIN, " +
			"spec.securityContext.sysctls (kernel.shm_rmid_forced): sysctls are not supported; remove them, " +
			"spec.containers[app].securityContext.allowPrivilegeEscalation true is not supported: sandboxes always run with no_new_privs (accepted: false or unset)"}},
		{"hostNetwork", vesselPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), []string{"fields not supported: HostNetwork"}},
		{"hostPID", vesselPod(func(p *corev1.Pod) { p.Spec.HostPID = true }), []string{"fields not supported: HostPID"}},
		{"hostIPC", vesselPod(func(p *corev1.Pod) { p.Spec.HostIPC = true }), []string{"fields not supported: HostIPC"}},
		{"all host namespaces", vesselPod(func(p *corev1.Pod) { p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC = true, true, true }),
			[]string{"fields not supported: HostNetwork, HostPID, HostIPC"}},
		{"hostPort", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
		}), []string{"port contains HostIP or HostPort"}},
		{"hostIP", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostIP: "0.0.0.0"}}
		}), []string{"port contains HostIP or HostPort"}},
		{"container port alone is fine", vesselPod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}}
		}), nil},
		{"hostPath volume", vesselPod(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "docker", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/docker.sock"}}},
			}
		}), []string{"volumes not supported: docker is of an unsupported volume Type"}},
		{"GPU request", vesselPod(gpu("nvidia.com/gpu", false)), []string{"resources not supported: nvidia.com/gpu"}},
		{"GPU limit", vesselPod(gpu("amd.com/gpu", true)), []string{"resources not supported: amd.com/gpu"}},
		{"GPU in an init container", vesselPod(initContainer(corev1.Container{Name: "i", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}})),
			[]string{"resources not supported: nvidia.com/gpu"}},
		{"other extended resource is fine", vesselPod(gpu("example.com/foo", false)), nil},
		{"DaemonSet pod", vesselPod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "fluentbit"}}
		}), []string{DaemonSetMessage}},
		{"ReplicaSet pod is fine", vesselPod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1"}}
		}), nil},
		{"known runtime class", vesselPod(runtimeClass("gvisor")), nil},
		{"unknown runtime class", vesselPod(runtimeClass("nvidia")),
			[]string{"runtime not supported: nvidia (use one of microvm, gvisor, runc)"}},
		{"sim is not a pod's runtime class", vesselPod(runtimeClass("sim")),
			[]string{"runtime not supported: sim (use one of microvm, gvisor, runc)"}},
		{"unknown runtime annotation", vesselPod(annotations(AnnotationRuntime, "kata")),
			[]string{"runtime not supported: kata (use one of microvm, gvisor, runc)"}},
		{"everything, in EKS's order", vesselPod(privileged, gpu("nvidia.com/gpu", true), func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
			p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "ds"}}
		}), []string{
			"fields not supported: HostNetwork",
			"invalid SecurityContext fields: Privileged",
			"port contains HostIP or HostPort",
			"volumes not supported: h is of an unsupported volume Type",
			"resources not supported: nvidia.com/gpu",
			DaemonSetMessage,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.pod)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var rej *RejectedError
			if !errors.As(err, &rej) {
				t.Fatalf("Validate = %v, want *RejectedError", err)
			}
			if !reflect.DeepEqual(rej.Problems, tt.want) {
				t.Errorf("problems = %q\nwant       %q", rej.Problems, tt.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Error("not an invalid argument")
			}
		})
	}
}

func TestRejectedErrorMessage(t *testing.T) {
	err := &RejectedError{Problems: []string{"fields not supported: HostNetwork", "invalid SecurityContext fields: Privileged",
		"port contains HostIP or HostPort"}}
	want := "Pod not supported on Fargate: fields not supported: HostNetwork, invalid SecurityContext fields: Privileged, port contains HostIP or HostPort"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
	if got := Validate(vesselPod(addCaps("NET_ADMIN"))).Error(); got !=
		"Pod not supported on Fargate: invalid SecurityContext fields: Capabilities added: NET_ADMIN" {
		t.Errorf("message = %q", got)
	}
}
