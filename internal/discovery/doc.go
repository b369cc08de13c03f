// Package discovery is the control plane's DNS server: names for tasks.
//
// Each cluster has a zone "<cluster>.vessel.local" (the domain is
// configurable), and in it:
//
//   - "<service>.<cluster>.vessel.local": A records of the tasks of the
//     service (Task.Group "service:<service>", ECS's convention) that are
//     serving (Serving): RUNNING, not asked to stop, with an address, and
//     healthy (every essential container with a health check HEALTHY,
//     every container with a readiness probe ready; containers without
//     either count as healthy). SRV questions get one record per task and
//     declared port (ECS portMappings, pod container ports; port 0 for a
//     task that declares none), naming the task, with its address as
//     additional record; a named port is also published as
//     "_<port-name>._<protocol>.<service>.<cluster>.vessel.local";
//   - "<task-id>.<cluster>.vessel.local": the task's address while it is
//     RUNNING and not asked to stop, whatever its health.
//
// Answers have a short TTL (5 s) and so have negative answers (the SOA's
// minimum), so that a task that turns unhealthy or is stopped drops out of
// clients' caches within seconds. An unknown name under the domain is
// NXDOMAIN with the zone's SOA; a known name without records of the type
// asked (AAAA, say) is NOERROR with no answer. Names under the domain are
// answered only once the first snapshot of the tasks is in (SERVFAIL
// before). Every other name is forwarded, over the protocol it came in on,
// to the host's resolvers (the nameservers of /etc/resolv.conf when the
// server is made, minus any that is the server itself); without any, the
// answer is SERVFAIL. The server serves UDP and TCP on each of its
// addresses.
//
// Forwarding is bounded, since every task can send queries: at most
// Config.MaxInFlight (256) queries are with the upstreams at once (past it
// SERVFAIL at once), and each source address may have Config.ForwardRate
// (50) queries a second forwarded, in bursts of ForwardBurst (100), past
// which it is answered REFUSED. Names of the domain are answered from
// memory and not limited.
//
// The server follows a Source, the control plane's task cache
// (*server.Server's TaskSnapshot and Changes), rebuilding an immutable
// index on every change (at most every 50 ms) and answering from the latest.
//
// Where it listens (internal/cli): `vessel server` listens by default on
// the gateway address of each task subnet, port 53, binding with
// IP_FREEBIND (Config.FreeBind) since a subnet's bridge, and so its
// gateway address, appears only with the subnet's first task. The gateway
// is what every task on the host reaches without a route of its own, and
// listening there rather than on 0.0.0.0 keeps the forwarder off the host's
// other networks (it would be an open resolver there) and clear of a
// resolver already on the host's port 53 (systemd-resolved, dnsmasq).
//
// This package imports internal/task and internal/errdefs only; it must
// not import internal/server (the Source interface stands for it),
// internal/agent or internal/network.
//
//	d, err := discovery.New(discovery.Config{Source: srv, Listen: []string{"10.89.0.1:53"}, FreeBind: true})
//	err = d.Start(ctx) // bound; serves until ctx ends
//	...
//	d.Wait()
package discovery
