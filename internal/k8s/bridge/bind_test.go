package bridge

import (
	"context"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestBindPodSeesItsOwnEarlierBinding: a binding the API server stored
// but answered with an error client-go retries (a 5xx or 429 with
// Retry-After: an API server under load, whose storage outlived the
// request's timeout) comes back from the retry as "already assigned". To
// the node the bridge asked for, that is the bridge's own binding: the pod
// is bound. Seen in TestKubernetesFleet under load: the bridge stopped the
// tasks of two pods bound to their nodes ("the pod could not be bound:
// Operation cannot be fulfilled on pods/binding \"web-0\": pod web-0 is
// already assigned to node \"vessel-ip-10-89-1-1\"").
func TestBindPodSeesItsOwnEarlierBinding(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default", UID: "u1"}}
	for _, tc := range []struct {
		name, boundTo string
		ok            bool
	}{
		{"bound to the node asked for", "vessel-ip-10-89-1-1", true},
		{"bound to another node", "vessel-ip-10-89-9-9", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(pod.DeepCopy())
			// The binding is stored elsewhere first; the answer is the
			// conflict a retried request meets.
			kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() != "binding" {
					return false, nil, nil
				}
				p, err := kube.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "default", "web-0")
				if err != nil {
					return true, nil, err
				}
				bound := p.(*corev1.Pod).DeepCopy()
				bound.Spec.NodeName = tc.boundTo
				if err := kube.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, bound, "default"); err != nil {
					return true, nil, err
				}
				return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, "web-0",
					&alreadyAssigned{node: tc.boundTo})
			})
			b := &Bridge{kube: kube, log: slog.New(slog.DiscardHandler)}
			err := b.bindPod(context.Background(), pod, "vessel-ip-10-89-1-1", "0.25vCPU 0.5GB")
			if tc.ok && err != nil {
				t.Fatalf("bindPod = %v, want nil: the pod is bound to the node asked for", err)
			}
			if !tc.ok && !apierrors.IsConflict(err) {
				t.Fatalf("bindPod = %v, want the conflict: the pod is bound to another node", err)
			}
		})
	}
}

type alreadyAssigned struct{ node string }

func (e *alreadyAssigned) Error() string {
	return "pod web-0 is already assigned to node \"" + e.node + "\""
}
