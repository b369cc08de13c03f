package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// A task's volumes live on the host in <TaskDir>/<task ID>/volumes/<name>:
// an emptyDir is a directory (mode 0777, so that any user of the image may
// write), or a tmpfs for the Memory medium; a Files volume is a directory
// holding its files with their modes. When the task has a disk emptyDir,
// volumes/ is an ext4 file system of the task's ephemeral storage
// (volumes.img, loop-mounted), so the task's writes there are bounded by
// it, not by the host's disk. The runtimes bind the volumes into the
// containers, resolving a mount's sub-path inside its volume at each start
// (runtime.Mount.SubPath); release unmounts and removes them.

// defaultEphemeralStorageGiB sizes a task's disk volumes when the task
// names no ephemeral storage (the runtimes' default for its writable
// layer).
const defaultEphemeralStorageGiB = 20

// taskDir is the host directory of one task's own files.
func (a *Agent) taskDir(id string) string { return filepath.Join(a.cfg.TaskDir, id) }

// prepareVolumes materializes the task's volumes and returns each
// container's mounts by container name. It starts from an empty task
// directory, so nothing a task wrote before (a symbolic link) is in the way.
func (w *worker) prepareVolumes(ctx context.Context, t *task.Task) (map[string][]runtime.Mount, error) {
	if len(t.Volumes) == 0 {
		return nil, nil
	}
	if w.agent.cfg.TaskDir == "" {
		return nil, fmt.Errorf("the task has volumes but the agent has no TaskDir to keep them in")
	}
	dir := w.agent.taskDir(t.ID)
	if err := w.agent.removeTaskDir(t.ID); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "volumes")
	for _, d := range []string{w.agent.cfg.TaskDir, dir, root} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	if hasDiskEmptyDir(t) {
		size := int(t.EphemeralStorageGiB)
		if size <= 0 {
			size = defaultEphemeralStorageGiB
		}
		// Where loop devices or mkfs.ext4 are missing, the volumes stay on
		// the host's disk, as the runtimes' writable layers do then.
		if err := boundVolumes(ctx, dir, size); err != nil {
			w.agent.log.Warn("the task's disk volumes are not bounded by its ephemeral storage", "task", t.ID, "size_gib", size, "err", err)
			os.Remove(filepath.Join(dir, "volumes.img"))
		}
	}
	for _, v := range t.Volumes {
		if err := makeVolume(filepath.Join(root, v.Name), v, t.MemoryMiB, t.FSGroup); err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	out := map[string][]runtime.Mount{}
	for _, c := range t.Containers {
		for _, mp := range c.MountPoints {
			v := t.Volume(mp.SourceVolume)
			if v == nil {
				return nil, fmt.Errorf("container %q mounts volume %q, which the task does not have", c.Name, mp.SourceVolume)
			}
			// A Files volume (config maps, secrets) is always mounted
			// read-only, as the kubelet does: its files are the agent's,
			// and writes there would not be bounded as an emptyDir's are.
			m := runtime.Mount{Source: filepath.Join(root, mp.SourceVolume), Destination: mp.ContainerPath,
				ReadOnly: mp.ReadOnly || v.EmptyDir == nil}
			if mp.SubPath != "" {
				var err error
				if m.SubPath, err = subPath(m.Source, mp.SubPath, v.EmptyDir != nil, t.FSGroup); err != nil {
					return nil, fmt.Errorf("container %q: volume %q: subPath %q: %w", c.Name, mp.SourceVolume, mp.SubPath, err)
				}
			}
			out[c.Name] = append(out[c.Name], m)
		}
	}
	return out, nil
}

// hasDiskEmptyDir reports whether the task has an emptyDir on disk.
func hasDiskEmptyDir(t *task.Task) bool {
	for _, v := range t.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.Medium != task.MediumMemory {
			return true
		}
	}
	return false
}

// boundVolumes mounts a fresh ext4 file system of sizeGiB, kept in
// <dir>/volumes.img, at <dir>/volumes.
func boundVolumes(ctx context.Context, dir string, sizeGiB int) error {
	img, root := filepath.Join(dir, "volumes.img"), filepath.Join(dir, "volumes")
	if err := fsutil.MakeExt4Image(ctx, img, sizeGiB); err != nil {
		return err
	}
	if err := fsutil.MountLoop(img, root, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	// The root of the file system is the agent's, as the directory it
	// covers was; mkfs's lost+found is not a volume.
	if err := os.Chmod(root, 0o711); err != nil {
		return err
	}
	return os.Remove(filepath.Join(root, "lost+found"))
}

// makeVolume makes one volume's directory at dir and fills it; with an
// fsGroup, the volume is then group-owned by it (setOwnership).
func makeVolume(dir string, v task.Volume, taskMemMiB int64, fsGroup *uint32) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if e := v.EmptyDir; e != nil {
		if e.Medium == task.MediumMemory {
			size := e.SizeLimitMiB
			if size <= 0 {
				size = max(taskMemMiB, 1)
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
				"mode=0777,size="+strconv.FormatInt(size, 10)+"m"); err != nil {
				return fmt.Errorf("mounting a tmpfs of %d MiB: %w", size, err)
			}
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return err
		}
		return setOwnership(dir, fsGroup, false)
	}
	// Files: every path is resolved inside the volume (os.Root), so no
	// path and no symbolic link can lead out of it.
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, f := range v.Files {
		p := filepath.FromSlash(filepath.Clean(f.Path))
		if d := filepath.Dir(p); d != "." {
			if err := r.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		fh, err := r.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = fh.Write(f.Data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = r.Chmod(p, f.FileMode())
		}
		if err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	return setOwnership(dir, fsGroup, true)
}

// setOwnership gives the volume at dir to group fsGroup as the kubelet
// does: every file and directory group-owned by it, directories setgid
// (what the containers make inside stays the group's) and group rwx,
// files group rw; a read-only volume (Files: config maps, secrets) gets
// group r and x only. Nothing but the agent has written to dir yet, and
// nothing is followed: links are not made by the agent and are skipped.
func setOwnership(dir string, fsGroup *uint32, readOnly bool) error {
	if fsGroup == nil {
		return nil
	}
	gid := int(*fsGroup)
	fileMask, dirMask := os.FileMode(0o060), os.FileMode(0o070)
	if readOnly {
		fileMask, dirMask = 0o040, 0o050
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, gid); err != nil {
			return err
		}
		mode := fi.Mode()&(fs.ModePerm|fs.ModeSticky) | fileMask
		if d.IsDir() {
			mode = fi.Mode()&(fs.ModePerm|fs.ModeSticky) | dirMask | fs.ModeSetgid
		}
		return os.Chmod(p, mode)
	})
}

// subPath checks sub-path rel of the volume at dir and returns it, slash
// separated, for the runtime to resolve at each start. A missing sub-path
// is made a directory (0777 in an emptyDir, setgid with an fsGroup),
// without following any symbolic link on the way; an existing one must be
// a directory or a regular file (a config map key mounted on its own).
func subPath(dir, rel string, emptyDir bool, fsGroup *uint32) (string, error) {
	rel = filepath.Clean(filepath.FromSlash(rel))
	f, err := fsutil.OpenBeneath(dir, rel)
	if errors.Is(err, fs.ErrNotExist) {
		perm := fs.FileMode(0o755)
		if emptyDir {
			perm = 0o777
		}
		if fsGroup != nil {
			perm |= fs.ModeSetgid
		}
		if err = fsutil.MkdirAllBeneath(dir, rel, perm); err == nil {
			f, err = fsutil.OpenBeneath(dir, rel)
		}
	}
	if err != nil {
		return "", err
	}
	f.Close()
	return filepath.ToSlash(rel), nil
}

// releaseVolumes unmounts and removes the task's directory.
func (a *Agent) releaseVolumes(id string) error {
	if a.cfg.TaskDir == "" {
		return nil
	}
	return a.removeTaskDir(id)
}

func (a *Agent) removeTaskDir(id string) error {
	dir := a.taskDir(id)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, m := range mountsUnder(dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("task directory %s still has mounts %v; not removing it", dir, left)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the task's volumes: %w", err)
	}
	return nil
}

// reconcileTaskDirs removes the directories of tasks no longer placed
// here (they stopped while the agent was away).
func (a *Agent) reconcileTaskDirs(tasks []task.Task) {
	if a.cfg.TaskDir == "" {
		return
	}
	placed := map[string]bool{}
	for _, t := range tasks {
		placed[t.ID] = true
	}
	entries, _ := os.ReadDir(a.cfg.TaskDir)
	for _, e := range entries {
		if !e.IsDir() || placed[e.Name()] {
			continue
		}
		if err := a.removeTaskDir(e.Name()); err != nil {
			a.log.Warn("removing the directory of a task no longer placed here failed", "task", e.Name(), "err", err)
		}
	}
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	out := fsutil.MountsUnder(dir)
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}
