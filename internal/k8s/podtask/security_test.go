package podtask

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// restricted gives pod the settings Pod Security Admission's "restricted"
// level asks for, on the pod and its first container.
func restricted(p *corev1.Pod) {
	p.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		RunAsUser:      ptr[int64](1000),
		FSGroup:        ptr[int64](2000),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   ptr(true),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func containerSC(i int, sc corev1.SecurityContext) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[i].SecurityContext = &sc }
}

func TestConvertSecurity(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*corev1.Pod)
		user    []string         // per container
		sec     []*task.Security // per container
		fsGroup *uint32
	}{
		{"no settings: the default sandbox", nil, []string{""}, []*task.Security{nil}, nil},
		{"restricted profile", restricted, []string{"1000"},
			[]*task.Security{{RunAsNonRoot: true, CapDrop: []string{"ALL"}, ReadOnlyRootFilesystem: true}}, ptr[uint32](2000)},
		{"container overrides pod", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](1000), RunAsGroup: ptr[int64](1000)}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "b", Image: "x",
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr(false), RunAsUser: ptr[int64](0), RunAsGroup: ptr[int64](7)}})
		}, []string{"1000:1000", "0:7"}, []*task.Security{{RunAsNonRoot: true}, nil}, nil},
		{"capabilities add SYS_PTRACE and drop, normalized", containerSC(0, corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"CAP_SYS_PTRACE"}, Drop: []corev1.Capability{"net_raw", "CAP_CHOWN"}}}),
			[]string{""}, []*task.Security{{CapAdd: []string{"SYS_PTRACE"}, CapDrop: []string{"NET_RAW", "CHOWN"}}}, nil},
		{"restricted's NET_BIND_SERVICE after drop ALL keeps it", containerSC(0, corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}}}),
			[]string{""}, []*task.Security{{CapDrop: []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
				"SETGID", "SETUID", "SETFCAP", "SETPCAP", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}}}, nil},
		{"supplementalGroups and fsGroup", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroups: []int64{5, 6}, FSGroup: ptr[int64](7)}
		}, []string{""}, []*task.Security{{SupplementalGroups: []uint32{5, 6}}}, ptr[uint32](7)},
		{"allowPrivilegeEscalation false and procMount Default are the sandbox's own", containerSC(0, corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false), ProcMount: ptr(corev1.DefaultProcMount)}), []string{""}, []*task.Security{nil}, nil},
		{"init containers too", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x",
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr[int64](5), ReadOnlyRootFilesystem: ptr(true)}}}
		}, []string{"5", ""}, []*task.Security{{ReadOnlyRootFilesystem: true}, nil}, nil},
		{"appArmor Unconfined is what the host gives", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}}
		}, []string{""}, []*task.Security{nil}, nil},
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
			var users []string
			var secs []*task.Security
			for _, c := range got.Containers {
				users = append(users, c.User)
				secs = append(secs, c.Security)
			}
			if !reflect.DeepEqual(users, tt.user) {
				t.Errorf("users = %q, want %q", users, tt.user)
			}
			if !reflect.DeepEqual(secs, tt.sec) {
				for i := range secs {
					t.Errorf("container %d security = %+v", i, secs[i])
				}
				for i := range tt.sec {
					t.Errorf("want %d = %+v", i, tt.sec[i])
				}
			}
			if !reflect.DeepEqual(got.FSGroup, tt.fsGroup) {
				t.Errorf("fsGroup = %s, want %s", showGroup(got.FSGroup), showGroup(tt.fsGroup))
			}
		})
	}
}

func TestConvertSecurityRefused(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*corev1.Pod)
		want []string // substrings of the error, each naming the field
	}{
		{"runAsGroup without runAsUser", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsGroup: ptr[int64](3000)}
		}, []string{`spec.containers[app].securityContext: runAsGroup 3000 is given without runAsUser`}},
		{"seccomp Unconfined on the pod", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
		}, []string{"spec.securityContext.seccompProfile.type Unconfined is not supported", "accepted: RuntimeDefault"}},
		{"seccomp Localhost on a container", containerSC(0, corev1.SecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("p.json")}}),
			[]string{"spec.containers[app].securityContext.seccompProfile.type Localhost is not supported"}},
		{"procMount Unmasked", containerSC(0, corev1.SecurityContext{ProcMount: ptr(corev1.UnmaskedProcMount)}),
			[]string{"spec.containers[app].securityContext.procMount Unmasked is not supported", "accepted: Default"}},
		{"hostUsers false", func(p *corev1.Pod) { p.Spec.HostUsers = ptr(false) },
			[]string{"spec.hostUsers false is not supported"}},
		{"allowPrivilegeEscalation true", containerSC(0, corev1.SecurityContext{AllowPrivilegeEscalation: ptr(true)}),
			[]string{"spec.containers[app].securityContext.allowPrivilegeEscalation true is not supported"}},
		{"appArmor RuntimeDefault", containerSC(0, corev1.SecurityContext{
			AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}}),
			[]string{"spec.containers[app].securityContext.appArmorProfile.type RuntimeDefault: " + AppArmorNotEnabled}},
		{"appArmor annotation", func(p *corev1.Pod) {
			p.Annotations[AppArmorAnnotationPrefix+"app"] = "runtime/default"
		}, []string{"metadata.annotations[" + AppArmorAnnotationPrefix + "app]"}},
		{"seLinuxOptions", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Level: "s0:c1"}}
		}, []string{"spec.securityContext.seLinuxOptions is not supported"}},
		{"windowsOptions", containerSC(0, corev1.SecurityContext{
			WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}}),
			[]string{"spec.containers[app].securityContext.windowsOptions is not supported"}},
		{"sysctls", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.core.somaxconn", Value: "1024"}}}
		}, []string{"spec.securityContext.sysctls (net.core.somaxconn): sysctls are not supported"}},
		{"supplementalGroupsPolicy Strict", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroupsPolicy: ptr(corev1.SupplementalGroupsPolicyStrict)}
		}, []string{"spec.securityContext.supplementalGroupsPolicy Strict is not supported"}},
		{"unknown capability dropped", containerSC(0, corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"FLY"}}}),
			[]string{`spec.containers[app].securityContext: capabilities.drop names "FLY"`}},
		{"capability added", containerSC(0, corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}),
			[]string{`container "app": securityContext: capabilities.add names "NET_ADMIN"`, "SYS_PTRACE"}},
		{"privileged", containerSC(0, corev1.SecurityContext{Privileged: ptr(true)}),
			[]string{`container "app": securityContext.privileged is not supported`}},
		{"init container checked", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x",
				SecurityContext: &corev1.SecurityContext{ProcMount: ptr(corev1.UnmaskedProcMount)}}}
		}, []string{"spec.initContainers[init].securityContext.procMount Unmasked"}},
		{"every problem listed", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{ProcMount: ptr(corev1.UnmaskedProcMount)}
		}, []string{"seccompProfile.type Unconfined", "; spec.containers[app].securityContext.procMount Unmasked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := basePod()
			tt.mod(pod)
			_, err := Convert(pod, baseInputs())
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want an invalid argument", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestSecurityProblemsEphemeral(t *testing.T) {
	pod := basePod()
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "dbg", SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(true)}}}}
	got := SecurityProblems(pod)
	if len(got) != 1 || !strings.HasPrefix(got[0], "spec.ephemeralContainers[dbg].securityContext.allowPrivilegeEscalation true") {
		t.Errorf("problems = %q", got)
	}
	restricted(pod)
	pod.Spec.EphemeralContainers = nil
	if got := SecurityProblems(pod); got != nil {
		t.Errorf("restricted pod: problems = %q", got)
	}
}

func showGroup(g *uint32) string {
	if g == nil {
		return "unset"
	}
	return strconv.FormatUint(uint64(*g), 10)
}
