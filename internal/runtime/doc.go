// Package runtime is the interface between the host agent and the sandboxes
// it runs. A sandbox holds one task: its containers share the sandbox's
// network and limits. Back ends live in sub-packages: sim (no process at all,
// for tests and scale benchmarks) now; runc, gvisor and microvm as they land.
// runtimetest is the conformance suite every back end must pass.
//
// Sandboxes outlive the agent that made them: a new agent finds them with
// List and carries on with Wait, Signal and Delete. Optional abilities are
// small interfaces found by type assertion: Execer (run a command in a
// container) and Restarter (run an exited container again, keeping its
// writable layer, as a kubelet restarts a container in its pod sandbox).
//
// This package must not import the agent, the server or the CLI.
//
//	rt.Create(ctx, runtime.Spec{ID: taskID, Containers: ...})
//	rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app") // blocks until the container exits
//	rt.Delete(ctx, taskID)
package runtime
