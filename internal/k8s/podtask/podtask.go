package podtask

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/task"
)

// Placeholders the host agent replaces in a container's Environment,
// EntryPoint and Command once the task's IP is known (task.ExpandPlaceholders).
const (
	PlaceholderPodIP    = task.PlaceholderPodIP
	PlaceholderNodeName = task.PlaceholderNodeName
)

// Tag keys Convert puts on the task.
const (
	TagPodNamespace = "vessel:pod-namespace"
	TagPodName      = "vessel:pod-name"
	TagPodUID       = "vessel:pod-uid"
	TagProfile      = "vessel:profile"
)

// LabelFargateProfile is the pod label naming the profile that took it; the
// profile tag falls back to it when Inputs.Profile is empty.
const LabelFargateProfile = "eks.amazonaws.com/fargate-profile"

// StartedBy is the task's startedBy for pods.
const StartedBy = "vessel-scheduler"

// DefaultEphemeralStorageGiB is what a pod's sandbox gets, as on Fargate.
const DefaultEphemeralStorageGiB = task.DefaultEphemeralStorageGiB

// Inputs is what Convert needs besides the pod, resolved by the caller.
// Convert does not change it.
type Inputs struct {
	// ConfigMaps and Secrets of the pod's namespace, by name, holding at
	// least those the pod refers to.
	ConfigMaps map[string]map[string]string
	Secrets    map[string]map[string][]byte

	// PodIP is the task's IP when already known; "" writes PlaceholderPodIP.
	PodIP string
	// NodeName is the pod's virtual node; "" uses pod.spec.nodeName, then
	// PlaceholderNodeName.
	NodeName string

	// KubernetesServiceHost and KubernetesServicePort are the address of the
	// API server as pods see it (the default/kubernetes service); no
	// KUBERNETES_* variables are set when the host is "".
	KubernetesServiceHost string
	KubernetesServicePort int32

	// ClusterName is the Vessel cluster the task runs in.
	ClusterName string
	// Profile is the profile that took the pod ("" = the pod's
	// eks.amazonaws.com/fargate-profile label).
	Profile string
	// Subnets the task may be placed in (the profile's).
	Subnets []string
	// Runtime is the sandbox runtime ("" = the host's default).
	Runtime string

	// ServiceAccountToken is the token of the pod's service account, got
	// from the TokenRequest API, written where a projected volume has a
	// serviceAccountToken source; "" makes such a volume an error.
	ServiceAccountToken string
	// ClusterCA is the cluster's CA bundle (PEM), the ca.crt of the
	// kube-root-ca.crt config map when ConfigMaps does not hold it.
	ClusterCA []byte

	// ClusterDNS are the addresses of the cluster's DNS service (the
	// kube-dns Service's ClusterIP), the kubelet's --cluster-dns; none
	// makes dnsPolicy ClusterFirst fall back to the host's resolvers, as
	// the kubelet does.
	ClusterDNS []string
	// ClusterDomain is the cluster's DNS domain ("" = DefaultClusterDomain).
	ClusterDomain string
}

// Convert returns the task that runs pod: the template the control plane
// makes the task of with task.New (no ID, ARN, status or placement yet).
// Errors: a *sizing.TooLargeError for a pod larger
// than every size; errdefs.ErrNotFound for a missing, non-optional config
// map, secret or key; errdefs.ErrInvalidArgument for a pod without
// containers, an unsupported volume
// type, field path or resource, a dnsConfig a resolver cannot take, or a
// security setting a sandbox cannot honour (SecurityProblems). Messages name the container and variable
// or volume. Convert does not change pod or in.
//
// What it maps:
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
//   - Hostname: spec.hostname, else the pod's name, cut to 63 characters
//     without a trailing '-' or '.', as the kubelet names a pod's host
//     (Task.Hostname: the sandbox's UTS name, /etc/hostname, its /etc/hosts
//     entry and every container's HOSTNAME). A name that is still no DNS
//     label is an errdefs.ErrInvalidArgument. spec.subdomain gives
//     Task.HostDomain, <subdomain>.<namespace>.svc.<cluster domain>, whose
//     fully qualified name /etc/hosts gives first; setHostnameAsFQDN makes
//     that name (at most 64 characters) the hostname itself.
//
// Not mapped (the bridge's job or later): ports (other than to resolve a
// probe's named port), probes of sidecars (init containers with
// restartPolicy Always), grpc probes and a probe's own
// terminationGracePeriodSeconds, per-container limits, service links
// other than the kubernetes service, ephemeral containers.
//
// imagePullSecrets (dockerconfigjson or dockercfg secrets in
// Inputs.Secrets) give each container's RegistryAuth, matched to the
// image's registry as the kubelet's keyring does.
func Convert(pod *corev1.Pod, in Inputs) (*task.Task, error) {
	if len(pod.Spec.Containers) == 0 {
		// The API server refuses such a pod; a task without containers
		// is refused by the control plane too, so say why here.
		return nil, errdefs.InvalidArgument("pod %s/%s has no containers: spec.containers needs at least one", pod.Namespace, pod.Name)
	}
	if err := containerNames(pod); err != nil {
		return nil, err
	}
	size, err := sizing.ForPodSpec(&pod.Spec)
	if err != nil {
		return nil, err
	}
	if problems := SecurityProblems(pod); len(problems) > 0 {
		return nil, errdefs.InvalidArgument("%s", strings.Join(problems, "; "))
	}
	stop := stopTimeout(pod.Spec.TerminationGracePeriodSeconds)
	profileName := in.Profile
	if profileName == "" {
		profileName = pod.Labels[LabelFargateProfile]
	}

	t := &task.Task{
		Cluster:             in.ClusterName,
		CPUUnits:            size.CPUUnits(),
		MemoryMiB:           size.MemoryMiB,
		EphemeralStorageGiB: DefaultEphemeralStorageGiB,
		Runtime:             in.Runtime,
		Subnets:             append([]string(nil), in.Subnets...),
		StartedBy:           StartedBy,
		Tags: []task.Tag{
			{Key: TagPodNamespace, Value: pod.Namespace},
			{Key: TagPodName, Value: pod.Name},
			{Key: TagPodUID, Value: string(pod.UID)},
		},
	}
	if profileName != "" {
		t.Tags = append(t.Tags, task.Tag{Key: TagProfile, Value: profileName})
	}

	t.RestartPolicy = restartPolicy(pod.Spec.RestartPolicy)
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		g := uint32(*sc.FSGroup)
		t.FSGroup = &g
	}
	t.DNS = dns(pod, in)
	if t.Hostname, t.HostDomain, err = hostname(pod, in); err != nil {
		return nil, err
	}
	r := &resolver{pod: pod, in: in, size: size}
	if t.Volumes, err = r.volumes(); err != nil {
		return nil, err
	}
	var prev *task.Dependency // what the next container waits for
	for _, c := range pod.Spec.InitContainers {
		tc, err := r.container(&c)
		if err != nil {
			return nil, err
		}
		tc.StopTimeout = stop
		if prev != nil {
			tc.DependsOn = []task.Dependency{*prev}
		}
		cond := task.ConditionSuccess
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			cond = task.ConditionStart // a sidecar: later containers wait for it to start
		}
		prev = &task.Dependency{Container: c.Name, Condition: cond}
		t.Containers = append(t.Containers, tc)
	}
	for _, c := range pod.Spec.Containers {
		tc, err := r.container(&c)
		if err != nil {
			return nil, err
		}
		tc.Essential = true
		tc.StopTimeout = stop
		if err := probes(&c, &tc); err != nil {
			return nil, err
		}
		if prev != nil {
			tc.DependsOn = []task.Dependency{*prev}
		}
		t.Containers = append(t.Containers, tc)
	}
	if err := t.ValidateVolumes(); err != nil {
		return nil, err
	}
	if err := t.ValidateRestartAndProbes(); err != nil {
		return nil, err
	}
	if err := t.DNS.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// containerNames checks what the API server checks of the names of the
// pod's containers, which become file and directory names on the host:
// each an RFC 1123 label, none repeated.
func containerNames(pod *corev1.Pod) error {
	seen := map[string]bool{}
	for _, cs := range []struct {
		field string
		list  []corev1.Container
	}{{"spec.initContainers", pod.Spec.InitContainers}, {"spec.containers", pod.Spec.Containers}} {
		for i, c := range cs.list {
			if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
				return errdefs.InvalidArgument("pod %s/%s: %s[%d].name %q is not valid: %s", pod.Namespace, pod.Name, cs.field, i, c.Name, strings.Join(errs, "; "))
			}
			if seen[c.Name] {
				return errdefs.InvalidArgument("pod %s/%s: container name %q is used twice; names must be unique across initContainers and containers", pod.Namespace, pod.Name, c.Name)
			}
			seen[c.Name] = true
		}
	}
	return nil
}

// CapacityProvisioned returns the value of the CapacityProvisioned pod
// annotation for a task Convert made: "0.25vCPU 0.5GB".
func CapacityProvisioned(t *task.Task) string {
	return sizing.Size{MilliCPU: t.MilliCPU(), MemoryMiB: t.MemoryMiB}.String()
}

// stopTimeout maps terminationGracePeriodSeconds to a StopTimeout:
// default 30 s, clamped to 1..120 s.
func stopTimeout(grace *int64) time.Duration {
	if grace == nil {
		return task.DefaultStopTimeout
	}
	d := time.Duration(*grace) * time.Second
	return min(max(d, time.Second), task.MaxStopTimeout)
}

// resolver resolves one pod's containers.
type resolver struct {
	pod  *corev1.Pod
	in   Inputs
	size sizing.Size
}

func (r *resolver) container(c *corev1.Container) (task.Container, error) {
	env, err := r.env(c)
	if err != nil {
		return task.Container{}, err
	}
	tc := task.Container{
		Name:        c.Name,
		Image:       c.Image,
		EntryPoint:  expandAll(c.Command, env),
		Command:     expandAll(c.Args, env),
		Environment: env,
		WorkingDir:  c.WorkingDir,
	}
	if tc.Security, tc.User, err = r.containerSecurity(c); err != nil {
		return task.Container{}, err
	}
	tc.RegistryAuth = r.registryAuth(c.Image)
	if tc.MountPoints, err = r.mounts(c, env); err != nil {
		return task.Container{}, err
	}
	for _, p := range c.Ports {
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		tc.Ports = append(tc.Ports, task.Port{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: proto})
	}
	return tc, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// volumeType names a volume source for error messages.
func volumeType(vs corev1.VolumeSource) string {
	switch {
	case vs.HostPath != nil:
		return "hostPath"
	case vs.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case vs.Ephemeral != nil:
		return "ephemeral"
	case vs.NFS != nil:
		return "nfs"
	case vs.CSI != nil:
		return "csi"
	case vs.Image != nil:
		return "image"
	case vs.ISCSI != nil:
		return "iscsi"
	case vs.FC != nil:
		return "fc"
	default:
		return "unknown"
	}
}
