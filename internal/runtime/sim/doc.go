// Package sim is a runtime whose sandboxes run no process at all. It walks
// the same calls as a real runtime, with small configurable delays, and keeps
// its sandboxes in small files so that they outlive the agent like real ones.
// It lets one machine stand in for thousands of hosts in scale tests and
// benchmarks.
//
// A container's arguments say what it does:
//
//	exit N          exits with code N as soon as it starts
//	sleep S         runs S seconds (a decimal), then exits 0
//	true, false     exit 0 or 1 at once
//	ignore-sigterm  runs until SIGKILL
//	anything else   a service: runs until signalled
//
// A "sh -c SCRIPT" container runs the script's statements in order: sleeps
// add up, "exit N" ends it, "trap ” TERM" ignores SIGTERM, a while, for or
// until loop runs forever, other commands take no time, and the script exits
// 0 at its end.
//
// A signal ends a container with code 128+signal (143 for SIGTERM, 137 for
// SIGKILL), except SIGCHLD, SIGWINCH, SIGURG and SIGCONT, which are ignored.
//
// Create applies the spec rules of every runtime
// (runtime.Spec.ValidateSimulated): a container needs no image layers and
// no arguments here.
//
//	rt, err := sim.New(sim.Config{StateDir: dir})
//	err = rt.Create(ctx, runtime.Spec{ID: "t1", MilliCPU: 250, MemoryMiB: 512,
//		Containers: []runtime.ContainerSpec{{Name: "app", Args: []string{"sleep", "2"}}}})
//
// This package imports runtime and errdefs only.
package sim
