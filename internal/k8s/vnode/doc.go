// Package vnode builds the Kubernetes objects the bridge shows for a task:
// the one node each Vessel pod runs on (NodeFor) and the pod's status
// mirrored from the task (PodStatusFor). Both are pure: the caller creates,
// updates and deletes the objects through the API server.
//
// It imports task of Vessel's, and k8s.io/api and k8s.io/apimachinery only;
// it must not import client-go, the store or the server.
//
// Usage:
//
//	node := vnode.NodeFor(pod, t, vnode.NodeOptions{Zone: "zone-a", Ready: true, Now: now})
//	pod.Status = vnode.PodStatusFor(t, pod)
package vnode
