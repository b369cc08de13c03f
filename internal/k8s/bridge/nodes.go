package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"vessel.dev/vessel/internal/k8s/vnode"
	"vessel.dev/vessel/internal/task"
)

var everything = labels.Everything()

// virtualNode is the node of one pod, kept by virtual-kubelet's node
// controller (status updates and the node's Lease).
type virtualNode struct {
	name   string
	taskID string
	podKey string
	podUID types.UID
	cancel context.CancelFunc
	done   <-chan struct{}

	mu     sync.Mutex
	node   *corev1.Node
	hostID string
	ready  bool
	notify func(*corev1.Node)
}

// Ping implements vknode.NodeProvider: a node is alive while the host
// running its sandbox sends heartbeats. A failed ping stops the Lease
// renewals, and the node lifecycle controller does the rest.
func (vn *virtualNode) Ping(ctx context.Context) error {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	if !vn.ready {
		return fmt.Errorf("host %s of node %s misses its heartbeats", vn.hostID, vn.name)
	}
	return ctx.Err()
}

// NotifyNodeStatus implements vknode.NodeProvider.
func (vn *virtualNode) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	vn.mu.Lock()
	vn.notify = cb
	vn.mu.Unlock()
}

// setReady updates the node's Ready condition when it changes.
func (vn *virtualNode) setReady(ready bool, msg string) {
	vn.mu.Lock()
	if vn.ready == ready || vn.node == nil {
		vn.mu.Unlock()
		return
	}
	vn.ready = ready
	n := vn.node.DeepCopy()
	now := metav1.Now()
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type != corev1.NodeReady {
			continue
		}
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, vnode.ReasonKubeletNoReady, msg
		if ready {
			c.Status, c.Reason = corev1.ConditionTrue, vnode.ReasonKubeletReady
		}
		c.LastTransitionTime, c.LastHeartbeatTime = now, now
	}
	vn.node = n
	cb := vn.notify
	vn.mu.Unlock()
	if cb != nil {
		go cb(n)
	}
}

// startNode creates the node of pod, running as task t, and waits until
// it is registered.
func (b *Bridge) startNode(ctx context.Context, pod *corev1.Pod, t *task.Task) (*virtualNode, error) {
	name := vnode.NodeName(t)
	b.mu.Lock()
	if vn := b.nodes[name]; vn != nil {
		b.mu.Unlock()
		if vn.taskID != t.ID {
			return nil, fmt.Errorf("node %s already belongs to task %s", name, vn.taskID)
		}
		return vn, nil
	}
	b.mu.Unlock()
	alive := b.cfg.ControlPlane.HostAlive(t.HostID)
	n := vnode.NodeFor(pod, t, vnode.NodeOptions{Ready: alive, KubeletPort: int32(b.cfg.KubeletPort), Now: time.Now()})
	b.advertise(n)
	return b.runNode(ctx, n, t, pod, alive)
}

// advertise makes the API server reach the node's kubelet API on this
// host: the Hostname address, which the API server prefers by default,
// is the bridge's address; InternalIP stays the pod's IP, as on Fargate.
func (b *Bridge) advertise(n *corev1.Node) {
	var addrs []corev1.NodeAddress
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeHostName {
			addrs = append(addrs, a)
		}
	}
	n.Status.Addresses = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: b.cfg.Address})
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(b.cfg.KubeletPort)
}

func (b *Bridge) runNode(ctx context.Context, n *corev1.Node, t *task.Task, pod *corev1.Pod, ready bool) (*virtualNode, error) {
	nctx, cancel := context.WithCancel(ctx)
	vn := &virtualNode{name: n.Name, taskID: t.ID, podKey: podKey(pod), podUID: pod.UID, cancel: cancel,
		node: n.DeepCopy(), hostID: t.HostID, ready: ready}
	ctrl, err := vknode.NewNodeController(vn, n, b.kube.CoreV1().Nodes(),
		vknode.WithNodeEnableLeaseV1(b.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease), 0))
	if err != nil {
		cancel()
		return nil, err
	}
	vn.done = ctrl.Done()
	b.mu.Lock()
	if other := b.nodes[n.Name]; other != nil {
		b.mu.Unlock()
		cancel()
		return other, nil
	}
	b.nodes[n.Name] = vn
	b.mu.Unlock()
	go func() {
		if err := ctrl.Run(nctx); err != nil && nctx.Err() == nil {
			b.log.Error("node controller stopped", "node", n.Name, "err", err)
		}
	}()
	select {
	case <-ctrl.Ready():
		return vn, nil
	case <-ctrl.Done():
		b.forgetNode(vn)
		if err := ctrl.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("the node controller stopped")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Bridge) forgetNode(vn *virtualNode) {
	vn.cancel()
	b.mu.Lock()
	if b.nodes[vn.name] == vn {
		delete(b.nodes, vn.name)
	}
	b.mu.Unlock()
}

// refreshNodes updates each node's readiness from its host's heartbeats.
func (b *Bridge) refreshNodes() {
	b.mu.Lock()
	nodes := make([]*virtualNode, 0, len(b.nodes))
	for _, vn := range b.nodes {
		nodes = append(nodes, vn)
	}
	tasks := b.tasks
	b.mu.Unlock()
	for _, vn := range nodes {
		if t := tasks[vn.podUID]; t != nil && t.HostID != "" {
			vn.mu.Lock()
			vn.hostID = t.HostID
			vn.mu.Unlock()
		}
		alive := b.cfg.ControlPlane.HostAlive(vn.hostID)
		vn.setReady(alive, "host "+vn.hostID+" stopped sending heartbeats")
	}
}

// collectNodes deletes the nodes whose pods are gone, and stops their
// tasks if they still run.
func (b *Bridge) collectNodes(ctx context.Context) {
	b.mu.Lock()
	var gone []*virtualNode
	for _, vn := range b.nodes {
		ns, name, _ := splitKey(vn.podKey)
		p, err := b.pods.Pods(ns).Get(name)
		if apierrors.IsNotFound(err) || err == nil && p.UID != vn.podUID {
			gone = append(gone, vn)
		}
	}
	b.mu.Unlock()
	for _, vn := range gone {
		b.deleteNode(ctx, vn)
	}
}

// deleteNode removes a node, its Lease and what runs under it.
func (b *Bridge) deleteNode(ctx context.Context, vn *virtualNode) {
	b.forgetNode(vn)
	if err := b.cfg.ControlPlane.StopTaskWith(ctx, b.cfg.Cluster, vn.taskID, task.StopCodeUserInitiated, "Pod deleted"); err != nil && !apierrors.IsNotFound(err) {
		b.log.Debug("stopping the task of a deleted pod", "task", vn.taskID, "err", err)
	}
	if err := b.kube.CoreV1().Nodes().Delete(ctx, vn.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("deleting node", "node", vn.name, "err", err)
	}
	if err := b.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, vn.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		b.log.Warn("deleting node lease", "node", vn.name, "err", err)
	}
	b.log.Info("node removed", "node", vn.name, "pod", vn.podKey)
}

// adoptNodes takes over the nodes an earlier bridge left: those whose pod
// and task still exist get a node controller again, the others are
// deleted.
func (b *Bridge) adoptNodes(ctx context.Context) error {
	list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: vnode.LabelComputeType + "=" + vnode.ComputeTypeVessel})
	if err != nil {
		return fmt.Errorf("listing Vessel nodes: %w", err)
	}
	for i := range list.Items {
		n := &list.Items[i]
		ns, name, _ := splitKey(n.Annotations[vnode.AnnotationPod])
		pod, perr := b.pods.Pods(ns).Get(name)
		var t *task.Task
		if perr == nil {
			t = b.taskOfPod(pod.UID)
		}
		if perr != nil || t == nil || t.ID != n.Annotations[vnode.AnnotationTaskID] || pod.Spec.NodeName != n.Name {
			vn := &virtualNode{name: n.Name, taskID: n.Annotations[vnode.AnnotationTaskID], cancel: func() {}}
			b.deleteNode(ctx, vn)
			continue
		}
		fresh := vnode.NodeFor(pod, t, vnode.NodeOptions{Ready: b.cfg.ControlPlane.HostAlive(t.HostID),
			KubeletPort: int32(b.cfg.KubeletPort), Now: time.Now()})
		b.advertise(fresh)
		if _, err := b.runNode(ctx, fresh, t, pod, b.cfg.ControlPlane.HostAlive(t.HostID)); err != nil {
			b.log.Warn("adopting node", "node", n.Name, "err", err)
		}
	}
	return nil
}
