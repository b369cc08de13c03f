package agent

import (
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
// holding its files with their modes. The runtimes bind them into the
// containers; release unmounts and removes them.

// taskDir is the host directory of one task's own files.
func (a *Agent) taskDir(id string) string { return filepath.Join(a.cfg.TaskDir, id) }

// prepareVolumes materializes the task's volumes and returns each
// container's mounts by container name. It starts from an empty task
// directory, so nothing a task wrote before (a symbolic link) is in the way.
func (w *worker) prepareVolumes(t *task.Task) (map[string][]runtime.Mount, error) {
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
	for _, v := range t.Volumes {
		if err := makeVolume(filepath.Join(root, v.Name), v, t.MemoryMiB); err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	out := map[string][]runtime.Mount{}
	for _, c := range t.Containers {
		for _, mp := range c.MountPoints {
			src := filepath.Join(root, mp.SourceVolume)
			if mp.SubPath != "" {
				var err error
				if src, err = subPath(src, mp.SubPath, t.Volume(mp.SourceVolume).EmptyDir != nil); err != nil {
					return nil, fmt.Errorf("container %q: volume %q: subPath %q: %w", c.Name, mp.SourceVolume, mp.SubPath, err)
				}
			}
			out[c.Name] = append(out[c.Name], runtime.Mount{Source: src, Destination: mp.ContainerPath, ReadOnly: mp.ReadOnly})
		}
	}
	return out, nil
}

// makeVolume makes one volume's directory at dir and fills it.
func makeVolume(dir string, v task.Volume, taskMemMiB int64) error {
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
		return os.Chmod(dir, 0o777)
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
	return nil
}

// subPath resolves rel inside the volume at dir, making it a directory
// when missing (0777 in an emptyDir), and returns its host path. A file of
// the volume may be mounted on its own (a config map key as one file).
func subPath(dir, rel string, emptyDir bool) (string, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer r.Close()
	rel = filepath.FromSlash(filepath.Clean(rel))
	fi, err := r.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		perm := fs.FileMode(0o755)
		if emptyDir {
			perm = 0o777
		}
		if err = r.MkdirAll(rel, perm); err == nil {
			err = r.Chmod(rel, perm)
		}
		if err == nil {
			fi, err = r.Lstat(rel)
		}
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return "", fmt.Errorf("is neither a directory nor a regular file")
	}
	// os.Root has resolved every component inside the volume, and nothing
	// but the agent writes there before the containers start.
	return filepath.Join(dir, rel), nil
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
