package task

import (
	"slices"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// Security is a container's security settings, from a pod's
// securityContext or an ECS container definition. The zero value is the
// default sandbox: the image's user, the default capability set, a
// writable root, no_new_privs and the default seccomp profile (both always
// on: a sandbox never gains privileges).
type Security struct {
	// RunAsNonRoot refuses to start the container when its user resolves
	// to uid 0 (the kubelet's check).
	RunAsNonRoot bool `json:"runAsNonRoot,omitempty"`
	// CapAdd and CapDrop change the default capability set; names are
	// upper case without the CAP_ prefix ("SYS_PTRACE"), and "ALL" in
	// CapDrop drops every capability before CapAdd adds.
	CapAdd  []string `json:"capAdd,omitempty"`
	CapDrop []string `json:"capDrop,omitempty"`
	// ReadOnlyRootFilesystem mounts the container's root read-only (its
	// volumes keep their own modes).
	ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem,omitempty"`
	// SupplementalGroups are extra group IDs of the container's process
	// (a pod's fsGroup and supplementalGroups).
	SupplementalGroups []uint32 `json:"supplementalGroups,omitempty"`
	// InitProcess runs a small init as PID 1 that forwards signals to the
	// container's process and reaps zombies (ECS initProcessEnabled).
	InitProcess bool `json:"initProcess,omitempty"`
}

// AddableCapabilities are the capabilities a container may add beyond the
// default set: only SYS_PTRACE, as on Fargate.
var AddableCapabilities = []string{"SYS_PTRACE"}

// KnownCapabilities are the Linux capabilities by name, without CAP_.
var KnownCapabilities = []string{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF",
	"CHECKPOINT_RESTORE", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER",
	"FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE", "LINUX_IMMUTABLE",
	"MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE",
	"SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE",
	"SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
}

// NormalizeCapability turns "cap_sys_ptrace", "CAP_SYS_PTRACE" or
// "SYS_PTRACE" into "SYS_PTRACE".
func NormalizeCapability(name string) string {
	n := strings.ToUpper(strings.TrimSpace(name))
	return strings.TrimPrefix(n, "CAP_")
}

// Validate checks the settings: capability names known (ALL only in
// CapDrop), CapAdd within AddableCapabilities. field prefixes the
// messages (e.g. `container "app"`). Errors are of kind
// errdefs.ErrInvalidArgument.
func (s *Security) Validate(field string) error {
	if s == nil {
		return nil
	}
	for _, c := range s.CapDrop {
		if n := NormalizeCapability(c); n != "ALL" && !slices.Contains(KnownCapabilities, n) {
			return errdefs.InvalidArgument("%s: capabilities.drop names %q, which is not a Linux capability", field, c)
		}
	}
	for _, c := range s.CapAdd {
		if !slices.Contains(AddableCapabilities, NormalizeCapability(c)) {
			return errdefs.InvalidArgument("%s: capabilities.add names %q: the only capability a container may add is %s",
				field, c, strings.Join(AddableCapabilities, ", "))
		}
	}
	return nil
}

// Clone returns a deep copy of s (nil for nil).
func (s *Security) Clone() *Security {
	if s == nil {
		return nil
	}
	c := *s
	c.CapAdd = slices.Clone(s.CapAdd)
	c.CapDrop = slices.Clone(s.CapDrop)
	c.SupplementalGroups = slices.Clone(s.SupplementalGroups)
	return &c
}

// DefaultCapabilities is runtime.DefaultCapabilities without CAP_: the
// set every runtime gives a container that drops and adds nothing.
var DefaultCapabilities = func() []string {
	out := make([]string, len(runtime.DefaultCapabilities))
	for i, c := range runtime.DefaultCapabilities {
		out[i] = strings.TrimPrefix(c, "CAP_")
	}
	return out
}()

// Capabilities is the container's effective capability set, each with
// the CAP_ prefix, in a stable order: the defaults less CapDrop, plus
// CapAdd. Every runtime gives the container exactly these.
func (s *Security) Capabilities() []string {
	var drop, add []string
	if s != nil {
		drop, add = s.CapDrop, s.CapAdd
	}
	dropAll := false
	dropped := map[string]bool{}
	for _, c := range drop {
		n := NormalizeCapability(c)
		dropAll = dropAll || n == "ALL"
		dropped[n] = true
	}
	out := []string{}
	for _, c := range DefaultCapabilities {
		if !dropAll && !dropped[c] {
			out = append(out, "CAP_"+c)
		}
	}
	for _, c := range add {
		n := "CAP_" + NormalizeCapability(c)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
