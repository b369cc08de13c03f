package admission

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/k8s/podtask"
)

// RejectPrefix starts every rejection message, as on EKS.
const RejectPrefix = "Pod not supported on Fargate: "

// DaemonSetMessage is the problem reported for a DaemonSet's pod.
const DaemonSetMessage = "DaemonSet pods are not supported on Fargate"

// AllowedCapabilities may be added to a container; Fargate allows SYS_PTRACE.
var AllowedCapabilities = []string{"SYS_PTRACE"}

// GPUResources are the extended resources that ask for a GPU.
var GPUResources = []corev1.ResourceName{"nvidia.com/gpu", "amd.com/gpu"}

// RejectedError lists why a pod cannot run on Vessel. It matches
// errdefs.ErrInvalidArgument with errors.Is.
type RejectedError struct {
	// Problems are the message's groups, in the order Error joins them.
	Problems []string
}

func (e *RejectedError) Error() string {
	return RejectPrefix + strings.Join(e.Problems, ", ")
}

// Unwrap makes a RejectedError an errdefs.ErrInvalidArgument.
func (e *RejectedError) Unwrap() error { return errdefs.ErrInvalidArgument }

// Validate checks a pod bound for Vessel (schedulerName vessel-scheduler)
// and returns a *RejectedError listing every problem, or nil. Pods bound
// for other schedulers are always accepted. Validate does not change pod.
//
// The groups, in this order: "fields not supported: HostNetwork, HostPID,
// HostIPC"; "invalid SecurityContext fields: Privileged, Capabilities
// added: NET_ADMIN, SYS_ADMIN" followed by podtask.SecurityProblems
// (each naming its field, e.g. "spec.containers[app].securityContext.
// seccompProfile.type Unconfined is not supported ..."); "port contains HostIP or HostPort";
// "volumes not supported: <name> is of an unsupported volume Type" (one per
// hostPath volume); "resources not supported: nvidia.com/gpu"; "runtime not
// supported: <name> (use one of microvm, gvisor, runc)"; DaemonSetMessage.
//
// Pods bound for Vessel (schedulerName vessel-scheduler) are rejected, with
// EKS's wording, when they ask for what a sandbox cannot give: privileged
// containers, added capabilities (SYS_PTRACE excepted, as on Fargate),
// hostNetwork, hostPID, hostIPC, hostPort or hostIP on a container port,
// hostPath volumes, GPUs (nvidia.com/gpu, amd.com/gpu) and DaemonSet pods;
// and, in the same "invalid SecurityContext fields" group with messages
// that name the field, the security settings a sandbox cannot honour
// (podtask.SecurityProblems: allowPrivilegeEscalation true, seccompProfile
// Unconfined or Localhost, procMount Unmasked, AppArmor profiles other than
// Unconfined, seLinuxOptions, windowsOptions, sysctls, runAsGroup without
// runAsUser, unknown capabilities dropped). A pod that passes Pod Security
// Admission's "restricted" level is admitted and runs with exactly its
// settings.
// Init and ephemeral containers are checked like the others. All problems
// are listed in one message, grouped and joined with ", " as EKS does:
//
//	Pod not supported on Fargate: fields not supported: HostNetwork, invalid SecurityContext fields: Privileged, port contains HostIP or HostPort
//
// A runtimeClassName or vessel.dev/runtime annotation naming a runtime
// Vessel does not have (see Runtimes) is also rejected; that is Vessel's own
// rule, since EKS has one runtime only.
//
// Not rejected here:
//
//   - DaemonSet objects: the webhooks see pods only. A DaemonSet is created
//     as usual; each pod it makes that a profile takes is rejected (the
//     DaemonSet controller reports the rejection as an event on it).
//   - Pods too large for every size: as on EKS they are admitted and stay
//     Pending with the reason POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE, which
//     the bridge's scheduler sets (see internal/k8s/podtask).
//   - Volume types other than hostPath that Vessel cannot mount: the
//     scheduler reports them (podtask.Convert), as EKS's scheduler does.
func Validate(pod *corev1.Pod) error {
	if pod.Spec.SchedulerName != SchedulerName {
		return nil
	}
	var problems []string
	spec := &pod.Spec

	var fields []string
	if spec.HostNetwork {
		fields = append(fields, "HostNetwork")
	}
	if spec.HostPID {
		fields = append(fields, "HostPID")
	}
	if spec.HostIPC {
		fields = append(fields, "HostIPC")
	}
	if len(fields) > 0 {
		problems = append(problems, "fields not supported: "+strings.Join(fields, ", "))
	}

	var privileged, hostPort bool
	var caps, gpus []string
	check := func(sc *corev1.SecurityContext, ports []corev1.ContainerPort, res corev1.ResourceRequirements) {
		if sc != nil && sc.Privileged != nil && *sc.Privileged {
			privileged = true
		}
		if sc != nil && sc.Capabilities != nil {
			for _, c := range sc.Capabilities.Add {
				name := strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
				if !slices.Contains(AllowedCapabilities, name) && !slices.Contains(podtask.DefaultSetAdds, name) &&
					!slices.Contains(caps, string(c)) {
					caps = append(caps, string(c))
				}
			}
		}
		for _, p := range ports {
			if p.HostPort != 0 || p.HostIP != "" {
				hostPort = true
			}
		}
		for _, g := range GPUResources {
			_, req := res.Requests[g]
			_, lim := res.Limits[g]
			if (req || lim) && !slices.Contains(gpus, string(g)) {
				gpus = append(gpus, string(g))
			}
		}
	}
	for _, c := range spec.InitContainers {
		check(c.SecurityContext, c.Ports, c.Resources)
	}
	for _, c := range spec.Containers {
		check(c.SecurityContext, c.Ports, c.Resources)
	}
	for _, c := range spec.EphemeralContainers {
		check(c.SecurityContext, c.Ports, c.Resources)
	}
	if spec.Resources != nil {
		check(nil, nil, *spec.Resources)
	}

	var sc []string
	if privileged {
		sc = append(sc, "Privileged")
	}
	if len(caps) > 0 {
		sc = append(sc, "Capabilities added: "+strings.Join(caps, ", "))
	}
	sc = append(sc, podtask.SecurityProblems(pod)...)
	if len(sc) > 0 {
		problems = append(problems, "invalid SecurityContext fields: "+strings.Join(sc, ", "))
	}
	if hostPort {
		problems = append(problems, "port contains HostIP or HostPort")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			problems = append(problems, "volumes not supported: "+v.Name+" is of an unsupported volume Type")
		}
	}
	if len(gpus) > 0 {
		problems = append(problems, "resources not supported: "+strings.Join(gpus, ", "))
	}
	if rt := RuntimeOf(pod); rt != "" && !slices.Contains(Runtimes, rt) {
		problems = append(problems, "runtime not supported: "+rt+" (use one of "+strings.Join(Runtimes, ", ")+")")
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "DaemonSet" {
			problems = append(problems, DaemonSetMessage)
			break
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &RejectedError{Problems: problems}
}
