// Package chaos is Vessel's fault-injection run: it starts a control plane
// (`vessel server --no-agent`) and a host agent (`vessel agent`, joined
// through a TCP proxy this package owns) on a data directory that lives on
// a small loop-mounted ext4 file, runs an ECS service and a stream of
// standalone tasks on real runtimes, and kills at random the server, the
// agent, conmon, runsc, QEMU and task processes, fills the data
// directory's disk and cuts the agent's connection. After each fault it
// waits, bounded, for the system to settle and checks its invariants: no
// task record lost, every stopped task with the stop code and exit code
// that what happened calls for, nothing stuck, the service back at its
// desired count; at the end, that nothing was left behind.
//
// It is long and needs root, so it is built only with the tag `chaos`
// and run by scripts/chaos, never by the test suite. docs/reliability.md
// says what it checks and records its runs.
package chaos
