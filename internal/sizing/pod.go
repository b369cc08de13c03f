package sizing

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// ForPodSpec returns the size EKS would provision for spec.
//
// Each container's request is taken from requests, or from limits when the
// container has a limit but no request for that resource (Kubernetes defaults
// requests from limits). Sidecars (init containers with restartPolicy
// Always) run beside the regular containers, so they are counted as
// Kubernetes counts them: added to the regular containers' sum, and to every
// init container that starts after them. Pod-level requests
// (spec.resources), when given for a resource, are the pod's need for it.
// spec.overhead is not counted: Fargate adds its own 256 MiB instead.
func ForPodSpec(spec *corev1.PodSpec) (Size, error) {
	return RoundUp(PodSpecNeeds(spec))
}

// PodSpecNeeds returns what spec needs before the 256 MiB overhead and
// rounding, counted as ForPodSpec describes. Memory is in whole MiB,
// rounded up.
func PodSpecNeeds(spec *corev1.PodSpec) Resources {
	var inits, regular []Resources
	var sidecars Resources // sum of the sidecars started so far
	for _, c := range spec.InitContainers {
		r := containerResources(c.Resources)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.MilliCPU += r.MilliCPU
			sidecars.MemoryMiB += r.MemoryMiB
			// A sidecar starts while the next init containers run: the
			// pod needs it together with what ran before it.
			inits = append(inits, sidecars)
			continue
		}
		inits = append(inits, Resources{
			MilliCPU:  r.MilliCPU + sidecars.MilliCPU,
			MemoryMiB: r.MemoryMiB + sidecars.MemoryMiB,
		})
	}
	for _, c := range spec.Containers {
		regular = append(regular, containerResources(c.Resources))
	}
	if sidecars != (Resources{}) {
		regular = append(regular, sidecars)
	}
	need := PodNeeds(inits, regular)
	if spec.Resources != nil {
		if q, ok := request(*spec.Resources, corev1.ResourceCPU); ok {
			need.MilliCPU = q.MilliValue()
		}
		if q, ok := request(*spec.Resources, corev1.ResourceMemory); ok {
			need.MemoryMiB = bytesToMiB(q.Value())
		}
	}
	return need
}

// containerResources returns a container's effective request.
func containerResources(rr corev1.ResourceRequirements) Resources {
	var r Resources
	if q, ok := request(rr, corev1.ResourceCPU); ok {
		r.MilliCPU = q.MilliValue()
	}
	if q, ok := request(rr, corev1.ResourceMemory); ok {
		r.MemoryMiB = bytesToMiB(q.Value())
	}
	return r
}

// request returns the request for name, or the limit when there is no request.
func request(rr corev1.ResourceRequirements, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := rr.Requests[name]; ok {
		return q, true
	}
	q, ok := rr.Limits[name]
	return q, ok
}

// bytesToMiB rounds up: a pod asking 1G (10^9 bytes) needs 954 MiB.
func bytesToMiB(b int64) int64 {
	if b <= 0 {
		return 0
	}
	return (b + 1<<20 - 1) >> 20
}
