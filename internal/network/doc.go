// Package network gives each task its own network namespace with one private
// IPv4 address from a subnet, the way Fargate's awsvpc mode gives each task an
// elastic network interface.
//
// It owns, on the host:
//
//   - one Linux bridge per configured subnet, named "vsl-" plus a short hash of
//     the subnet's name and CIDR, carrying the subnet's gateway address (the
//     first usable address). A bridge is created by the first Attach on its
//     subnet and is kept afterwards, also when its last task detaches, so that
//     attaching stays cheap and the host's routes do not flap;
//     RemoveUnusedBridges deletes the bridges of subnets with no leases (tests
//     and uninstall use it);
//   - one named network namespace per task, a bind mount of an nsfs file at
//     <StateDir>/netns/<taskID>, holding eth0 (the peer of a host veth named
//     "vh" plus 8 hex digits that is a port of the bridge), lo, the task's
//     address and a default route via the gateway;
//   - /etc files per task in <StateDir>/etc/<taskID>/ (hosts, hostname,
//     resolv.conf) for the runtime to bind-mount into the sandbox;
//     resolv.conf names Config.DNSServers (else the host's non-loopback
//     resolvers, else the gateway) unless the task brings its own DNS
//     (AttachOptions.DNS; with no nameservers, the gateway under
//     Config.GatewayDNS, where vessel server's DNS server answers);
//   - the IP leases, in <StateDir>/leases.json, written durably before an
//     address is used, so that a crash never hands one address out twice;
//   - for a subnet with NAT on, an iptables MASQUERADE rule (and
//     net.ipv4.ip_forward=1). NAT is off by default;
//   - the network boundary (firewall_linux.go): two nftables tables,
//     "inet" and "bridge", named "vessel-" plus a hash of StateDir, rebuilt
//     atomically whenever a lease or subnet changes and on Reconcile, and
//     deleted with the last bridge. A task reaches, on its host, only DNS on
//     its subnet's gateway (hostServices is the one place to add more, such
//     as the task metadata endpoint), replies to the host's own connections
//     and connections kube-proxy DNATed (Services); tasks of different
//     subnets do not reach each other unless Subnet.Peers says so; frames
//     from a task's veth must carry its MAC (0a:58 and its IPv4 address,
//     set on eth0) and address, IPv4 and ARP only (no IPv6).
//
// It talks to the kernel through netlink only (never the ip command); the
// iptables command is used for NAT alone.
//
// This package must not import internal/server, internal/agent,
// internal/runtime, internal/k8s or internal/cli; it imports internal/errdefs.
//
// Usage sketch (in the host agent):
//
//	m, err := network.Open(network.Config{
//		StateDir: filepath.Join(dataDir, "network"),
//		Subnets:  []network.Subnet{{Name: "subnet-default", CIDR: netip.MustParsePrefix("10.89.0.0/16")}},
//		Logger:   log,
//	})
//	// after a restart, before adopting sandboxes:
//	err = m.Reconcile(ctx, func(taskID string) bool { return sandboxes.Has(taskID) })
//	// per task:
//	a, err := m.Attach(ctx, taskID, "subnet-default", network.AttachOptions{})
//	// start the sandbox in a.NetNSPath, bind-mount a.EtcDir/{hosts,hostname,resolv.conf}
//	...
//	err = m.Detach(ctx, taskID)
//
// Limits: IPv4 only. Bridges get the kernel's default MTU (1500). If the
// host loads br_netfilter with bridge-nf-call-iptables=1 and a FORWARD policy
// of DROP (Docker sets one), traffic between tasks of a bridge is dropped
// until a rule accepts it; this package adds no accepting iptables rule. Namespace mounts are plain
// bind mounts under StateDir (no shared-propagation setup as iproute2 does
// for /run/netns).
//
// A micro-VM runtime will need a tap device instead of a veth; that is a later
// addition.
package network
