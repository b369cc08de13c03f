package bridge

import (
	"context"

	vkerrdefs "github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/task"
)

// podProvider is virtual-kubelet's view of the pods bound to Vessel
// nodes. The scheduler has already submitted each pod's task before
// binding it, so CreatePod only takes note of the pod and reports its
// status; DeletePod stops the task, and the status that follows lets the
// pod controller remove the pod object, as a kubelet does.
type podProvider struct{ b *Bridge }

func (p *podProvider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	b := p.b
	b.mu.Lock()
	b.bound[podKey(pod)] = pod.DeepCopy()
	t := b.tasks[pod.UID]
	notify := b.notifyPod
	b.mu.Unlock()
	if notify == nil {
		return nil
	}
	if t == nil {
		// Bound to a Vessel node by someone else: nothing runs it.
		q := pod.DeepCopy()
		q.Status.Phase = corev1.PodFailed
		q.Status.Reason = "NodeAffinity"
		q.Status.Message = "Pod was bound to Vessel node " + pod.Spec.NodeName + " without going through Vessel's scheduler; Vessel does not run it"
		notify(q)
		return nil
	}
	b.kubeletEvents(pod, t)
	notify(b.podWithStatus(pod, t))
	return nil
}

func (p *podProvider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	b := p.b
	b.mu.Lock()
	b.bound[podKey(pod)] = pod.DeepCopy()
	b.mu.Unlock()
	return nil
}

func (p *podProvider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	b := p.b
	t := b.taskOfPod(pod.UID)
	if t == nil {
		b.mu.Lock()
		delete(b.bound, podKey(pod))
		b.mu.Unlock()
		return vkerrdefs.NotFoundf("pod %s has no task", podKey(pod))
	}
	if !t.Stopped() {
		if err := b.cfg.ControlPlane.StopTaskWith(ctx, b.cfg.Cluster, t.ID, task.StopCodeUserInitiated, "Pod deleted"); err != nil {
			return err
		}
	} else {
		b.mu.Lock()
		notify := b.notifyPod
		b.mu.Unlock()
		if notify != nil {
			notify(b.podWithStatus(pod, t))
		}
	}
	return nil
}

func (p *podProvider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	b := p.b
	b.mu.Lock()
	pod := b.bound[namespace+"/"+name]
	b.mu.Unlock()
	if pod == nil {
		return nil, vkerrdefs.NotFoundf("pod %s/%s is not on a Vessel node", namespace, name)
	}
	if t := b.taskOfPod(pod.UID); t != nil {
		return b.podWithStatus(pod, t), nil
	}
	return pod.DeepCopy(), nil
}

func (p *podProvider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *podProvider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(b.bound))
	for _, pod := range b.bound {
		out = append(out, pod.DeepCopy())
	}
	return out, nil
}

// NotifyPods implements vknode.PodNotifier.
func (p *podProvider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.b.mu.Lock()
	p.b.notifyPod = cb
	p.b.mu.Unlock()
}
