package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/guestproto"
)

// volumesDir holds the sandbox's volumes on the writable disk (a memory
// volume is a tmpfs mounted there).
const volumesDir = rwMount + "/.volumes"

// setupVolumes makes each volume: a tmpfs or a directory of the writable
// disk, holding the volume's entries with their modes.
func setupVolumes(vols []guestproto.Volume) error {
	for _, v := range vols {
		if err := checkRel(v.Name); err != nil || strings.Contains(v.Name, "/") {
			return fmt.Errorf("volume name %q is not a plain name", v.Name)
		}
		dir := filepath.Join(volumesDir, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if v.TmpfsMiB > 0 {
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
				"mode=0777,size="+strconv.FormatInt(v.TmpfsMiB, 10)+"m"); err != nil {
				return fmt.Errorf("volume %s: tmpfs: %w", v.Name, err)
			}
		}
		for _, e := range v.Entries {
			if e.Path != "." {
				if err := checkRel(e.Path); err != nil {
					return fmt.Errorf("volume %s: %w", v.Name, err)
				}
			}
			p := filepath.Join(dir, filepath.FromSlash(e.Path))
			mode := e.Mode & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
			var err error
			if e.Dir {
				err = os.MkdirAll(p, 0o755)
			} else {
				// Parents are listed before their files, and nothing else
				// writes here before the containers start: no symbolic
				// link can be in the way.
				err = os.WriteFile(p, e.Data, 0o600)
			}
			if err == nil && e.GID != 0 {
				err = os.Lchown(p, -1, int(e.GID))
			}
			if err == nil {
				err = os.Chmod(p, mode)
			}
			if err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
	}
	return nil
}

// checkRel accepts a relative, clean path without "..".
func checkRel(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("path %q must be relative, clean and stay inside the volume", p)
	}
	return nil
}

// mountVolumes binds the container's mounts into its root, resolving each
// destination inside root (symbolic links of the image stay inside it) and
// making the missing directories.
func mountVolumes(root string, mounts []guestproto.Mount) error {
	for _, m := range mounts {
		if checkRel(m.Volume) != nil || strings.Contains(m.Volume, "/") {
			return fmt.Errorf("mount at %s: volume name %q is not a plain name", m.Destination, m.Volume)
		}
		sub := "."
		if m.SubPath != "" {
			if err := checkRel(m.SubPath); err != nil {
				return fmt.Errorf("mount at %s: %w", m.Destination, err)
			}
			sub = m.SubPath
		}
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination || m.Destination == "/" {
			return fmt.Errorf("mount destination %q must be an absolute, clean path", m.Destination)
		}
		rel := strings.TrimPrefix(m.Destination, "/")
		// The sub-path is resolved inside the volume, which containers
		// write to, without following any link, and bound by descriptor:
		// a link there (to the guest agent's root) fails the mount.
		src, err := fsutil.OpenBeneath(filepath.Join(volumesDir, m.Volume), sub)
		if err != nil {
			return fmt.Errorf("mount at %s: sub-path %q of its volume: %w", m.Destination, m.SubPath, err)
		}
		fi, err := src.Stat()
		if err != nil {
			src.Close()
			return fmt.Errorf("mount at %s: %w", m.Destination, err)
		}
		var fd int
		if fi.IsDir() {
			fd, err = mkdirInRoot(root, rel)
		} else {
			fd, err = mkfileInRoot(root, rel)
		}
		if err != nil {
			src.Close()
			return fmt.Errorf("mount at %s: %w", m.Destination, err)
		}
		target := "/proc/self/fd/" + strconv.Itoa(fd)
		err = unix.Mount("/proc/self/fd/"+strconv.Itoa(int(src.Fd())), target, "", unix.MS_BIND, "")
		unix.Close(fd)
		src.Close()
		if err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Volume, m.Destination, err)
		}
		if m.ReadOnly {
			// Reopen: the descriptor held the directory under the mount.
			fd, err := openInRoot(root, rel)
			if err != nil {
				return fmt.Errorf("mount at %s: %w", m.Destination, err)
			}
			err = unix.Mount("", "/proc/self/fd/"+strconv.Itoa(fd), "",
				unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("read-only mount at %s: %w", m.Destination, err)
			}
		}
	}
	return nil
}

func openInRoot(root, rel string) (int, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	return unix.Openat2(rootfd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
}

// mkfileInRoot opens file rel of root as an O_PATH descriptor, making its
// directories and an empty file when missing, resolved as mkdirInRoot.
func mkfileInRoot(root, rel string) (int, error) {
	dir, base := path.Split(rel)
	var parent int
	var err error
	if dir == "" {
		parent, err = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		parent, err = mkdirInRoot(root, strings.TrimSuffix(dir, "/"))
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	fd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		nfd, cerr := unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if cerr != nil && !errors.Is(cerr, unix.EEXIST) {
			return -1, cerr
		}
		if cerr == nil {
			unix.Close(nfd)
		}
		fd, err = unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a regular file in the image", rel)
	}
	return fd, nil
}

// mkdirInRoot opens directory rel of root as an O_PATH descriptor, making
// each missing component, with every component resolved as if root were
// "/".
func mkdirInRoot(root, rel string) (int, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	cur := "."
	for _, name := range strings.Split(rel, "/") {
		next := path.Join(cur, name)
		fd, err := unix.Openat2(rootfd, next, how)
		if errors.Is(err, unix.ENOENT) {
			parent, perr := unix.Openat2(rootfd, cur, how)
			if perr != nil {
				return -1, perr
			}
			merr := unix.Mkdirat(parent, name, 0o755)
			unix.Close(parent)
			if merr != nil && !errors.Is(merr, unix.EEXIST) {
				return -1, merr
			}
			fd, err = unix.Openat2(rootfd, next, how)
		}
		if err != nil {
			return -1, err
		}
		if next == rel {
			return fd, nil
		}
		unix.Close(fd)
		cur = next
	}
	return -1, fmt.Errorf("empty path")
}
