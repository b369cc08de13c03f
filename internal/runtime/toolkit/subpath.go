package toolkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
)

// A mount with a SubPath names a directory (or file) inside a volume the
// sandbox writes to, so the sandbox may have swapped it, or one of its
// parents, for a symbolic link by the time a container starts, and the
// OCI runtime follows links in a bind mount's source. So the spec never
// names the sub-path: its bind source is a private target in the
// container's bundle, <bundle>/subpaths/<i> (the sandbox's state
// directory, which only the agent can reach), and at every start and
// restart bindSubPaths opens the sub-path inside the volume without
// following any link (fsutil.BindBeneath) and binds what it opened onto
// that target. A link there fails the start.

// subPathTarget is the private bind source of container mount i.
func subPathTarget(bundle string, i int) string {
	return filepath.Join(bundle, "subpaths", strconv.Itoa(i))
}

// mountSource is the bind source the OCI spec of the container whose
// root is rootfs (<bundle>/rootfs) gets for its mount i.
func mountSource(rootfs string, i int, m runtime.Mount) string {
	if m.SubPath == "" {
		return m.Source
	}
	return subPathTarget(filepath.Dir(rootfs), i)
}

// bindSubPaths (re)binds container name's sub-paths onto their targets,
// resolving each inside its volume anew.
func (s *Sandboxes) bindSubPaths(rec *ConmonRecord, name string) error {
	c, _ := rec.Container(name)
	b := s.BundleDir(rec.Spec.ID, name)
	if err := s.unbindSubPaths(rec.Spec.ID, name); err != nil {
		return err
	}
	for i, m := range c.Mounts {
		if m.SubPath == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(b, "subpaths"), 0o700); err != nil {
			return s.errorf("%w", err)
		}
		if err := fsutil.BindBeneath(m.Source, filepath.FromSlash(m.SubPath), subPathTarget(b, i)); err != nil {
			return fmt.Errorf("mount at %s: sub-path %q of its volume: %w", m.Destination, m.SubPath, err)
		}
	}
	return nil
}

// unbindSubPaths undoes bindSubPaths: nothing stays mounted under the
// container's subpaths/.
func (s *Sandboxes) unbindSubPaths(id, name string) error {
	dir := filepath.Join(s.BundleDir(id, name), "subpaths")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return s.errorf("%w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := fsutil.Unbind(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s.errorf("unmounting the sub-paths of %s/%s: %w", id, name, err)
	}
	return nil
}
