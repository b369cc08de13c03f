// Package discovery is every host's DNS server: names for tasks.
//
// Each cluster has a zone "<cluster>.vessel.local" (the domain is
// configurable) holding:
//
//   - "<service>.<cluster>.vessel.local": A records of the service's tasks
//     that are serving (RUNNING, not asked to stop, with an address, and
//     healthy), and SRV records of their declared ports, a named port also
//     as "_<port-name>._<protocol>.<service>.<cluster>.vessel.local";
//   - "<task-id>.<cluster>.vessel.local": the task's address while it runs.
//
// Answers have a short TTL, so that a task that turns unhealthy or stops
// drops out of clients' caches within seconds. Every other name is
// forwarded to the host's resolvers, bounded per source and in flight,
// since every task can send queries. The server follows a Source of Names
// (the name-relevant part of every task of the fleet, made by NamesOf on
// the control plane and sent to every host over the agent protocol; on a
// host, agent.NameFeed) and answers from an immutable index rebuilt on
// every change. Every host (`vessel agent`, and `vessel server`'s
// in-process agent) listens on the gateway address of each of its task
// subnets (Config.FreeBind, since a gateway appears with its subnet's
// first task), never on the host's other networks.
//
// This package imports task and errdefs only; it must not import the
// server, the agent (the Source interface stands for the names they
// feed) or network.
//
//	d, err := discovery.New(discovery.Config{Source: feed, Listen: []string{"10.89.0.1:53"}, FreeBind: true})
//	err = d.Start(ctx) // bound; serves until ctx ends
//	...
//	d.Wait()
package discovery
