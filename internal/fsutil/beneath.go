package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The helpers below resolve a path inside a directory that someone else
// (a sandbox) may write to, so that no symbolic link, "..", magic link or
// rename race can lead the caller out of it: every component is resolved
// by the kernel (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS)
// relative to a descriptor of the directory, and what was opened is used
// by descriptor, never by path again.

// beneath is how every component below the trusted directory is resolved.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// checkRel accepts a relative, clean, slash-separated path that stays
// inside its directory ("." is the directory itself).
func checkRel(rel string) error {
	if rel == "" || filepath.IsAbs(rel) || filepath.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("path %q must be relative, clean and stay inside its directory", rel)
	}
	return nil
}

// openDir opens the trusted directory dir itself as an O_PATH descriptor.
func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// OpenBeneath opens rel inside directory dir as an O_PATH descriptor,
// without following any symbolic link (rel's last component included),
// without crossing a mount point, and without leaving dir. A symbolic link
// on the way is an error wrapping unix.ELOOP, a missing component one
// wrapping fs.ErrNotExist. Only a directory or a regular file is
// accepted. The file is the caller's to close.
func OpenBeneath(dir, rel string) (*os.File, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	dfd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	// No O_NOFOLLOW: with O_PATH it would open a final symbolic link
	// itself; RESOLVE_NO_SYMLINKS refuses it (ELOOP).
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: beneath})
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: rel, Err: err}
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is neither a directory nor a regular file", rel)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// MkdirAllBeneath makes directory rel inside dir, each missing component
// with mode perm (set exactly, whatever the umask), resolving every
// component as OpenBeneath does: a symbolic link on the way is an error,
// never followed. An existing component must be a directory.
func MkdirAllBeneath(dir, rel string, perm os.FileMode) error {
	if err := checkRel(rel); err != nil {
		return err
	}
	cur, err := openDir(dir)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath}
	for _, name := range strings.Split(rel, "/") {
		if name == "." {
			continue
		}
		fd, err := unix.Openat2(cur, name, how)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(cur, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return &os.PathError{Op: "mkdirat", Path: rel, Err: err}
			}
			// Set the mode through a descriptor of what was made (fchmod
			// does not follow anything, chmod by name would).
			rfd, oerr := unix.Openat2(cur, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: beneath})
			if oerr != nil {
				return &os.PathError{Op: "openat2", Path: rel, Err: oerr}
			}
			cerr := unix.Fchmod(rfd, uint32(perm.Perm())|modeBits(perm))
			unix.Close(rfd)
			if cerr != nil {
				return &os.PathError{Op: "fchmod", Path: rel, Err: cerr}
			}
			fd, err = unix.Openat2(cur, name, how)
		}
		if err != nil {
			return &os.PathError{Op: "openat2", Path: rel, Err: err}
		}
		unix.Close(cur)
		cur = fd
	}
	return nil
}

// modeBits turns the setuid, setgid and sticky bits of an os.FileMode
// into chmod(2)'s.
func modeBits(m os.FileMode) uint32 {
	var b uint32
	if m&os.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	return b
}

// BindBeneath opens rel inside dir as OpenBeneath does and bind-mounts
// what it opened (through /proc/self/fd, never by path) onto target,
// which it makes when missing: a directory, or an empty file for a
// regular file. target must be in a directory only the caller can write.
// Unbind undoes it.
func BindBeneath(dir, rel, target string) error {
	f, err := OpenBeneath(dir, rel)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = os.Mkdir(target, 0o700)
	} else {
		var t *os.File
		if t, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			err = t.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), target, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind-mount " + rel + " onto", Path: target, Err: err}
	}
	return nil
}

// Unbind unmounts every mount stacked on target and removes target; a
// missing target is no error.
func Unbind(target string) error {
	for {
		err := unix.Unmount(target, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return &os.PathError{Op: "unmount", Path: target, Err: err}
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
