package vnode

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"vessel.dev/vessel/internal/task"
)

// Labels, taints and annotations of a Vessel node.
const (
	LabelComputeType    = "vessel.dev/compute-type"
	LabelEKSComputeType = "eks.amazonaws.com/compute-type"
	LabelRuntime        = "vessel.dev/runtime"
	ComputeTypeVessel   = "vessel"
	ComputeTypeFargate  = "fargate"
	AnnotationTaskID    = "vessel.dev/task-id"
	AnnotationPod       = "vessel.dev/pod" // namespace/name
)

// Defaults of NodeOptions.
const (
	KubeletVersion       = "v1.37.2-vessel"
	DefaultKubeletPort   = 10250
	DefaultOSImage       = "Vessel sandbox"
	DefaultEphemeralGiB  = 20
	NodeNamePrefix       = "vessel-"
	NodeNameIPPrefix     = "vessel-ip-"
	ReasonKubeletReady   = "KubeletReady"
	ReasonKubeletNoReady = "KubeletNotReady"
)

// NodeOptions are the facts about a node that the task does not hold.
type NodeOptions struct {
	// Zone is the topology.kubernetes.io/zone label ("" = none).
	Zone string
	// Ready and Message make the Ready condition.
	Ready   bool
	Message string
	// KubeletPort is where the bridge serves the kubelet API for this node
	// (0 = 10250).
	KubeletPort int32
	// OSImage and KernelVersion go into node info (OSImage "" = "Vessel sandbox").
	OSImage       string
	KernelVersion string
	// Arch is kubernetes.io/arch ("" = amd64).
	Arch string
	// Now stamps the conditions' heartbeat and transition times.
	Now time.Time
}

// NodeName returns the name of the node for task t.
func NodeName(t *task.Task) string {
	if t.IP != "" {
		return NodeNameIPPrefix + strings.NewReplacer(".", "-", ":", "-").Replace(t.IP)
	}
	id := t.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return NodeNamePrefix + id
}

// NodeFor returns the node pod runs on as task t. It does not change its
// arguments; the caller owns the result.
//
// The node: named vessel-ip-10-0-1-23 after the task's IP, or
// vessel-<first 12 characters of the task ID> until the IP is known (a
// node's name cannot change, so the bridge should create it once the IP is
// known, or keep the early name for its life). It carries the labels
// vessel.dev/compute-type=vessel, eks.amazonaws.com/compute-type=fargate,
// kubernetes.io/{os,arch,hostname}, topology.kubernetes.io/zone and
// vessel.dev/runtime; the taints vessel.dev/compute-type=vessel:NoSchedule
// and eks.amazonaws.com/compute-type=fargate:NoSchedule; capacity and
// allocatable equal to the provisioned size with pods: 1; node info
// (kubelet v1.37.2-vessel, container runtime vessel://<runtime>);
// addresses; a Ready condition from NodeOptions; and the kubelet endpoint
// port the bridge serves logs/exec on.
func NodeFor(pod *corev1.Pod, t *task.Task, o NodeOptions) *corev1.Node {
	name := NodeName(t)
	arch := o.Arch
	if arch == "" {
		arch = "amd64"
	}
	osImage := o.OSImage
	if osImage == "" {
		osImage = DefaultOSImage
	}
	port := o.KubeletPort
	if port == 0 {
		port = DefaultKubeletPort
	}
	labels := map[string]string{
		LabelComputeType:       ComputeTypeVessel,
		LabelEKSComputeType:    ComputeTypeFargate,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: arch,
		corev1.LabelHostname:   name,
	}
	if o.Zone != "" {
		labels[corev1.LabelTopologyZone] = o.Zone
	}
	if t.Runtime != "" {
		labels[LabelRuntime] = t.Runtime
	}
	eph := int64(t.EphemeralStorageGiB)
	if eph == 0 {
		eph = DefaultEphemeralGiB
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(t.MilliCPU(), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(t.MemoryMiB<<20, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(1, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(eph<<30, resource.BinarySI),
	}
	runtime := t.Runtime
	if runtime == "" {
		runtime = "default"
	}
	var addrs []corev1.NodeAddress
	if t.IP != "" {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: t.IP})
	}
	addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})

	now := metav1.NewTime(o.Now)
	cond := func(typ corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: st, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now}
	}
	ready := cond(corev1.NodeReady, corev1.ConditionFalse, ReasonKubeletNoReady, o.Message)
	if o.Ready {
		ready = cond(corev1.NodeReady, corev1.ConditionTrue, ReasonKubeletReady, o.Message)
		if ready.Message == "" {
			ready.Message = "the sandbox is running"
		}
	}

	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: labels,
			Annotations: map[string]string{
				AnnotationTaskID: t.ID,
				AnnotationPod:    pod.Namespace + "/" + pod.Name,
			},
		},
		Spec: corev1.NodeSpec{
			ProviderID: "vessel:///" + t.ID,
			Taints: []corev1.Taint{
				{Key: LabelComputeType, Value: ComputeTypeVessel, Effect: corev1.TaintEffectNoSchedule},
				{Key: LabelEKSComputeType, Value: ComputeTypeFargate, Effect: corev1.TaintEffectNoSchedule},
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res.DeepCopy(),
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				ready,
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "the sandbox is limited to its provisioned size"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", ""),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", ""),
				cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated", ""),
			},
			Addresses:       addrs,
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               t.ID,
				SystemUUID:              t.ID,
				KernelVersion:           o.KernelVersion,
				OSImage:                 osImage,
				ContainerRuntimeVersion: "vessel://" + runtime,
				KubeletVersion:          KubeletVersion,
				OperatingSystem:         "linux",
				Architecture:            arch,
			},
		},
	}
}
