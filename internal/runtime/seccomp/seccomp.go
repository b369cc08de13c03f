// Package seccomp is the one seccomp profile of Vessel's sandboxes: the
// default allow-list of container runtimes (moby's profile, as Docker,
// containerd and CRI-O apply it), computed for a container's capabilities
// (SYS_PTRACE allows ptrace, and so on). runc applies it on the host; the
// micro-VM's guest agent compiles the same profile for its containers.
//
// It imports only the runtime spec and moby's profile.
package seccomp

import (
	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Profile returns the default allow-list for a container with the given
// capabilities (CAP_ names). Syscalls not listed fail with EPERM. The
// returned value is the caller's.
func Profile(capabilities []string) (*specs.LinuxSeccomp, error) {
	caps := append([]string(nil), capabilities...)
	return mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	}})
}
