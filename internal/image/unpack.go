package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

// UnsafeLayerError reports a layer entry that was refused because extracting
// it could reach outside the layer's directory. The agent reports it as
// CannotPullContainerError.
type UnsafeLayerError struct {
	Layer  string // digest of the layer (or the archive being imported)
	Entry  string // the entry's name as it appears in the tar
	Reason string // e.g. "escapes the layer root"
}

func (e *UnsafeLayerError) Error() string {
	return fmt.Sprintf("layer %s: entry %q %s", e.Layer, e.Entry, e.Reason)
}

// Unwrap makes an unsafe layer an invalid argument (the image is at fault).
func (e *UnsafeLayerError) Unwrap() error { return errdefs.ErrInvalidArgument }

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// unpackOptions tunes one extraction.
type unpackOptions struct {
	layer string // name used in errors
	limit int64  // maximum uncompressed bytes (stream and file content)
	// maxEntries bounds the number of tar entries (0: no bound).
	maxEntries int
	// image, if set, is the allowance shared by every layer of the image.
	image *budget
	log   *slog.Logger // warnings about neutralised entries
	// plain restricts the archive to directories and regular files, written
	// with default modes and no ownership (used for OCI layout archives,
	// which are read by this process afterwards).
	plain bool
}

// unpacker extracts one tar stream below a directory without ever following
// a symlink on the host: every parent is opened component by component with
// O_NOFOLLOW relative to the directory's file descriptor, and every file is
// created with O_EXCL|O_NOFOLLOW.
//
// Layers are hostile input, so nothing outside the store's Root is ever
// written. The rules, which hold for every layer whatever its origin:
//
//   - Names are cleaned; a leading "/" is dropped (absolute names are
//     relative to the layer root, as in Docker); a name that climbs out of
//     the root ("../../etc/x", "/../x") is refused with *UnsafeLayerError.
//   - Symlinks are created as written, but one whose target leads outside
//     the root is refused. The check is lexical: relative targets are
//     resolved from the link's own directory, absolute ones from the layer
//     root (so "abs -> /etc" is allowed: it means the container's /etc).
//   - An entry whose parent path crosses a symlink or a non-directory
//     ("abs/passwd" after "abs -> /etc") is refused: a layer never writes
//     through a link, even one that stays inside.
//   - Hard links must name an entry extracted earlier in the same layer,
//     inside the root; others are refused.
//   - An entry replacing an earlier one of the same layer removes it first
//     (directories over directories are merged).
//   - Character and block devices are skipped with a warning (neutralised):
//     a container gets its devices from the runtime, never from an image.
//   - setuid and setgid bits are cleared on files (neutralised); setgid on
//     directories (group inheritance) and the sticky bit are kept.
//   - Extended attributes recorded in the tar (PAX SCHILY.xattr, including
//     security.capability file capabilities and any trusted.overlay.*) are
//     not applied (neutralised).
//   - FIFOs are created; ownership is applied with lchown semantics, file
//     modes otherwise kept, modification times kept.
//   - OCI whiteouts become overlayfs ones: ".wh.<name>" is a 0:0 character
//     device named <name>, ".wh..wh..opq" sets trusted.overlay.opaque=y on
//     its directory; other ".wh..wh." AUFS metadata is ignored.
//   - Each layer's uncompressed size is bounded by Config.MaxLayerSize
//     (10 GiB by default), so a decompression bomb fails with
//     errdefs.ErrLimitExceeded; so is the sum of what an image's layers
//     unpack to (Config.MaxImageSize, 32 GiB), a layer's number of entries
//     (Config.MaxLayerEntries, 1Mi), an entry's name (MaxPathLength, 4096
//     bytes, components MaxNameLength, 255) and depth (MaxPathDepth, 256)
//     and a symlink's target (4096 bytes).
type unpacker struct {
	o         unpackOptions
	root      int                 // fd of the destination directory
	extracted map[string]bool     // non-directory entries written so far (hardlink targets)
	dirTimes  []dirTime           // directory mtimes, applied last
	written   int64               // bytes written to files
	stream    *countingReader     // bytes read from the stream
	buf       []byte              // copy buffer
	warned    map[string]struct{} // one warning per kind
}

type dirTime struct {
	path  string
	mtime time.Time
}

// countingReader counts bytes and fails once more than limit have been
// read, or the image's allowance is spent.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
	err   error
	image *budget
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.limit {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, c.err
	}
	if berr := c.image.take(int64(n)); berr != nil {
		return n, berr
	}
	return n, err
}

// unpack extracts the uncompressed tar stream r into dir, which must exist
// and be empty. It reads r to its end (so a caller hashing r sees every
// byte). On error dir is left partly filled; the caller removes it.
func unpack(ctx context.Context, r io.Reader, dir string, o unpackOptions) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	limitErr := errdefs.LimitExceeded("layer %s is larger than the %d-byte limit for an uncompressed layer; raise Config.MaxLayerSize if the image is genuine", o.layer, o.limit)
	u := &unpacker{
		o:         o,
		root:      fd,
		extracted: map[string]bool{},
		stream:    &countingReader{r: r, limit: o.limit, err: limitErr, image: o.image},
		buf:       make([]byte, 128<<10),
		warned:    map[string]struct{}{},
	}
	tr := tar.NewReader(u.stream)
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if entries++; o.maxEntries > 0 && entries > o.maxEntries {
			return errdefs.LimitExceeded("layer %s has more than %d entries (Config.MaxLayerEntries)", o.layer, o.maxEntries)
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags names such as
		// "../x" but still returns the header; our own checks decide.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			if errors.Is(err, errdefs.ErrLimitExceeded) {
				return err
			}
			return fmt.Errorf("layer %s: read tar: %w", o.layer, err)
		}
		if err := u.entry(tr, hdr); err != nil {
			return err
		}
	}
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		if err := u.setTimes(d.path, d.mtime); err != nil {
			return err
		}
	}
	// Drain the end-of-archive padding so that the caller's digest covers
	// the whole stream.
	if _, err := io.Copy(io.Discard, u.stream); err != nil {
		if errors.Is(err, errdefs.ErrLimitExceeded) {
			return err
		}
		return fmt.Errorf("layer %s: read: %w", o.layer, err)
	}
	return nil
}

func (u *unpacker) unsafe(entry, format string, args ...any) error {
	return &UnsafeLayerError{Layer: u.o.layer, Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

func (u *unpacker) warnOnce(kind string, msg string, args ...any) {
	if _, ok := u.warned[kind]; ok {
		u.o.log.Debug(msg, args...)
		return
	}
	u.warned[kind] = struct{}{}
	u.o.log.Warn(msg, args...)
}

// cleanEntry turns a tar name into a clean path relative to the root: leading
// slashes are dropped (absolute names are relative to the root, as Docker
// does) and a path that climbs out of the root is refused.
func cleanEntry(name string) (string, bool) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", false
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// checkName bounds an entry's name and link target as the kernel would
// (NAME_MAX, PATH_MAX), and its depth, with an error that says so.
func (u *unpacker) checkName(hdr *tar.Header, p string) error {
	if len(hdr.Name) > MaxPathLength {
		return errdefs.LimitExceeded("layer %s: entry %.64q... has a %d-byte name; names are limited to %d bytes", u.o.layer, hdr.Name, len(hdr.Name), MaxPathLength)
	}
	if len(hdr.Linkname) > MaxPathLength {
		return errdefs.LimitExceeded("layer %s: entry %q links to a %d-byte target; link targets are limited to %d bytes", u.o.layer, hdr.Name, len(hdr.Linkname), MaxPathLength)
	}
	depth := 0
	for c := range strings.SplitSeq(p, "/") {
		if len(c) > MaxNameLength {
			return errdefs.LimitExceeded("layer %s: entry %.64q... has a %d-byte path component; components are limited to %d bytes", u.o.layer, hdr.Name, len(c), MaxNameLength)
		}
		depth++
	}
	if depth > MaxPathDepth {
		return errdefs.LimitExceeded("layer %s: entry %.64q... is %d directories deep; paths are limited to %d components", u.o.layer, hdr.Name, depth, MaxPathDepth)
	}
	return nil
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	p, ok := cleanEntry(hdr.Name)
	if !ok {
		return u.unsafe(hdr.Name, "escapes the layer root")
	}
	if err := u.checkName(hdr, p); err != nil {
		return err
	}
	dirPart, base := path.Split(p)
	if p == "." {
		dirPart, base = "", ""
	}

	if u.o.plain {
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeXGlobalHeader:
		default:
			return u.unsafe(hdr.Name, "has type %q; an OCI layout archive may hold only directories and regular files", string(hdr.Typeflag))
		}
	} else if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, dirPart, base)
	}

	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if base == "" && hdr.Typeflag != tar.TypeDir {
		return u.unsafe(hdr.Name, "names the layer root but is not a directory")
	}

	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		u.warnOnce("device", "skipping device node in layer (device nodes are never created from images)",
			"layer", u.o.layer, "entry", hdr.Name)
		return nil
	case tar.TypeGNUSparse, tar.TypeCont:
		// Content is read (holes expanded) by archive/tar: a regular file.
		hdr.Typeflag = tar.TypeReg
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		u.warnOnce("type-"+string(hdr.Typeflag), "skipping tar entry of unsupported type",
			"layer", u.o.layer, "entry", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}

	parent, err := u.openParent(hdr.Name, dirPart, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)

	if hdr.Typeflag == tar.TypeDir {
		return u.dir(hdr, p, parent, base)
	}

	// Any non-directory entry replaces what the layer wrote there before.
	if err := removeAt(parent, base); err != nil {
		return fmt.Errorf("layer %s: entry %q: replace existing: %w", u.o.layer, hdr.Name, err)
	}
	delete(u.extracted, p)

	switch hdr.Typeflag {
	case tar.TypeReg: // tar.Reader reports the legacy regular-file flag as TypeReg
		if err := u.file(tr, hdr, parent, base); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := u.symlink(hdr, dirPart, parent, base); err != nil {
			return err
		}
	case tar.TypeLink:
		// A hard link shares the target's inode: no ownership or times of
		// its own.
		if err := u.hardlink(hdr, p, parent, base); err != nil {
			return err
		}
		u.extracted[p] = true
		return nil
	case tar.TypeFifo:
		if err := unix.Mknodat(parent, base, unix.S_IFIFO|u.mode(hdr, false), 0); err != nil {
			return fmt.Errorf("layer %s: entry %q: mkfifo: %w", u.o.layer, hdr.Name, err)
		}
		if err := unix.Fchmodat(parent, base, u.mode(hdr, false), 0); err != nil {
			// Fchmodat follows symlinks, but base is the fifo we just made
			// and nothing else writes to this directory.
			return fmt.Errorf("layer %s: entry %q: chmod: %w", u.o.layer, hdr.Name, err)
		}
	}
	if err := u.chownAt(hdr, parent, base); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(parent, base, times(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("layer %s: entry %q: set times: %w", u.o.layer, hdr.Name, err)
	}
	u.extracted[p] = true
	return nil
}

// mode returns the permission bits to apply: setuid and setgid are cleared
// from files (neutralised); the sticky bit and rwx bits are kept.
func (u *unpacker) mode(hdr *tar.Header, dir bool) uint32 {
	if u.o.plain {
		if dir {
			return 0o755
		}
		return 0o644
	}
	m := uint32(hdr.Mode) & 0o7777
	if dir {
		// setgid on a directory only makes new files inherit its group:
		// kept. setuid means nothing on a Linux directory: dropped.
		return m &^ unix.S_ISUID
	}
	if m&(unix.S_ISUID|unix.S_ISGID) != 0 {
		u.o.log.Debug("clearing setuid/setgid bits", "layer", u.o.layer, "entry", hdr.Name)
	}
	return m &^ (unix.S_ISUID | unix.S_ISGID)
}

func times(mtime time.Time) []unix.Timespec {
	ts, _ := unix.TimeToTimespec(mtime)
	return []unix.Timespec{ts, ts}
}

// openParent opens the directory dirPart (relative to the root, clean, no
// "..") component by component, never following a symlink. Missing
// directories are created (0755, root-owned) when create is set; a
// component that is a symlink or not a directory is refused.
func (u *unpacker) openParent(entry, dirPart string, create bool) (int, error) {
	fd, err := unix.Dup(u.root)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(strings.Trim(dirPart, "/"), "/") {
		if c == "" || c == "." {
			continue
		}
		if c == ".." { // cleanEntry rules this out; never rely on it alone
			unix.Close(fd)
			return -1, u.unsafe(entry, "escapes the layer root")
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			var st unix.Stat_t
			isLink := unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
			unix.Close(fd)
			switch {
			case isLink || errors.Is(err, unix.ELOOP):
				return -1, u.unsafe(entry, "has a parent %q that is a symlink; writing through symlinks is refused", c)
			case errors.Is(err, unix.ENOTDIR):
				return -1, u.unsafe(entry, "has a parent %q that is not a directory", c)
			case errors.Is(err, unix.ENOENT):
				return -1, u.unsafe(entry, "has a missing parent %q", c)
			}
			return -1, fmt.Errorf("layer %s: entry %q: open parent %q: %w", u.o.layer, entry, c, err)
		}
		unix.Close(fd)
		fd = next
	}
	return fd, nil
}

func (u *unpacker) dir(hdr *tar.Header, p string, parent int, base string) error {
	var fd int
	var err error
	if base == "" {
		fd, err = unix.Dup(u.root)
	} else {
		var st unix.Stat_t
		if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(parent, base); err != nil {
				return fmt.Errorf("layer %s: entry %q: replace existing: %w", u.o.layer, hdr.Name, err)
			}
			delete(u.extracted, p)
		}
		if err := unix.Mkdirat(parent, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("layer %s: entry %q: mkdir: %w", u.o.layer, hdr.Name, err)
		}
		fd, err = unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("layer %s: entry %q: open directory: %w", u.o.layer, hdr.Name, err)
	}
	defer unix.Close(fd)
	if !u.o.plain {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("layer %s: entry %q: chown: %w", u.o.layer, hdr.Name, err)
		}
	}
	if err := unix.Fchmod(fd, u.mode(hdr, true)); err != nil {
		return fmt.Errorf("layer %s: entry %q: chmod: %w", u.o.layer, hdr.Name, err)
	}
	if !u.o.plain {
		u.dirTimes = append(u.dirTimes, dirTime{path: p, mtime: hdr.ModTime})
	}
	return nil
}

func (u *unpacker) file(tr *tar.Reader, hdr *tar.Header, parent int, base string) error {
	if hdr.Size < 0 || u.written+hdr.Size > u.o.limit {
		return u.stream.err
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("layer %s: entry %q: create: %w", u.o.layer, hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	n, err := io.CopyBuffer(onlyWriter{f}, tr, u.buf)
	u.written += n
	if err != nil {
		if errors.Is(err, errdefs.ErrLimitExceeded) {
			return err
		}
		return fmt.Errorf("layer %s: entry %q: write: %w", u.o.layer, hdr.Name, err)
	}
	if u.written > u.o.limit {
		return u.stream.err
	}
	if !u.o.plain {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("layer %s: entry %q: chown: %w", u.o.layer, hdr.Name, err)
		}
	}
	// After chown, which would clear setuid anyway; mode() clears it too.
	if err := unix.Fchmod(fd, u.mode(hdr, false)); err != nil {
		return fmt.Errorf("layer %s: entry %q: chmod: %w", u.o.layer, hdr.Name, err)
	}
	return f.Close()
}

// onlyWriter hides *os.File's ReadFrom so that io.CopyBuffer uses our buffer
// and the counting reader sees every byte.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func (u *unpacker) symlink(hdr *tar.Header, dirPart string, parent int, base string) error {
	target := hdr.Linkname
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return u.unsafe(hdr.Name, "is a symlink with an empty or invalid target")
	}
	if symlinkEscapes(dirPart, target) {
		return u.unsafe(hdr.Name, "is a symlink to %q, which escapes the layer root", target)
	}
	if err := unix.Symlinkat(target, parent, base); err != nil {
		return fmt.Errorf("layer %s: entry %q: symlink: %w", u.o.layer, hdr.Name, err)
	}
	return nil
}

// symlinkEscapes reports whether a symlink in dirPart (relative to the
// layer root) to target leads out of the root. Absolute targets are
// resolved from the layer root, which path.Clean of "/..." can never
// leave; relative ones from the link's directory.
func symlinkEscapes(dirPart, target string) bool {
	var resolved string
	if path.IsAbs(target) {
		resolved = path.Clean(target)[1:]
	} else {
		resolved = path.Clean(path.Join(dirPart, target))
	}
	return resolved == ".." || strings.HasPrefix(resolved, "../")
}

func (u *unpacker) hardlink(hdr *tar.Header, p string, parent int, base string) error {
	t, ok := cleanEntry(hdr.Linkname)
	if !ok {
		return u.unsafe(hdr.Name, "is a hard link to %q, which escapes the layer root", hdr.Linkname)
	}
	if t == p || !u.extracted[t] {
		return u.unsafe(hdr.Name, "is a hard link to %q, which is not an entry extracted earlier in this layer", hdr.Linkname)
	}
	tdir, tbase := path.Split(t)
	tparent, err := u.openParent(hdr.Name, tdir, false)
	if err != nil {
		return err
	}
	defer unix.Close(tparent)
	// A hard link to a symlink is the same symlink in another directory,
	// where its relative target may lead elsewhere: check it from there.
	var st unix.Stat_t
	if err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		buf := make([]byte, MaxPathLength+1)
		n, err := unix.Readlinkat(tparent, tbase, buf)
		if err != nil {
			return fmt.Errorf("layer %s: entry %q: read symlink %q: %w", u.o.layer, hdr.Name, hdr.Linkname, err)
		}
		if dirPart, _ := path.Split(p); symlinkEscapes(dirPart, string(buf[:n])) {
			return u.unsafe(hdr.Name, "is a hard link to the symlink %q, whose target %q escapes the layer root from %q", hdr.Linkname, buf[:n], p)
		}
	}
	// Flags 0: linkat does not follow a symlink at the target.
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("layer %s: entry %q: hard link to %q: %w", u.o.layer, hdr.Name, hdr.Linkname, err)
	}
	return nil
}

func (u *unpacker) chownAt(hdr *tar.Header, parent int, base string) error {
	if u.o.plain {
		return nil
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("layer %s: entry %q: chown: %w", u.o.layer, hdr.Name, err)
	}
	return nil
}

// whiteout turns an OCI whiteout entry into its overlayfs form.
func (u *unpacker) whiteout(hdr *tar.Header, dirPart, base string) error {
	if base == whiteoutOpaque {
		dfd, err := u.openParent(hdr.Name, dirPart, true)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := unix.Fsetxattr(dfd, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("layer %s: entry %q: set %s: %w", u.o.layer, hdr.Name, opaqueXattr, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		// Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return u.unsafe(hdr.Name, "is a whiteout of an invalid name")
	}
	parent, err := u.openParent(hdr.Name, dirPart, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := removeAt(parent, name); err != nil {
		return fmt.Errorf("layer %s: entry %q: replace existing: %w", u.o.layer, hdr.Name, err)
	}
	delete(u.extracted, path.Join(dirPart, name))
	// An overlayfs whiteout is a 0:0 character device owned by root.
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("layer %s: entry %q: make whiteout: %w", u.o.layer, hdr.Name, err)
	}
	if err := unix.Fchownat(parent, name, 0, 0, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("layer %s: entry %q: chown whiteout: %w", u.o.layer, hdr.Name, err)
	}
	return nil
}

func (u *unpacker) setTimes(p string, mtime time.Time) error {
	if p == "." {
		if err := unix.UtimesNanoAt(u.root, ".", times(mtime), 0); err != nil {
			return fmt.Errorf("layer %s: set times of root: %w", u.o.layer, err)
		}
		return nil
	}
	dirPart, base := path.Split(p)
	parent, err := u.openParent(p, dirPart, false)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := unix.UtimesNanoAt(parent, base, times(mtime), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("layer %s: entry %q: set times: %w", u.o.layer, p, err)
	}
	return nil
}

// removeAt removes name (and, for a directory, everything below it) from
// the directory dirfd without following symlinks. A missing name is not an
// error.
func removeAt(dirfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, 0)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		if err := removeAt(int(d.Fd()), n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}
