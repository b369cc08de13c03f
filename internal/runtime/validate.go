package runtime

import (
	"fmt"
	"path/filepath"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// Validate checks a spec against the rules every runtime applies at
// Create, before it touches the host: a valid sandbox ID (CheckName), at
// least one container, a positive MilliCPU and MemoryMiB, containers with
// valid names used once, arguments to run and image layers (absolute
// paths without ':' or ','), and mounts as CheckMounts accepts them.
// Errors are of kind errdefs.ErrInvalidArgument and say what was wrong.
func (s Spec) Validate() error { return s.validate(false) }

// ValidateSimulated is Validate for a runtime that runs no process
// (Simulated): the same rules, except that a container needs neither
// arguments (it then runs until signalled) nor image layers, since the
// agent pulls no image for it.
func (s Spec) ValidateSimulated() error { return s.validate(true) }

func (s Spec) validate(simulated bool) error {
	if err := CheckName(s.ID); err != nil {
		return errdefs.InvalidArgument("sandbox ID %q is not valid: %v", s.ID, err)
	}
	if len(s.Containers) == 0 {
		return errdefs.InvalidArgument("sandbox %s has no containers; give it at least one", s.ID)
	}
	if s.MilliCPU <= 0 || s.MemoryMiB <= 0 {
		return errdefs.InvalidArgument("sandbox %s: MilliCPU and MemoryMiB must be positive (the provisioned size), got %d and %d",
			s.ID, s.MilliCPU, s.MemoryMiB)
	}
	seen := map[string]bool{}
	for _, c := range s.Containers {
		if err := CheckName(c.Name); err != nil {
			return errdefs.InvalidArgument("sandbox %s: container name %q is not valid: %v", s.ID, c.Name, err)
		}
		if seen[c.Name] {
			return errdefs.InvalidArgument("sandbox %s: container name %q is used twice; give each container a name of its own", s.ID, c.Name)
		}
		seen[c.Name] = true
		if !simulated && len(c.Args) == 0 {
			return errdefs.InvalidArgument("sandbox %s: container %q has no arguments to run", s.ID, c.Name)
		}
		if !simulated && len(c.Layers) == 0 {
			return errdefs.InvalidArgument("sandbox %s: container %q has no image layers", s.ID, c.Name)
		}
		for _, l := range c.Layers {
			if !filepath.IsAbs(l) || strings.ContainsAny(l, ":,") {
				return errdefs.InvalidArgument("sandbox %s: layer %q of container %q must be an absolute path without ':' or ','",
					s.ID, l, c.Name)
			}
		}
		if err := CheckMounts(s.ID, c); err != nil {
			return err
		}
	}
	return nil
}

// CheckName checks a sandbox ID or a container name: 1 to 63 letters,
// digits, and '-', '_' or '.' after the first character. Such a name is
// safe as a file name, a cgroup's and in an OCI runtime's container ID.
func CheckName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("must be 1 to 63 characters")
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			(i > 0 && (r == '-' || r == '_' || r == '.'))
		if !ok {
			return fmt.Errorf("use letters, digits, and -, _ or . after the first character")
		}
	}
	return nil
}
