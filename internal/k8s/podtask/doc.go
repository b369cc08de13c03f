// Package podtask turns a Kubernetes pod into the task Vessel's control
// plane runs: the pod → task half of the bridge's scheduler, as a pure
// function. The caller resolves everything that needs the API server first
// (config maps, secrets, the profile, the Kubernetes service address) and
// passes it in Inputs.
//
// It imports internal/task, internal/sizing, internal/errdefs, k8s.io/api
// and k8s.io/apimachinery only; it must not import client-go, the store or
// the server.
//
// What Convert does:
//
//   - Size: sizing.ForPodSpec (EKS rules: largest init container vs sum of
//     containers, +256 MiB, round up). A pod too large for every size gets
//     the *sizing.TooLargeError, whose Reason is
//     POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE: the scheduler leaves the pod
//     Pending with it. CapacityProvisioned(task) gives the annotation value
//     ("2vCPU 9GB") the scheduler writes on the pod.
//   - Containers: command → entryPoint and args → command. Vessel's agent
//     follows ECS (a new entry point drops the image's CMD), which is exactly
//     Kubernetes' rule. $(VAR) references in env values, command and args are
//     expanded as the kubelet does ($$ escapes, unknown names stay as they
//     are). workingDir and securityContext.runAsUser[/runAsGroup] (container
//     over pod) become WorkingDir and User.
//   - Environment, in the kubelet's order: the kubernetes service variables
//     (KUBERNETES_SERVICE_HOST/PORT and the KUBERNETES_PORT family), then
//     envFrom (configMapRef/secretRef, with prefix), then env (value,
//     configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef); later
//     entries win. A missing config map, secret or key is skipped when
//     marked optional and is an errdefs.ErrNotFound naming it otherwise.
//     resourceFieldRef limits that a container does not set are the
//     provisioned size, as the kubelet uses node allocatable.
//   - Pod IP: the task's IP is not known when the task is created. Unless
//     Inputs.PodIP is set, status.podIP(s) and status.hostIP(s) (the same
//     address: the sandbox is the node) become PlaceholderPodIP, which the
//     host agent must replace in Environment, EntryPoint and Command once the
//     IP is assigned. spec.nodeName likewise becomes PlaceholderNodeName
//     unless Inputs.NodeName (or pod.spec.nodeName) is set.
//   - Init containers run first, in order: each depends on the previous one
//     with SUCCESS and the app containers on the last one with SUCCESS. Init
//     containers are not essential; app containers are. Sidecars (init
//     containers with restartPolicy Always) are non-essential containers
//     that what follows depends on with START. Since app containers are
//     essential, the first to exit stops the task: Vessel does not restart
//     containers in place (restartPolicy is applied to the pod's phase only).
//   - Stop timeout: terminationGracePeriodSeconds (default 30) becomes each
//     container's StopTimeout, clamped to 1..120 s. Kubernetes allows longer
//     grace periods; Vessel's stop path, like ECS's, does not. 0 (kill at
//     once) becomes 1 s, since the agent reads 0 as "default".
//   - Tags: vessel:pod-namespace, vessel:pod-name, vessel:pod-uid,
//     vessel:profile.
//   - Volumes: emptyDir, configMap, secret, downwardAPI and projected
//     (configMap, secret, downwardAPI, serviceAccountToken sources) are
//     accepted, and their config maps and secrets must be in Inputs unless
//     optional; anything else is an errdefs.ErrInvalidArgument naming the
//     volume. Only validation happens here: the task model has no volumes
//     yet, and mounting them (and minting service account tokens) is the
//     bridge's job.
//
// Not mapped (the bridge's job or later): ports, probes (readiness and
// liveness become health checks later), per-container limits, hostname and
// HOSTNAME, service links other than the kubernetes service, image pull
// secrets (RegistryAuth), ephemeral containers.
//
// Usage:
//
//	t, err := podtask.Convert(pod, podtask.Inputs{ConfigMaps: cms, Secrets: secs,
//		KubernetesServiceHost: "10.96.0.1", KubernetesServicePort: 443,
//		ClusterName: "default", Profile: p.Name, Subnets: p.Subnets, Runtime: rt})
//	var tooLarge *sizing.TooLargeError
//	if errors.As(err, &tooLarge) { /* Pending, reason tooLarge.Reason */ }
//	pod.Annotations[sizing.AnnotationCapacityProvisioned] = podtask.CapacityProvisioned(t)
package podtask
