package task

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// Volume is storage of the task that its containers mount with
// MountPoints. Exactly one of EmptyDir and Files is set.
type Volume struct {
	Name string `json:"name"`
	// EmptyDir is a directory that starts empty and lives as long as the
	// task, shared by the containers that mount it.
	EmptyDir *EmptyDir `json:"emptyDir,omitempty"`
	// Files is a directory holding exactly these files, written before any
	// container starts: the content of a Kubernetes configMap, secret,
	// downwardAPI or projected volume, resolved when the pod was converted.
	Files []VolumeFile `json:"files,omitempty"`
}

// Media of an EmptyDir.
const (
	MediumDefault = ""       // the host's disk
	MediumMemory  = "Memory" // a tmpfs, charged to memory
)

// EmptyDir is a volume that starts empty.
type EmptyDir struct {
	// Medium is MediumDefault or MediumMemory.
	Medium string `json:"medium,omitempty"`
	// SizeLimitMiB bounds a memory volume (0 = the task's memory); it is
	// advisory on disk.
	SizeLimitMiB int64 `json:"sizeLimitMiB,omitempty"`
}

// VolumeFile is one file of a Files volume.
type VolumeFile struct {
	// Path is relative to the volume's root, e.g. "token" or "conf/app.yaml".
	Path string `json:"path"`
	// Mode is the file's permission bits; 0 means 0644.
	Mode fs.FileMode `json:"mode,omitempty"`
	Data []byte      `json:"data,omitempty"`
}

// DefaultFileMode is the mode of a VolumeFile whose Mode is 0, as
// Kubernetes' defaultMode.
const DefaultFileMode fs.FileMode = 0o644

// FileMode is the file's mode, DefaultFileMode when unset.
func (f VolumeFile) FileMode() fs.FileMode {
	if f.Mode == 0 {
		return DefaultFileMode
	}
	return f.Mode.Perm()
}

// MountPoint mounts a task volume into a container.
type MountPoint struct {
	// SourceVolume names one of the task's Volumes.
	SourceVolume string `json:"sourceVolume"`
	// ContainerPath is an absolute, clean path inside the container.
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
	// SubPath, if set, mounts this relative path of the volume instead of
	// its root (made as a directory when missing).
	SubPath string `json:"subPath,omitempty"`
}

// Largest sizes of Files volumes, so that a task stays a reasonable value
// to store and to send to a host (Kubernetes caps a config map or secret at
// 1 MiB).
const (
	MaxVolumeFileBytes   = 1 << 20
	MaxVolumeFilesBytes  = 4 << 20
	MaxVolumeFilesOfTask = 8 << 20
)

// ValidateVolumes checks the task's Volumes and its containers'
// MountPoints: volume names unique and DNS-label-like, exactly one kind per
// volume, file paths relative without "..", container paths absolute and
// clean, sub-paths relative without "..", mounts naming existing volumes,
// and no container mounting two volumes at one path. Errors are of kind
// errdefs.ErrInvalidArgument and name the volume or container.
func (t *Task) ValidateVolumes() error {
	names := map[string]bool{}
	var total int
	for i, v := range t.Volumes {
		if err := validVolumeName(v.Name); err != nil {
			return errdefs.InvalidArgument("volume %d: name %q %v", i, v.Name, err)
		}
		if names[v.Name] {
			return errdefs.InvalidArgument("volume %q is defined twice; volume names must be unique in a task", v.Name)
		}
		names[v.Name] = true
		switch {
		case v.EmptyDir != nil && v.Files != nil:
			return errdefs.InvalidArgument("volume %q sets both emptyDir and files; a volume is one or the other", v.Name)
		case v.EmptyDir != nil:
			e := v.EmptyDir
			if e.Medium != MediumDefault && e.Medium != MediumMemory {
				return errdefs.InvalidArgument("volume %q: emptyDir medium %q is not supported; use %q (disk) or %q",
					v.Name, e.Medium, MediumDefault, MediumMemory)
			}
			if e.SizeLimitMiB < 0 {
				return errdefs.InvalidArgument("volume %q: emptyDir sizeLimitMiB %d is negative", v.Name, e.SizeLimitMiB)
			}
		default:
			// Files, possibly none (an optional config map that is missing).
			seen := map[string]bool{}
			size := 0
			for _, f := range v.Files {
				if err := validRelPath(f.Path); err != nil {
					return errdefs.InvalidArgument("volume %q: file path %q %v", v.Name, f.Path, err)
				}
				if seen[f.Path] {
					return errdefs.InvalidArgument("volume %q: file %q is given twice", v.Name, f.Path)
				}
				seen[f.Path] = true
				if f.Mode&^fs.ModePerm != 0 {
					return errdefs.InvalidArgument("volume %q: file %q: mode %#o has bits beyond the permissions 0777", v.Name, f.Path, uint32(f.Mode))
				}
				if len(f.Data) > MaxVolumeFileBytes {
					return errdefs.InvalidArgument("volume %q: file %q is %d bytes; at most %d are accepted", v.Name, f.Path, len(f.Data), MaxVolumeFileBytes)
				}
				size += len(f.Data)
			}
			// A file may not also be a directory of another ("a" and "a/b").
			for p := range seen {
				for d := path.Dir(p); d != "."; d = path.Dir(d) {
					if seen[d] {
						return errdefs.InvalidArgument("volume %q: %q is a file and also the directory of %q", v.Name, d, p)
					}
				}
			}
			if size > MaxVolumeFilesBytes {
				return errdefs.InvalidArgument("volume %q holds %d bytes of files; at most %d are accepted", v.Name, size, MaxVolumeFilesBytes)
			}
			total += size
		}
	}
	if total > MaxVolumeFilesOfTask {
		return errdefs.InvalidArgument("the task's volumes hold %d bytes of files; at most %d are accepted", total, MaxVolumeFilesOfTask)
	}
	for _, c := range t.Containers {
		paths := map[string]bool{}
		for _, m := range c.MountPoints {
			if !names[m.SourceVolume] {
				return errdefs.InvalidArgument("container %q mounts volume %q, which the task does not define (volumes: %s)",
					c.Name, m.SourceVolume, strings.Join(t.volumeNames(), ", "))
			}
			p := m.ContainerPath
			if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
				return errdefs.InvalidArgument("container %q: volume %q: containerPath %q must be an absolute, clean path other than /, e.g. /data",
					c.Name, m.SourceVolume, p)
			}
			if paths[p] {
				return errdefs.InvalidArgument("container %q mounts two volumes at %s", c.Name, p)
			}
			paths[p] = true
			if m.SubPath != "" {
				if err := validRelPath(m.SubPath); err != nil {
					return errdefs.InvalidArgument("container %q: volume %q: subPath %q %v", c.Name, m.SourceVolume, m.SubPath, err)
				}
			}
		}
	}
	return nil
}

func (t *Task) volumeNames() []string {
	out := make([]string, len(t.Volumes))
	for i, v := range t.Volumes {
		out[i] = v.Name
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// Volume returns the named volume, or nil.
func (t *Task) Volume(name string) *Volume {
	for i := range t.Volumes {
		if t.Volumes[i].Name == name {
			return &t.Volumes[i]
		}
	}
	return nil
}

// validVolumeName accepts 1 to 63 characters of lowercase letters, digits
// and '-', as a Kubernetes volume name (a DNS label); ECS's volume names
// (letters, digits, '-' and '_', up to 255) are accepted too.
func validVolumeName(s string) error {
	if s == "" || len(s) > 255 {
		return fmt.Errorf("must be 1 to 255 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// validRelPath accepts a relative path that stays inside its root: no
// leading '/', no ".." element, not empty.
func validRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("is empty; give a relative path such as config/app.yaml")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("holds a NUL byte")
	case path.IsAbs(p):
		return fmt.Errorf("must be relative, e.g. config/app.yaml")
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return fmt.Errorf(`must not contain ".."`)
		}
	}
	if c := path.Clean(p); c == "." {
		return fmt.Errorf("names the volume's root; give a path inside it")
	}
	return nil
}

func cloneVolumes(vs []Volume) []Volume {
	if vs == nil {
		return nil
	}
	out := make([]Volume, len(vs))
	for i, v := range vs {
		if v.EmptyDir != nil {
			e := *v.EmptyDir
			v.EmptyDir = &e
		}
		if v.Files != nil {
			files := make([]VolumeFile, len(v.Files))
			for j, f := range v.Files {
				f.Data = append([]byte(nil), f.Data...)
				files[j] = f
			}
			v.Files = files
		}
		out[i] = v
	}
	return out
}
