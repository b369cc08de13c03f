package runtime

import (
	"path"
	"path/filepath"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// CheckMounts validates a container's Mounts for Create: sources absolute
// and clean, destinations absolute, clean, outside /proc and /sys and not
// the root, each destination once. Errors are of kind
// errdefs.ErrInvalidArgument.
func CheckMounts(id string, c ContainerSpec) error {
	seen := map[string]bool{}
	for _, m := range c.Mounts {
		if !filepath.IsAbs(m.Source) || filepath.Clean(m.Source) != m.Source || strings.ContainsAny(m.Source, "\x00,:") {
			return errdefs.InvalidArgument("sandbox %s: container %q: mount source %q must be an absolute, clean host path without ',' or ':'",
				id, c.Name, m.Source)
		}
		if sp := m.SubPath; sp != "" && (path.IsAbs(sp) || path.Clean(sp) != sp || sp == "." || sp == ".." ||
			strings.HasPrefix(sp, "../") || strings.ContainsRune(sp, 0)) {
			return errdefs.InvalidArgument("sandbox %s: container %q: mount at %s: sub-path %q must be a relative, clean path inside its volume",
				id, c.Name, m.Destination, sp)
		}
		d := m.Destination
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" || strings.ContainsRune(d, 0) {
			return errdefs.InvalidArgument("sandbox %s: container %q: mount destination %q must be an absolute, clean path other than /",
				id, c.Name, d)
		}
		for _, reserved := range []string{"/proc", "/sys"} {
			if d == reserved || strings.HasPrefix(d, reserved+"/") {
				return errdefs.InvalidArgument("sandbox %s: container %q: mount destination %s is under %s, which the runtime owns",
					id, c.Name, d, reserved)
			}
		}
		if seen[d] {
			return errdefs.InvalidArgument("sandbox %s: container %q: two mounts at %s", id, c.Name, d)
		}
		seen[d] = true
	}
	return nil
}
