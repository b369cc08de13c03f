package podtask

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"vessel.dev/vessel/internal/task"
)

// DefaultClusterDomain is the cluster's DNS domain when Inputs.ClusterDomain
// is empty, as for the kubelet's --cluster-domain on EKS.
const DefaultClusterDomain = "cluster.local"

// clusterNdots is the ndots option of pods on the cluster's DNS, the
// kubelet's.
const clusterNdots = "ndots:5"

// dns returns the pod's resolver configuration as the kubelet forms its
// resolv.conf (pkg/kubelet/network/dns):
//
//   - ClusterFirst (the default) and ClusterFirstWithHostNet: the cluster's
//     DNS servers, the search domains <ns>.svc.<domain> svc.<domain>
//     <domain>, and ndots:5. Without cluster DNS servers the kubelet falls
//     back to Default, and so does this.
//   - Default: the host's resolvers: nil, unless dnsConfig adds to them.
//   - None: dnsConfig alone.
//
// dnsConfig is merged as the kubelet merges it: its nameservers and
// searches are appended (duplicates dropped), its options replace those of
// the same name. Nameservers beyond task.MaxNameservers and searches beyond
// task.MaxSearches are dropped, as the kubelet drops them.
//
// Where the kubelet would append the host's own nameservers or search
// domains (Default with a dnsConfig), the task gets only the dnsConfig's:
// the host that will run the task is not known here. A config with no
// nameservers gets the host's (task.DNSConfig's rule).
func dns(pod *corev1.Pod, in Inputs) *task.DNSConfig {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	cluster := false
	switch policy {
	case corev1.DNSClusterFirstWithHostNet:
		cluster = true
	case corev1.DNSClusterFirst:
		cluster = !pod.Spec.HostNetwork
	case corev1.DNSNone:
		return mergeDNSConfig(&task.DNSConfig{}, pod.Spec.DNSConfig)
	}
	if cluster && len(in.ClusterDNS) > 0 {
		domain := clusterDomain(in)
		c := &task.DNSConfig{
			Nameservers: append([]string(nil), in.ClusterDNS...),
			Searches:    []string{pod.Namespace + ".svc." + domain, "svc." + domain, domain},
			Options:     []string{clusterNdots},
		}
		return mergeDNSConfig(c, pod.Spec.DNSConfig)
	}
	// Default (or cluster DNS wanted but none known): the host's resolvers.
	if pod.Spec.DNSConfig == nil {
		return nil
	}
	return mergeDNSConfig(&task.DNSConfig{}, pod.Spec.DNSConfig)
}

// mergeDNSConfig adds pc to c, the kubelet's way, and trims c to the
// resolvers' limits. It returns c.
func mergeDNSConfig(c *task.DNSConfig, pc *corev1.PodDNSConfig) *task.DNSConfig {
	if pc != nil {
		c.Nameservers = appendNew(c.Nameservers, pc.Nameservers...)
		c.Searches = appendNew(c.Searches, pc.Searches...)
		for _, o := range pc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			if i := slices.IndexFunc(c.Options, func(have string) bool {
				name, _, _ := strings.Cut(have, ":")
				return name == o.Name
			}); i >= 0 {
				c.Options[i] = opt
			} else {
				c.Options = append(c.Options, opt)
			}
		}
	}
	if len(c.Nameservers) > task.MaxNameservers {
		c.Nameservers = c.Nameservers[:task.MaxNameservers]
	}
	if len(c.Searches) > task.MaxSearches {
		c.Searches = c.Searches[:task.MaxSearches]
	}
	return c
}

// appendNew appends the values of add that list does not hold yet.
func appendNew(list []string, add ...string) []string {
	for _, v := range add {
		if v != "" && !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

// clusterDomain is in.ClusterDomain without a trailing dot, or
// DefaultClusterDomain.
func clusterDomain(in Inputs) string {
	if d := strings.TrimSuffix(in.ClusterDomain, "."); d != "" {
		return d
	}
	return DefaultClusterDomain
}
