package podtask

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// maxHostname is the longest hostname the kubelet gives a pod (a DNS
// label).
const maxHostname = 63

// maxFQDNHostname is the longest fully qualified name a kubelet sets as
// a pod's hostname (setHostnameAsFQDN).
const maxFQDNHostname = 64

// hostname is the pod's hostname and the domain that qualifies it, as
// the kubelet forms them. The hostname is spec.hostname, else the pod's
// name, cut to 63 characters and then without a trailing '-' or '.'.
// With spec.subdomain the domain is <subdomain>.<namespace>.svc.<cluster
// domain> (/etc/hosts names the pod <hostname>.<domain> first); with
// setHostnameAsFQDN too, the hostname is that fully qualified name (at
// most 64 characters) and no domain is left to add. A result the task
// does not accept (task.ValidateHostname, task.ValidateHostDomain) is an
// errdefs.ErrInvalidArgument; the API server's own checks of pod names,
// spec.hostname and spec.subdomain leave none but a name too long.
func hostname(pod *corev1.Pod, in Inputs) (host, domain string, err error) {
	host = pod.Name
	if pod.Spec.Hostname != "" {
		host = pod.Spec.Hostname
	}
	if len(host) > maxHostname {
		host = strings.TrimRight(host[:maxHostname], "-.")
	}
	if err := task.ValidateHostname(host); err != nil {
		return "", "", errdefs.InvalidArgument("pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	if pod.Spec.Subdomain == "" {
		return host, "", nil
	}
	domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, clusterDomain(in))
	if err := task.ValidateHostDomain(host, domain); err != nil {
		return "", "", errdefs.InvalidArgument("pod %s/%s: spec.subdomain: %v", pod.Namespace, pod.Name, err)
	}
	if fqdn := host + "." + domain; pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN {
		if len(fqdn) > maxFQDNHostname {
			return "", "", errdefs.InvalidArgument("pod %s/%s: setHostnameAsFQDN: the fully qualified name %s is too long (%d characters is the max, %d characters requested)",
				pod.Namespace, pod.Name, fqdn, maxFQDNHostname, len(fqdn))
		}
		return fqdn, "", nil
	}
	return host, domain, nil
}
