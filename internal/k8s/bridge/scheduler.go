package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"vessel.dev/vessel/internal/k8s/admission"
	"vessel.dev/vessel/internal/k8s/podtask"
	"vessel.dev/vessel/internal/k8s/vnode"
	"vessel.dev/vessel/internal/profile"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/task"
)

// schedulerWorkers is how many pods are turned into tasks at once; the
// work is mostly waiting for the API server (service-account tokens,
// config maps).
const schedulerWorkers = 32

// podEvent queues pods the scheduler may take.
func (b *Bridge) podEvent(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	if waiting(pod) {
		b.log.Debug("pod waiting", "pod", podKey(pod))
		b.queue.Add(podKey(pod))
	}
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		b.mu.Lock()
		p := b.placing[pod.UID]
		b.mu.Unlock()
		if p != nil && pod.DeletionTimestamp != nil && !p.binding {
			b.abandon(pod, p.taskID, "Pod deleted before it was scheduled")
		}
	}
}

// podGone cleans up after a pod that was deleted.
func (b *Bridge) podGone(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		if tomb, isTomb := o.(interface{ GetObject() any }); isTomb {
			pod, ok = tomb.GetObject().(*corev1.Pod)
		}
		if !ok {
			return
		}
	}
	b.mu.Lock()
	p := b.placing[pod.UID]
	delete(b.emitted, pod.UID)
	delete(b.lastWarning, pod.UID)
	b.mu.Unlock()
	if p != nil {
		b.abandon(pod, p.taskID, "Pod deleted")
	}
}

// abandon stops the task of a pod that will not be bound.
func (b *Bridge) abandon(pod *corev1.Pod, taskID, reason string) {
	b.mu.Lock()
	delete(b.placing, pod.UID)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.cfg.ControlPlane.StopTaskWith(ctx, b.cfg.Cluster, taskID, task.StopCodeUserInitiated, reason); err != nil {
		b.log.Warn("stopping the task of an abandoned pod", "pod", podKey(pod), "task", taskID, "err", err)
	}
}

// waiting says whether pod is unbound, alive and may be Vessel's.
func waiting(pod *corev1.Pod) bool {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "" {
		return false
	}
	switch pod.Spec.SchedulerName {
	case admission.SchedulerName, admission.DefaultSchedulerName, "":
		return true
	}
	return false
}

// enqueueWaiting looks at every waiting pod again: a profile may have
// appeared for it since.
func (b *Bridge) enqueueWaiting() {
	if b.pods == nil {
		return
	}
	pods, err := b.pods.List(everything)
	if err != nil {
		return
	}
	for _, p := range pods {
		if waiting(p) {
			b.queue.Add(podKey(p))
		}
	}
}

// schedule runs the scheduler's workers until the queue shuts down.
func (b *Bridge) schedule(ctx context.Context) {
	done := make(chan struct{})
	for range schedulerWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				key, quit := b.queue.Get()
				if quit {
					return
				}
				retry, err := b.place(ctx, key)
				if err != nil && ctx.Err() == nil {
					b.log.Warn("scheduling pod", "pod", key, "err", err)
				}
				if retry {
					b.queue.AddRateLimited(key)
				} else {
					b.queue.Forget(key)
				}
				b.queue.Done(key)
			}
		}()
	}
	for range schedulerWorkers {
		<-done
	}
}

// place takes one waiting pod: it picks the profile, checks the pod,
// sizes it, writes CapacityProvisioned and submits its task. Binding
// follows once the task has an address (syncTasks). It returns whether
// the pod should be tried again soon.
func (b *Bridge) place(ctx context.Context, key string) (retry bool, err error) {
	ns, name, _ := splitKey(key)
	pod, err := b.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if !waiting(pod) {
		return false, nil
	}
	b.mu.Lock()
	_, busy := b.placing[pod.UID]
	existing := b.tasks[pod.UID]
	b.mu.Unlock()
	if busy {
		return false, nil
	}

	prof, ok, err := b.profileFor(ctx, pod)
	if err != nil {
		return true, err
	}
	if !ok {
		return false, nil
	}
	if err := admission.Validate(pod); err != nil {
		b.warn(pod, "FailedScheduling", err.Error())
		return false, nil
	}

	// A restarted bridge finds the task it submitted before.
	if existing != nil && !existing.Stopped() && existing.DesiredStatus != task.StatusStopped {
		b.mu.Lock()
		b.placing[pod.UID] = &placement{pod: pod, taskID: existing.ID, capacity: podtask.CapacityProvisioned(existing)}
		b.mu.Unlock()
		return false, nil
	}

	in, err := b.inputs(ctx, pod, prof)
	if err != nil {
		b.warn(pod, "FailedScheduling", err.Error())
		return true, nil
	}
	t, err := podtask.Convert(pod, in)
	var tooLarge *sizing.TooLargeError
	if errors.As(err, &tooLarge) {
		b.warn(pod, "FailedScheduling", fmt.Sprintf("%s: %s", tooLarge.Reason, tooLarge.Error()))
		return false, nil
	}
	if err != nil {
		b.warn(pod, "FailedScheduling", err.Error())
		return true, nil
	}

	// A pod the webhook did not see gets the profile's labels now.
	if pod.Labels[admission.LabelFargateProfile] != prof.Name || pod.Labels[admission.LabelProfile] != prof.Name {
		if err := b.label(ctx, pod, prof.Name); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return false, nil
			}
			return true, fmt.Errorf("labelling the pod: %w", err)
		}
	}
	b.mu.Lock()
	if _, busy := b.placing[pod.UID]; busy {
		b.mu.Unlock()
		return false, nil
	}
	b.placing[pod.UID] = &placement{pod: pod, capacity: podtask.CapacityProvisioned(t)}
	b.mu.Unlock()
	st, err := b.cfg.ControlPlane.SubmitTask(ctx, t)
	if err != nil {
		b.mu.Lock()
		delete(b.placing, pod.UID)
		b.mu.Unlock()
		b.warn(pod, "FailedScheduling", "Vessel did not accept the pod's task: "+err.Error())
		return true, nil
	}
	b.mu.Lock()
	if p := b.placing[pod.UID]; p != nil {
		p.taskID = st.ID
	}
	b.mu.Unlock()
	b.log.Debug("pod handed to the control plane", "pod", key, "task", st.ID, "size", podtask.CapacityProvisioned(t))
	return false, nil
}

// profileFor returns the ACTIVE profile that takes pod. A pod that names
// Vessel's scheduler is taken by the profile of its label, else by the
// first profile that matches. A pod left to the default scheduler is taken
// only when a profile matches it and either the pod is older than that
// profile (it was created before the profile existed, or while the webhook
// was down) or the default scheduler found no node for it.
func (b *Bridge) profileFor(ctx context.Context, pod *corev1.Pod) (admission.Profile, bool, error) {
	all, err := b.cfg.ControlPlane.FargateProfiles(ctx, b.cfg.Cluster)
	if err != nil {
		return admission.Profile{}, false, err
	}
	active := activeOf(all)
	ours := pod.Spec.SchedulerName == admission.SchedulerName
	if ours {
		if want := pod.Labels[admission.LabelFargateProfile]; want != "" {
			for _, p := range active {
				if p.Name == want {
					return p, true, nil
				}
			}
		}
	}
	ps := make([]profile.Profile, len(active))
	for i, p := range active {
		ps[i] = profile.Profile{Name: p.Name, Selectors: p.Selectors}
	}
	m, ok := profile.Match(ps, pod.Namespace, pod.Labels)
	if !ok {
		if ours {
			b.warn(pod, "FailedScheduling", "no ACTIVE Fargate profile matches the pod's namespace and labels; it waits until one does")
		}
		return admission.Profile{}, false, nil
	}
	var matched admission.Profile
	for _, p := range active {
		if p.Name == m.Name {
			matched = p
		}
	}
	if ours {
		return matched, true, nil
	}
	for _, p := range all {
		if p.Name == matched.Name && pod.CreationTimestamp.Time.Before(p.CreatedAt) {
			return matched, true, nil
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return matched, true, nil
		}
	}
	// The webhook did not see the pod (it was down, or not installed
	// yet): give the default scheduler a head start, then take it.
	if _, labelled := pod.Labels[admission.LabelFargateProfile]; !labelled {
		if age := time.Since(pod.CreationTimestamp.Time); age < missedWebhookGrace {
			b.queue.AddAfter(podKey(pod), missedWebhookGrace-age+time.Second)
		} else {
			return matched, true, nil
		}
	}
	return admission.Profile{}, false, nil
}

// missedWebhookGrace is how long a pod that a profile matches but that the
// webhook did not hand over is left to the default scheduler.
const missedWebhookGrace = 10 * time.Second

// inputs resolves what Convert needs from the API server.
func (b *Bridge) inputs(ctx context.Context, pod *corev1.Pod, prof admission.Profile) (podtask.Inputs, error) {
	in := podtask.Inputs{
		ConfigMaps: map[string]map[string]string{}, Secrets: map[string]map[string][]byte{},
		KubernetesServiceHost: b.kubeServiceHost, KubernetesServicePort: b.kubeServicePort,
		ClusterName: b.cfg.Cluster, Profile: prof.Name, Subnets: prof.Subnets, ClusterCA: b.kubeCA,
		Runtime: admission.RuntimeOf(pod), ClusterDomain: b.cfg.ClusterDomain,
	}
	var err error
	if in.ClusterDNS, err = b.clusterDNS(ctx); err != nil {
		return in, err
	}
	if in.Runtime == "" {
		in.Runtime = prof.Runtime
	}
	cms, secs, wantToken := references(pod)
	for name := range cms {
		cm, err := b.kube.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // Convert says whether it was optional
		}
		if err != nil {
			return in, fmt.Errorf("reading configmap %s: %w", name, err)
		}
		data := map[string]string{}
		for k, v := range cm.Data {
			data[k] = v
		}
		for k, v := range cm.BinaryData {
			data[k] = string(v)
		}
		in.ConfigMaps[name] = data
	}
	for name := range secs {
		s, err := b.kube.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return in, fmt.Errorf("reading secret %s: %w", name, err)
		}
		in.Secrets[name] = s.Data
	}
	if wantToken > 0 {
		tok, err := b.serviceAccountToken(ctx, pod, wantToken)
		if err != nil {
			return in, err
		}
		in.ServiceAccountToken = tok
	}
	return in, nil
}

// serviceAccountToken asks the TokenRequest API for a token of the pod's
// service account, bound to the pod, as the kubelet does for projected
// volumes.
func (b *Bridge) serviceAccountToken(ctx context.Context, pod *corev1.Pod, seconds int64) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := b.kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &seconds,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s: %w", sa, err)
	}
	return tr.Status.Token, nil
}

// references lists the config maps and secrets a pod refers to (image
// pull secrets included), and the
// longest expiration its projected service-account tokens ask for (0 when
// it has none).
func references(pod *corev1.Pod) (cms, secs map[string]bool, tokenSeconds int64) {
	cms, secs = map[string]bool{}, map[string]bool{}
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				cms[e.ConfigMapRef.Name] = true
			}
			if e.SecretRef != nil {
				secs[e.SecretRef.Name] = true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				cms[r.Name] = true
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secs[r.Name] = true
			}
		}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		secs[s.Name] = true
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cms[v.ConfigMap.Name] = true
		case v.Secret != nil:
			secs[v.Secret.SecretName] = true
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				switch {
				case s.ConfigMap != nil:
					cms[s.ConfigMap.Name] = true
				case s.Secret != nil:
					secs[s.Secret.Name] = true
				case s.ServiceAccountToken != nil:
					exp := int64(3607)
					if s.ServiceAccountToken.ExpirationSeconds != nil {
						exp = *s.ServiceAccountToken.ExpirationSeconds
					}
					tokenSeconds = max(tokenSeconds, exp)
				}
			}
		}
	}
	return cms, secs, tokenSeconds
}

// label writes the profile labels on the pod.
func (b *Bridge) label(ctx context.Context, pod *corev1.Pod, prof string) error {
	patch := map[string]any{"metadata": map[string]any{
		"labels": map[string]string{admission.LabelFargateProfile: prof, admission.LabelProfile: prof},
		"uid":    pod.UID,
	}}
	raw, _ := json.Marshal(patch)
	_, err := b.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, raw, metav1.PatchOptions{})
	return err
}

// warn emits a Warning event on pod, once per distinct message.
func (b *Bridge) warn(pod *corev1.Pod, reason, msg string) {
	b.mu.Lock()
	same := b.lastWarning[pod.UID] == reason+msg
	b.lastWarning[pod.UID] = reason + msg
	b.mu.Unlock()
	if !same {
		b.recorder.Event(pod, corev1.EventTypeWarning, reason, msg)
	}
}

// bind gives a placed pod its node and binds it there.
func (b *Bridge) bind(ctx context.Context, p *placement, t *task.Task) {
	pod := p.pod
	began := time.Now()
	defer func() {
		b.log.Debug("pod bound", "pod", podKey(pod), "took", time.Since(began))
	}()
	release := func() {
		b.mu.Lock()
		delete(b.placing, pod.UID)
		b.mu.Unlock()
	}
	// The node is registered while the pod is bound: the API server does
	// not need the node to exist to bind a pod to it, and each takes a few
	// round trips. CapacityProvisioned rides on the binding, whose
	// annotations the API server copies to the pod.
	name := vnode.NodeName(t)
	type started struct {
		vn  *virtualNode
		err error
	}
	nodeDone := make(chan started, 1)
	go func() {
		vn, err := b.startNode(ctx, pod, t)
		b.log.Debug("node ready", "pod", podKey(pod), "took", time.Since(began))
		nodeDone <- started{vn, err}
	}()
	err := b.bindPod(ctx, pod, name, p.capacity)
	release()
	if err != nil {
		b.log.Warn("binding pod", "pod", podKey(pod), "node", name, "err", err)
		b.abandon(pod, t.ID, "the pod could not be bound: "+err.Error())
		if n := <-nodeDone; n.err == nil {
			b.deleteNode(ctx, n.vn)
		}
		return
	}
	b.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s to %s", podKey(pod), name)
	if n := <-nodeDone; n.err != nil {
		b.log.Error("registering the pod's node", "pod", podKey(pod), "node", name, "err", n.err)
	}
}

// bindPod binds pod to node name, CapacityProvisioned riding on the
// binding. A conflict whose pod is already on that node is this binding
// itself, stored by an earlier attempt of the same request (client-go
// sends a write again after a 5xx or 429 with Retry-After, which an API
// server under load answers when storage outlives the request's timeout):
// the pod is bound.
func (b *Bridge) bindPod(ctx context.Context, pod *corev1.Pod, name, capacity string) error {
	err := b.kube.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			Annotations: map[string]string{sizing.AnnotationCapacityProvisioned: capacity}},
		Target: corev1.ObjectReference{Kind: "Node", Name: name},
	}, metav1.CreateOptions{})
	if !apierrors.IsConflict(err) {
		return err
	}
	cur, gerr := b.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if gerr == nil && cur.UID == pod.UID && cur.Spec.NodeName == name {
		b.log.Info("pod found bound to its node by an earlier attempt of the binding", "pod", podKey(pod), "node", name)
		return nil
	}
	return err
}

func splitKey(key string) (ns, name string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", key, false
}
