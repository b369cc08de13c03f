// Package runtimetest is the conformance suite every runtime back end must
// pass. It speaks only the runtime.Runtime interface (and its optional
// abilities) and portable shell commands (sh -c "exit 3", sleep, trap,
// echo, dd, nc), so the same cases run against sim and real sandboxes:
// exit codes, signals, several containers, missing things, invalid specs
// (the rules of runtime.Spec.Validate), adoption by a new runtime on the
// same state, restarts and Delete; with Harness.Real also output, users
// (a numeric uid without a passwd entry gets gid 0), exec, limits,
// volumes and the security settings (security.go); with Harness.Network
// TCP between two sandboxes; with Harness.Leftovers a check after every
// Delete that nothing of the sandbox is left on the host.
//
//	layer := runtimetest.BusyboxLayer(t)
//	runtimetest.Run(t, runtimetest.Harness{
//		New:       func(t *testing.T, dir string) runtime.Runtime { ... },
//		Image:     "busybox",
//		Real:      true,
//		Prepare:   runtimetest.WithLayer(layer),
//		Network:   runtimetest.Networking(t),
//		Leftovers: func(t *testing.T, id string) []string { ... },
//	})
//
// The real back ends' harnesses share their set-up here (host.go,
// real.go): BusyboxLayer, WithLayer, Networking on a FreeSubnet, RunApp
// and DeleteLeavesNothing for their own tests, BareBundle,
// LeftoverProcesses and ResidentKiB for their benchmarks.
//
// This package imports runtime, runtime/toolkit (StateDir stops the
// toolkit's pool of formatted images), task, errdefs and network; only
// tests import it.
package runtimetest
