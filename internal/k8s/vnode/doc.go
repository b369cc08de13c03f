// Package vnode builds the Kubernetes objects the bridge shows for a task:
// the one node each Vessel pod runs on (NodeFor) and the pod's status
// mirrored from the task (PodStatusFor). Both are pure: the caller creates,
// updates and deletes the objects through the API server.
//
// It imports internal/task, k8s.io/api and k8s.io/apimachinery only; it must
// not import client-go, the store or the server.
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
//
// The pod status: Pending until the task is RUNNING, Running while it runs,
// and once it has stopped Succeeded when every app container exited 0,
// else Failed, whatever the restartPolicy: Vessel never restarts a stopped
// task in place (restartCount stays 0), the pod's controller replaces the
// pod. The pod IP and host IP are both the task's IP (the sandbox is the
// node). Conditions the bridge does not own (readiness gates, disruption
// targets) are kept from the pod's current status.
//
// Usage:
//
//	node := vnode.NodeFor(pod, t, vnode.NodeOptions{Zone: "zone-a", Ready: true, Now: now})
//	pod.Status = vnode.PodStatusFor(t, pod)
package vnode
