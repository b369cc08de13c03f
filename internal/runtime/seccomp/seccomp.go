// Package seccomp is the one seccomp profile of Vessel's sandboxes: the
// default allow-list of container runtimes (moby's profile, as Docker,
// containerd and CRI-O apply it), computed for a container's capabilities
// (SYS_PTRACE allows ptrace, and so on). runc applies it on the host; the
// micro-VM's guest agent compiles the same profile for its containers.
//
// One change to moby's profile: it covers the host's native system call
// ABI only (x86_64 on an amd64 host), not the 32-bit ones moby adds for
// old binaries (i386 through int 0x80, x32). Calls through those are
// refused: gVisor implements no 32-bit ABI and the micro-VM's filter
// refuses them too, so the three runtimes agree; the compat entry points
// are a known source of kernel bugs; and runc's libseccomp compiles a
// filter per ABI when the container starts, a third of runc init's time
// (BenchmarkCreateStart: ≈20 ms of ≈80).
//
// It imports only the runtime spec and moby's profile.
package seccomp

import (
	"fmt"
	goruntime "runtime"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nativeArch is the seccomp architecture of the host's own ABI.
var nativeArch = map[string]specs.Arch{
	"amd64": specs.ArchX86_64,
	"arm64": specs.ArchAARCH64,
}

// Profile returns the default allow-list for a container with the given
// capabilities (CAP_ names), for the host's native ABI. Syscalls not
// listed fail with EPERM. The returned value is the caller's.
func Profile(capabilities []string) (*specs.LinuxSeccomp, error) {
	caps := append([]string(nil), capabilities...)
	p, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	}})
	if err != nil {
		return nil, err
	}
	native, ok := nativeArch[goruntime.GOARCH]
	if !ok {
		return nil, fmt.Errorf("seccomp: no native architecture known for %s (amd64 and arm64 are)", goruntime.GOARCH)
	}
	p.Architectures = []specs.Arch{native}
	return p, nil
}
