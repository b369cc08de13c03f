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
//     over pod) become WorkingDir and User ("uid" or "uid:gid"; runAsGroup
//     without runAsUser is refused, as containerd's CRI refuses it).
//   - Security (security.go): runAsNonRoot (container over pod),
//     readOnlyRootFilesystem, capabilities add (SYS_PTRACE, and
//     NET_BIND_SERVICE which Pod Security's "restricted" level allows and
//     the default set already holds) and drop, and the pod's
//     supplementalGroups become the container's task.Security; fsGroup
//     becomes Task.FSGroup. allowPrivilegeEscalation false, seccompProfile
//     RuntimeDefault, procMount Default and appArmorProfile Unconfined are
//     what every sandbox has. Everything else SecurityProblems lists is an
//     errdefs.ErrInvalidArgument naming the field; the webhook refuses the
//     same pods first.
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
//     unless Inputs.NodeName (or pod.spec.nodeName) is set. The constants
//     are task's: the agent applies task.ExpandPlaceholders, which writes
//     the node name as task.NodeNameForIP (the bridge's node names).
//   - Init containers run first, in order: each depends on the previous one
//     with SUCCESS and the app containers on the last one with SUCCESS. Init
//     containers are not essential; app containers are. Sidecars (init
//     containers with restartPolicy Always) are non-essential containers
//     that what follows depends on with START. Init containers and sidecars
//     are not restarted in place: an init container's failure fails the
//     task, as before.
//   - restartPolicy (default Always) becomes Task.RestartPolicy: the host
//     agent restarts app containers in place, as the kubelet does (Always:
//     any exit, OnFailure: a non-zero exit; back-off 10 s doubling to
//     5 min), and the task stops only when no app container runs or will
//     be restarted.
//   - Probes of app containers: livenessProbe, readinessProbe and
//     startupProbe with exec, httpGet (path, scheme, host, headers) or
//     tcpSocket handlers and their timings (initialDelaySeconds,
//     periodSeconds, timeoutSeconds, successThreshold, failureThreshold;
//     zero takes Kubernetes' defaults in the agent). A port may be a
//     number or the name of one of the container's ports; an unknown name
//     and grpc probes are an errdefs.ErrInvalidArgument naming the
//     container. The task is checked with task.ValidateRestartAndProbes.
//   - Stop timeout: terminationGracePeriodSeconds (default 30) becomes each
//     container's StopTimeout, clamped to 1..120 s. Kubernetes allows longer
//     grace periods; Vessel's stop path, like ECS's, does not. 0 (kill at
//     once) becomes 1 s, since the agent reads 0 as "default".
//   - Tags: vessel:pod-namespace, vessel:pod-name, vessel:pod-uid,
//     vessel:profile.
//   - Volumes become task.Volumes, resolved now as the kubelet would
//     materialize them: emptyDir stays an emptyDir (medium "" or Memory,
//     sizeLimit rounded up to MiB); configMap and secret volumes become
//     their files (all keys, or items; mode over defaultMode over 0644;
//     a missing, optional config map, secret or key is left out, a
//     non-optional one is an errdefs.ErrNotFound); downwardAPI files hold
//     metadata.name/namespace/uid, labels and annotations (key="value"
//     lines, or one ['<key>']) and resourceFieldRef values (containerName
//     required); projected volumes combine configMap, secret, downwardAPI
//     and serviceAccountToken sources, later sources replacing a path. A
//     serviceAccountToken source writes Inputs.ServiceAccountToken (the
//     bridge's TokenRequest for the pod's service account; "" is an
//     errdefs.ErrInvalidArgument). The kube-api-access-* volume admission
//     injects is such a projected volume (token, ca.crt from the
//     kube-root-ca.crt config map, namespace): it needs no special case,
//     and Inputs.ClusterCA stands in for that config map when ConfigMaps
//     lacks it. Other volume types are an errdefs.ErrInvalidArgument naming
//     the volume.
//   - volumeMounts become MountPoints (mountPath cleaned, subPath, and
//     subPathExpr expanded with the container's environment). Volumes of
//     files are mounted read-only whatever the mount says, as the kubelet
//     does. The task is then checked with task.ValidateVolumes: item paths
//     and sub-paths must stay inside their volume. Files are written once,
//     when the task starts: later changes to a config map or secret (and
//     token rotation) do not reach a running task.
//   - DNS: dnsPolicy and dnsConfig become Task.DNS as the kubelet forms a
//     pod's resolv.conf. ClusterFirst (the default): Inputs.ClusterDNS (the
//     kube-dns Service's ClusterIP), the searches <ns>.svc.<domain>
//     svc.<domain> <domain> (Inputs.ClusterDomain, default cluster.local)
//     and ndots:5; with no ClusterDNS, like Default. Default: the host's
//     resolvers (Task.DNS nil). None: dnsConfig alone. dnsConfig's
//     nameservers and searches are appended, its options replace those of
//     the same name; a result no resolver takes (a nameserver that is not
//     an IP, ...) is an errdefs.ErrInvalidArgument.
//
// Not mapped (the bridge's job or later): ports (other than to resolve a
// probe's named port), probes of sidecars (init containers with
// restartPolicy Always), grpc probes and a probe's own
// terminationGracePeriodSeconds, per-container limits, hostname and
// HOSTNAME, service links other than the kubernetes service, ephemeral
// containers.
//
// imagePullSecrets (dockerconfigjson or dockercfg secrets in
// Inputs.Secrets) give each container's RegistryAuth, matched to the
// image's registry as the kubelet's keyring does.
//
// Usage:
//
//	t, err := podtask.Convert(pod, podtask.Inputs{ConfigMaps: cms, Secrets: secs,
//		KubernetesServiceHost: "10.96.0.1", KubernetesServicePort: 443,
//		ClusterName: "default", Profile: p.Name, Subnets: p.Subnets, Runtime: rt,
//		ServiceAccountToken: tok, ClusterCA: ca,
//		ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local"})
//	var tooLarge *sizing.TooLargeError
//	if errors.As(err, &tooLarge) { /* Pending, reason tooLarge.Reason */ }
//	pod.Annotations[sizing.AnnotationCapacityProvisioned] = podtask.CapacityProvisioned(t)
package podtask
