package agent

import (
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/task"
)

// attachOptions are what the task asks of its network attachment: its
// hostname (a pod's; the attachment's ip-a-b-c-d when empty) and the
// domain that qualifies it, and its own resolv.conf when it carries a DNS
// config.
func attachOptions(t *task.Task) network.AttachOptions {
	o := network.AttachOptions{Hostname: t.Hostname, Domain: t.HostDomain}
	if t.DNS != nil {
		o.DNS = &network.DNS{Nameservers: t.DNS.Nameservers, Searches: t.DNS.Searches, Options: t.DNS.Options}
	}
	return o
}
