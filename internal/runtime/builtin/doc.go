// Package builtin registers the sandbox runtimes this build has: one
// Backend per name in runtime.Names, kept in that order (strongest
// isolation first), each with the constructor that builds it from a
// shared Host configuration and the probe line a host reports for it.
// The CLI's `vessel server` and `vessel agent` loop over Backends to
// find which runtimes work on a machine, and Default picks the runtime of
// tasks that name none: the strongest that runs at native speed (microvm
// where KVM works, else gvisor, else runc); a micro-VM under emulation is
// offered by name only. The control plane (server, admission, task) uses
// runtime.Names and never links the back ends.
//
// This package imports the back ends and the runtime package; it must not
// import the agent, the server or the CLI.
//
//	h := builtin.Host{DataDir: dir, Logger: log}
//	var found []builtin.Probed
//	for _, b := range builtin.Backends {
//		found = append(found, b.Probe(h)) // Line: "runc: works (namespaces, cgroups, seccomp)"
//	}
//	def := builtin.Default(found) // "gvisor" on a host whose KVM does not work
package builtin
