package runtime

import "slices"

// The runtimes Vessel has. Each back end's package names itself with the
// same constant (runc.Name == Runc); the constructors and probes live in
// the runtime registry.
const (
	MicroVM = "microvm"
	GVisor  = "gvisor"
	Runc    = "runc"
	Sim     = "sim"
)

// Names lists every runtime, strongest isolation first: the order in which
// a host picks its default and in which lists of runtimes are shown.
var Names = []string{MicroVM, GVisor, Runc, Sim}

// Known reports whether name is one of Names.
func Known(name string) bool { return slices.Contains(Names, name) }
