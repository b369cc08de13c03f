// Package admission holds the Kubernetes bridge's webhook decisions as pure
// functions: which pods Vessel takes (Mutate, HandleMutate) and which of
// those a sandbox cannot run (Validate, HandleValidate). It speaks
// admission/v1 and core/v1 types and nothing else; serving HTTPS, TLS
// certificates and the webhook configurations are the bridge's job.
//
// It imports internal/profile (matching), internal/k8s/podtask (the
// security-context rules, shared with the conversion so that what is
// admitted is what runs), internal/errdefs, k8s.io/api and
// k8s.io/apimachinery only; it must not import client-go, the store, the
// server or the runtime.
//
// # Mutate
//
// A pod matches a profile by the EKS rules of internal/profile: its
// namespace and all labels of one selector, with `*` and `?` globs; several
// matching profiles are decided by name, first wins; the label
// eks.amazonaws.com/fargate-profile picks one, which the pod must still
// match. A matching pod gets:
//
//   - spec.schedulerName: vessel-scheduler
//   - labels eks.amazonaws.com/fargate-profile=<name> and vessel.dev/profile=<name>
//   - the annotation vessel.dev/runtime=<profile's default runtime>, only
//     when the profile has one and the pod names no runtime itself (by
//     spec.runtimeClassName, or by an annotation vessel.dev/runtime it
//     already carries). A pod's own choice is always kept.
//
// Pods that name another scheduler (anything but "", "default-scheduler"
// and "vessel-scheduler") are left alone even when a profile matches: the
// user asked for that scheduler explicitly. Pods matching no profile are not
// touched (empty patch); they stay with the cluster's own scheduler. Only
// CREATE is mutated: schedulerName cannot change afterwards.
//
// # Validate
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
//
// Usage:
//
//	out := admission.HandleMutate(review, profiles)   // for /mutate
//	out := admission.HandleValidate(review)           // for /validate
//	// write out as JSON
package admission
