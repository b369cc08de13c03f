// Package runtime is the interface between the host agent and the
// sandboxes it runs. A sandbox holds one task: its containers share the
// sandbox's network and limits, and it outlives the agent that made it (a
// new agent finds it with List and carries on with Wait, Signal and
// Delete). Optional abilities are small interfaces found by type
// assertion: Execer and Restarter. Spec.Validate holds the rules every
// back end applies to a spec at Create.
//
// The back ends are sub-packages: runc, gvisor, microvm and sim (no
// process at all, for tests and scale benchmarks); builtin registers
// them, toolkit holds what the real ones share on the host, and
// runtimetest is the conformance suite every back end passes.
//
//	err := rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512, Containers: containers})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app") // blocks until the container exits
//	err = rt.Delete(ctx, taskID)
//
// This package imports errdefs only; it must not import its back ends, the
// agent, the server or the CLI.
package runtime
