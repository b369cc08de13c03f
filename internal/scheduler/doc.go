// Package scheduler decides where pending tasks run. It owns the placement
// rules: allocatable capacity (physical capacity × allocation ratio), the
// runtime and subnet constraints, each host's free task addresses per subnet
// (its slice of the subnet, Host.Addresses), bin-packing, spreading a group
// of tasks (an ECS service's) across subnets and hosts, and the reasons a
// task could not be placed (RESOURCE:CPU, RESOURCE:MEMORY, RESOURCE:ENI (no
// free address in its subnets), RUNTIME, SUBNET, NO_HOST).
//
// It is a pure function in the manner of Nomad's scheduler: a read-only
// Snapshot goes in, a Plan comes out, and the caller applies it (records the
// placements in the store, tells the agents). It does no I/O, reads no
// clock, keeps no state between calls and never modifies its input, so it
// is tested with plain values.
//
// It imports only the standard library; it must not import internal/store,
// internal/server, internal/agent or any runtime.
//
// Usage:
//
//	plan := scheduler.Schedule(scheduler.Snapshot{
//		Hosts:   hosts,   // from the host registry, with Ready from heartbeats
//		Placed:  running, // tasks already holding resources
//		Pending: pending, // oldest first
//	})
//	for _, p := range plan.Placements {
//		// assign p.TaskID to p.HostID on p.Subnet, with a revision check
//	}
//	for _, u := range plan.Unplaced {
//		// leave u.TaskID pending; surface u.Reason and u.Message
//	}
//
// Bench and SyntheticSnapshot measure Schedule against a naive first-fit on
// a synthetic fleet, for the benchmark command.
package scheduler
