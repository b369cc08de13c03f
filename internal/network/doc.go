// Package network gives each task its own network namespace with one private
// IPv4 address from a subnet, the way Fargate's awsvpc mode gives each task an
// elastic network interface.
//
// It owns, on the host, through netlink (the iptables command only for NAT):
//
//   - one Linux bridge per subnet ("vsl-" plus a hash), carrying the
//     subnet's gateway address, made by the subnet's first Attach and kept;
//   - one network namespace per task (a bind mount at
//     <StateDir>/netns/<taskID>) holding eth0, the peer of a host veth on the
//     bridge, with the task's address and a default route via the gateway;
//     in a fleet the address comes from the host's slice of the subnet
//     (Subnet.Slice, given by the control plane), with the slice's prefix
//     length and an on-link default route to the gateway, which is the
//     same on every host: traffic to the rest of the subnet goes through
//     the host, whose more specific routes (other hosts' slices) take it;
//   - the task's /etc files (hosts, hostname, resolv.conf) in
//     <StateDir>/etc/<taskID>/, for the runtime to bind-mount;
//   - the IP leases (<StateDir>/leases.json), written durably before an
//     address is used, so that a crash never hands one address out twice;
//     Rekey moves a lease and its attachment to another task ID in one
//     such write (a warm sandbox's attachment becoming its task's), the
//     namespace and /etc directory keeping the names they were made under;
//   - the network boundary (firewall_linux.go): two nftables tables
//     "vessel-<hash of StateDir>", rebuilt atomically on every change and
//     on Reconcile; docs/security.md says what a task reaches.
//   - with SetFleet, the network between hosts (fleet_linux.go): other
//     hosts' slices of the fleet's subnets routed to them, through one
//     VXLAN device ("vslx" plus a hash; the default) or through the peers'
//     addresses (host-gw), the tunnel's MTU on the bridges and tasks, and
//     the firewall's rules across hosts; the agent calls it on every change
//     of the control plane's view, LeaveFleet removes it.
//
// IPv4 only; bridges get the kernel's default MTU. If the host has
// br_netfilter with bridge-nf-call-iptables=1 and a FORWARD policy of DROP
// (Docker sets one), traffic between tasks of a bridge is dropped until a
// rule accepts it; this package adds none.
//
// It imports nothing of Vessel's but errdefs and fsutil (atomic file
// writes); it must not import the server, the agent, the runtimes, the
// Kubernetes bridge or the CLI.
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
//	err = m.Detach(ctx, taskID)
package network
