// Package runtimetest is the conformance suite every runtime back end must
// pass. It speaks only the runtime.Runtime interface (and runtime.Execer
// where the runtime has it) and portable shell commands (sh -c "exit 3",
// sleep, trap, echo, dd, nc), so the same cases run against sim and real
// sandboxes.
//
// Every back end is checked for exit codes, signals (SIGTERM, SIGKILL after
// an ignored SIGTERM), several containers per sandbox, errors for missing
// things, adoption by a new runtime on the same state, restarting an exited
// container (runtime.Restarter: the new run's exit, the restart count in
// List, conflicts for a running or never started one), and Delete. With
// Harness.Real, the suite also checks output (read from <LogDir>/<name>.log
// in the CRI format; a restarted container's runs go to the same log and
// keep its writable layer), environment, working directory and user, exec
// (separate stdout and stderr, exit codes, stdin to its end, a TTY with its
// size), the
// memory limit (OOMKilled, 137), the CPU quota (a busy loop in 0.25 vCPU
// uses < 40 % of a CPU), the pids limit, volumes (ContainerSpec.Mounts:
// files read at the mount path, a single file mounted on its own, a
// read-only mount refusing writes, two containers sharing a tmpfs
// directory), the security settings (security.go: capabilities, no_new_privs
// and seccomp mode, a call outside the seccomp allow-list, a read-only root,
// runAsNonRoot, supplemental groups, a uid without a passwd entry, an init
// that reaps and forwards SIGTERM, a process budget per sandbox rather than
// per uid, an image whose /etc/passwd is a named pipe), and, with
// Harness.Network, TCP between two sandboxes. With Harness.Leftovers, every Delete is followed by
// a check that nothing of the sandbox is left on the host.
//
//	runtimetest.Run(t, runtimetest.Harness{
//		New:       func(t *testing.T, dir string) runtime.Runtime { ... },
//		Image:     "busybox",
//		Real:      true,
//		Prepare:   func(t *testing.T, spec *runtime.Spec) { /* layers */ },
//		Leftovers: func(t *testing.T, id string) []string { ... },
//	})
//
// The harnesses of the real back ends share their set-up: BusyboxLayer
// builds the image layer, WithLayer is their Prepare and Networking their
// Network (a network manager on a FreeSubnet); RunApp and
// DeleteLeavesNothing serve their own tests, BareBundle, LeftoverProcesses
// and ResidentKiB their benchmarks.
//
//	layer := runtimetest.BusyboxLayer(t)
//	runtimetest.Run(t, runtimetest.Harness{
//		New:     ...,
//		Image:   "busybox",
//		Real:    true,
//		Prepare: runtimetest.WithLayer(layer),
//		Network: runtimetest.Networking(t),
//	})
package runtimetest
