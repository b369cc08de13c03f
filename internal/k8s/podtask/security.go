package podtask

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// Legacy AppArmor annotations (before the appArmorProfile field): a
// container's is AppArmorAnnotationPrefix + its name.
const AppArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"

// AppArmorNotEnabled is the kubelet's words for a pod that asks for an
// AppArmor profile on a node without AppArmor: Vessel's hosts run none,
// as Fargate's nodes.
const AppArmorNotEnabled = "Cannot enforce AppArmor: AppArmor is not enabled on the host"

// SecurityProblems lists the security settings of pod that a sandbox
// cannot honour, one message per setting, each naming the field by its
// path (spec.containers[app].securityContext.seccompProfile.type) and
// saying what is accepted. It covers the pod's and every init, app and
// ephemeral container's security context, except privileged and
// capabilities.add, which the webhook words as EKS does (Convert refuses
// them too). The rules:
//
//   - allowPrivilegeEscalation: false or unset (no_new_privs is always
//     set: a sandbox never gains privileges); true is refused.
//   - seccompProfile: RuntimeDefault or unset (the default allow-list is
//     always applied); Unconfined and Localhost are refused.
//   - procMount: Default or unset; Unmasked is refused (the API server
//     asks for hostUsers false with it, which is refused too: sandboxes get
//     no user namespace of their own).
//   - appArmorProfile (and the legacy annotation): Unconfined or unset;
//     RuntimeDefault and Localhost are refused as the kubelet refuses them
//     on a node without AppArmor (AppArmorNotEnabled).
//   - seLinuxOptions: unset or empty (hosts run no SELinux).
//   - windowsOptions: unset or empty (sandboxes run Linux).
//   - sysctls: none.
//   - supplementalGroupsPolicy: Merge or unset.
//   - runAsGroup needs runAsUser (after the container's settings override
//     the pod's), as containerd's CRI requires: the group of an image's
//     user is not known until the image is read.
//   - capabilities.drop: Linux capability names or ALL.
//
// capabilities.add may name SYS_PTRACE (as on EKS Fargate) and
// DefaultSetAdds; the webhook refuses the others with EKS's words.
func SecurityProblems(pod *corev1.Pod) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	spec := &pod.Spec
	if spec.HostUsers != nil && !*spec.HostUsers {
		add("spec.hostUsers false is not supported: sandboxes get no user namespace of their own (accepted: true or unset)")
	}
	psc := spec.SecurityContext
	if psc != nil {
		const f = "spec.securityContext"
		if len(psc.Sysctls) > 0 {
			names := make([]string, len(psc.Sysctls))
			for i, s := range psc.Sysctls {
				names[i] = s.Name
			}
			add("%s.sysctls (%s): sysctls are not supported; remove them", f, strings.Join(names, " "))
		}
		if p := psc.SupplementalGroupsPolicy; p != nil && *p != corev1.SupplementalGroupsPolicyMerge {
			add("%s.supplementalGroupsPolicy %s is not supported (accepted: Merge or unset)", f, *p)
		}
		out = append(out, commonProblems(f, psc.SeccompProfile, psc.AppArmorProfile, psc.SELinuxOptions, psc.WindowsOptions)...)
	}
	check := func(kind string, c *corev1.Container) {
		f := fmt.Sprintf("spec.%s[%s].securityContext", kind, c.Name)
		sc := c.SecurityContext
		if _, err := securityUser(psc, sc); err != nil {
			add("%s: %v", f, err)
		}
		if v, ok := pod.Annotations[AppArmorAnnotationPrefix+c.Name]; ok && v != "unconfined" && v != "" {
			add("metadata.annotations[%s%s] %q: %s (accepted: unconfined)", AppArmorAnnotationPrefix, c.Name, v, AppArmorNotEnabled)
		}
		if sc == nil {
			return
		}
		if isTrue(sc.AllowPrivilegeEscalation) {
			add("%s.allowPrivilegeEscalation true is not supported: sandboxes always run with no_new_privs (accepted: false or unset)", f)
		}
		if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			add("%s.procMount %s is not supported: /proc is always masked (accepted: Default)", f, *sc.ProcMount)
		}
		if caps := sc.Capabilities; caps != nil {
			s := task.Security{CapDrop: capNames(caps.Drop)}
			if err := s.Validate(f); err != nil {
				add("%v", err)
			}
		}
		out = append(out, commonProblems(f, sc.SeccompProfile, sc.AppArmorProfile, sc.SELinuxOptions, sc.WindowsOptions)...)
	}
	for i := range spec.InitContainers {
		check("initContainers", &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		check("containers", &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		c := corev1.Container(spec.EphemeralContainers[i].EphemeralContainerCommon)
		check("ephemeralContainers", &c)
	}
	return out
}

// commonProblems checks the fields a pod's and a container's security
// context share.
func commonProblems(f string, seccomp *corev1.SeccompProfile, aa *corev1.AppArmorProfile,
	se *corev1.SELinuxOptions, win *corev1.WindowsSecurityContextOptions) []string {
	var out []string
	if seccomp != nil {
		switch seccomp.Type {
		case corev1.SeccompProfileTypeRuntimeDefault:
		case corev1.SeccompProfileTypeLocalhost:
			out = append(out, fmt.Sprintf("%s.seccompProfile.type Localhost is not supported: hosts hold no profiles of their own and every sandbox runs the default allow-list (accepted: RuntimeDefault)", f))
		default:
			out = append(out, fmt.Sprintf("%s.seccompProfile.type %s is not supported: every sandbox runs the default seccomp allow-list (accepted: RuntimeDefault)", f, seccomp.Type))
		}
	}
	if aa != nil && aa.Type != corev1.AppArmorProfileTypeUnconfined {
		out = append(out, fmt.Sprintf("%s.appArmorProfile.type %s: %s (accepted: Unconfined or unset)", f, aa.Type, AppArmorNotEnabled))
	}
	if se != nil && *se != (corev1.SELinuxOptions{}) {
		out = append(out, fmt.Sprintf("%s.seLinuxOptions is not supported: hosts do not run SELinux (accepted: unset)", f))
	}
	if win != nil && (win.GMSACredentialSpecName != nil || win.GMSACredentialSpec != nil || win.RunAsUserName != nil || win.HostProcess != nil) {
		out = append(out, fmt.Sprintf("%s.windowsOptions is not supported: sandboxes run Linux (accepted: unset)", f))
	}
	return out
}

// containerSecurity returns the container's task.Security (nil when it
// asks for nothing beyond the default sandbox) and its user, refusing what
// a sandbox cannot honour with an errdefs.ErrInvalidArgument naming the
// field.
func (r *resolver) containerSecurity(c *corev1.Container) (*task.Security, string, error) {
	psc, sc := r.pod.Spec.SecurityContext, c.SecurityContext
	f := "container " + strconv.Quote(c.Name)
	user, err := securityUser(psc, sc)
	if err != nil {
		return nil, "", errdefs.InvalidArgument("%s: %v", f, err)
	}
	if sc != nil && isTrue(sc.Privileged) {
		return nil, "", errdefs.InvalidArgument("%s: securityContext.privileged is not supported: sandboxes are never privileged", f)
	}
	s := &task.Security{}
	if psc != nil {
		s.RunAsNonRoot = isTrue(psc.RunAsNonRoot)
		for _, g := range psc.SupplementalGroups {
			s.SupplementalGroups = append(s.SupplementalGroups, uint32(g))
		}
	}
	if sc != nil {
		if sc.RunAsNonRoot != nil {
			s.RunAsNonRoot = *sc.RunAsNonRoot
		}
		s.ReadOnlyRootFilesystem = isTrue(sc.ReadOnlyRootFilesystem)
		if caps := sc.Capabilities; caps != nil {
			s.CapAdd, s.CapDrop = defaultAdds(capNames(caps.Add), capNames(caps.Drop))
		}
	}
	if err := s.Validate(f + ": securityContext"); err != nil {
		return nil, "", err
	}
	if !s.RunAsNonRoot && !s.ReadOnlyRootFilesystem && len(s.CapAdd) == 0 &&
		len(s.CapDrop) == 0 && len(s.SupplementalGroups) == 0 {
		return nil, user, nil
	}
	return s, user, nil
}

// securityUser returns "uid" or "uid:gid" from the container's security
// context, falling back to the pod's, or "" to keep the image's user. A
// group without a user is an error.
func securityUser(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) (string, error) {
	var uid, gid *int64
	if pod != nil {
		uid, gid = pod.RunAsUser, pod.RunAsGroup
	}
	if c != nil {
		if c.RunAsUser != nil {
			uid = c.RunAsUser
		}
		if c.RunAsGroup != nil {
			gid = c.RunAsGroup
		}
	}
	if uid == nil {
		if gid != nil {
			return "", fmt.Errorf("runAsGroup %d is given without runAsUser, which is not supported: give runAsUser too", *gid)
		}
		return "", nil
	}
	u := strconv.FormatInt(*uid, 10)
	if gid != nil {
		u += ":" + strconv.FormatInt(*gid, 10)
	}
	return u, nil
}

func capNames(cs []corev1.Capability) []string {
	if len(cs) == 0 {
		return nil
	}
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		if n := task.NormalizeCapability(string(c)); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// DefaultSetAdds are the capabilities of the default set a container may
// "add" besides task.AddableCapabilities: NET_BIND_SERVICE, the one
// capability Pod Security Admission's "restricted" level lets a pod add
// back after dropping ALL. Adding it gives nothing beyond the default
// sandbox, so it is honoured by dropping less.
var DefaultSetAdds = []string{"NET_BIND_SERVICE"}

// defaultAdds moves the DefaultSetAdds out of add and out of drop (ALL
// becomes the default set less them), so that the task's Security keeps
// CapAdd within task.AddableCapabilities.
func defaultAdds(add, drop []string) ([]string, []string) {
	var keep []string
	for _, c := range add {
		if slices.Contains(DefaultSetAdds, c) {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		return add, drop
	}
	add = slices.DeleteFunc(add, func(c string) bool { return slices.Contains(keep, c) })
	var out []string
	for _, c := range drop {
		switch {
		case c == "ALL":
			for _, d := range task.DefaultCapabilities {
				if !slices.Contains(keep, d) && !slices.Contains(out, d) {
					out = append(out, d)
				}
			}
		case !slices.Contains(keep, c) && !slices.Contains(out, c):
			out = append(out, c)
		}
	}
	if len(add) == 0 {
		add = nil
	}
	return add, out
}
