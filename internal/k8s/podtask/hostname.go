package podtask

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// maxHostname is the longest hostname the kubelet gives a pod (a DNS
// label).
const maxHostname = 63

// hostname is the pod's hostname as the kubelet forms it: spec.hostname,
// else the pod's name, cut to 63 characters and then without a trailing
// '-' or '.'. A result the task does not accept (task.ValidateHostname)
// is an errdefs.ErrInvalidArgument; the API server's own checks of pod
// names and spec.hostname leave none.
func hostname(pod *corev1.Pod) (string, error) {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > maxHostname {
		h = strings.TrimRight(h[:maxHostname], "-.")
	}
	if err := task.ValidateHostname(h); err != nil {
		return "", errdefs.InvalidArgument("pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return h, nil
}
