package bridge

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"

	"vessel.dev/vessel/internal/k8s/podtask"
	"vessel.dev/vessel/internal/k8s/vnode"
	"vessel.dev/vessel/internal/task"
)

// watchTasks follows the control plane's tasks and turns their changes
// into bindings, pod statuses, kubelet events and node readiness.
func (b *Bridge) watchTasks(ctx context.Context) {
	for {
		ch := b.cfg.ControlPlane.Changes()
		if err := b.syncTasks(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("reading tasks", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(b.cfg.Resync):
		}
	}
}

// syncTasks reads every task of the bridge's pods and acts on what changed.
func (b *Bridge) syncTasks(ctx context.Context) error {
	all, err := b.cfg.ControlPlane.TaskSnapshot(ctx)
	if err != nil {
		return err
	}
	newest := map[types.UID]*task.Task{}
	for _, t := range all {
		if t.Cluster != b.cfg.Cluster || t.StartedBy != podtask.StartedBy {
			continue
		}
		uid := types.UID(tagValue(t.Tags, podtask.TagPodUID))
		if uid == "" {
			continue
		}
		if cur := newest[uid]; cur == nil || t.CreatedAt.After(cur.CreatedAt) {
			newest[uid] = t
		}
	}

	type change struct {
		old, new *task.Task
	}
	var changed []change
	var toBind []*placement
	var failed []*placement
	b.mu.Lock()
	for uid, t := range newest {
		old := b.tasks[uid]
		if old == nil || old.Version != t.Version || old.ID != t.ID {
			changed = append(changed, change{old, t})
		}
		if p := b.placing[uid]; p != nil && p.taskID == t.ID && !p.binding {
			switch {
			case t.Stopped() || t.DesiredStatus == task.StatusStopped:
				delete(b.placing, uid)
				failed = append(failed, p)
			case t.IP != "" || !t.LastStatus.Before(task.StatusRunning):
				p.binding = true
				toBind = append(toBind, p)
			}
		}
	}
	b.tasks = newest
	notify := b.notifyPod
	b.mu.Unlock()

	for _, p := range failed {
		t := newest[p.pod.UID]
		b.warn(p.pod, "FailedScheduling", fmt.Sprintf("the pod's sandbox did not start: %s", t.StoppedReason))
		b.queue.AddRateLimited(podKey(p.pod))
	}
	for _, p := range toBind {
		go b.bind(ctx, p, newest[p.pod.UID])
	}
	for _, c := range changed {
		b.taskChanged(ctx, c.old, c.new, notify)
	}
	b.refreshNodes()
	return nil
}

// taskChanged updates the pod of a task that changed.
func (b *Bridge) taskChanged(ctx context.Context, old, t *task.Task, notify func(*corev1.Pod)) {
	ns, name := tagValue(t.Tags, podtask.TagPodNamespace), tagValue(t.Tags, podtask.TagPodName)
	b.mu.Lock()
	pod := b.bound[ns+"/"+name]
	b.mu.Unlock()
	if pod == nil || pod.UID != types.UID(tagValue(t.Tags, podtask.TagPodUID)) {
		return // not bound yet: bind() reports the status once it is
	}
	b.kubeletEvents(pod, t)
	b.log.Debug("pod status", "pod", podKey(pod), "task", t.LastStatus)
	if notify != nil {
		notify(b.podWithStatus(pod, t))
	}
	// A task stopped under the pod by Vessel (its host was lost, its
	// profile deleted) leaves nothing to restart: the pod is deleted so
	// that its controller replaces it, as the node lifecycle controller
	// does for pods of a lost node.
	if t.Stopped() && (old == nil || !old.Stopped()) && pod.DeletionTimestamp == nil && evicted(t) {
		b.log.Info("deleting pod whose task Vessel stopped", "pod", podKey(pod), "reason", t.StoppedReason)
		zero := int64(0)
		err := b.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil {
			b.log.Warn("deleting pod", "pod", podKey(pod), "err", err)
		}
	}
}

// evicted says whether Vessel, not the pod's owner, stopped the task.
func evicted(t *task.Task) bool {
	return t.StopCode == task.StopCodeTerminationNotice ||
		t.StopCode == task.StopCodeUserInitiated && strings.HasPrefix(t.StoppedReason, task.ProfileDeletedReason)
}

// podWithStatus returns a copy of pod with the status t gives it.
func (b *Bridge) podWithStatus(pod *corev1.Pod, t *task.Task) *corev1.Pod {
	p := pod.DeepCopy()
	p.Status = vnode.PodStatusFor(t, pod)
	return p
}

// kubeletEvents emits, once each, the events a kubelet would for what
// task t has been through so far.
func (b *Bridge) kubeletEvents(pod *corev1.Pod, t *task.Task) {
	rec := b.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: pod.Spec.NodeName})
	b.mu.Lock()
	seen := b.emitted[pod.UID]
	if seen == nil {
		seen = map[string]bool{}
		b.emitted[pod.UID] = seen
	}
	b.mu.Unlock()
	once := func(key, typ, reason, msg string) {
		b.mu.Lock()
		done := seen[key]
		seen[key] = true
		b.mu.Unlock()
		if !done {
			rec.Event(pod, typ, reason, msg)
		}
	}
	for _, c := range t.Containers {
		if !t.PullStartedAt.IsZero() {
			once("Pulling/"+c.Name, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
		}
		if !t.PullStoppedAt.IsZero() && c.ImageDigest != "" {
			once("Pulled/"+c.Name, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q (digest %s)", c.Image, c.ImageDigest))
		}
		if c.LastStatus == task.StatusRunning || c.ExitCode != nil {
			once("Created/"+c.Name, corev1.EventTypeNormal, "Created", "Created container: "+c.Name)
			once("Started/"+c.Name, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
		}
		if c.Reason != "" && c.ExitCode == nil {
			once("Failed/"+c.Name, corev1.EventTypeWarning, "Failed", c.Reason)
		}
	}
	if t.DesiredStatus == task.StatusStopped && !t.Stopped() {
		for _, c := range t.Containers {
			if c.LastStatus == task.StatusRunning {
				once("Killing/"+c.Name, corev1.EventTypeNormal, "Killing", "Stopping container "+c.Name)
			}
		}
	}
}

func tagValue(tags []task.Tag, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}
