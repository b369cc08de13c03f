package guest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lookupUser resolves "name", "uid", "name:group" or "uid:gid" with the
// container's /etc/passwd and /etc/group.
func lookupUser(root, user string) (uid, gid uint32, home string, err error) {
	home = "/root"
	if user == "" {
		return 0, 0, home, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	passwd, err := readEtcFile(root, "etc/passwd")
	if err != nil {
		return 0, 0, "", err
	}
	found := false
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || (f[0] != u && f[2] != u) {
			continue
		}
		pu, _ := strconv.ParseUint(f[2], 10, 32)
		pg, _ := strconv.ParseUint(f[3], 10, 32)
		uid, gid, home, found = uint32(pu), uint32(pg), f[5], true
		break
	}
	if !found {
		n, perr := strconv.ParseUint(u, 10, 32)
		if perr != nil {
			return 0, 0, "", fmt.Errorf("user %q not found in /etc/passwd", u)
		}
		// As runc: a uid without an entry has group 0.
		uid, gid, home = uint32(n), 0, "/"
	}
	if hasGroup {
		groups, err := readEtcFile(root, "etc/group")
		if err != nil {
			return 0, 0, "", err
		}
		gfound := false
		for _, line := range strings.Split(string(groups), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 3 && (f[0] == g || f[2] == g) {
				n, _ := strconv.ParseUint(f[2], 10, 32)
				gid, gfound = uint32(n), true
				break
			}
		}
		if !gfound {
			n, perr := strconv.ParseUint(g, 10, 32)
			if perr != nil {
				return 0, 0, "", fmt.Errorf("group %q not found in /etc/group", g)
			}
			gid = uint32(n)
		}
	}
	return uid, gid, home, nil
}

// maxEtcFile bounds the /etc/passwd and /etc/group the agent reads from
// an image.
const maxEtcFile = 4 << 20

// readEtcFile reads a file of the container's image, resolved inside its
// root (symbolic links cannot lead out), without blocking (a FIFO or a
// device is refused, not opened for reading) and at most maxEtcFile
// bytes. A missing file reads as empty.
func readEtcFile(root, name string) ([]byte, error) {
	dirfd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("/%s of the image: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("/%s of the image is not a regular file (%s)", name, st.Mode().Type())
	}
	if st.Size() > maxEtcFile {
		return nil, fmt.Errorf("/%s of the image has %d bytes, over the limit of %d", name, st.Size(), maxEtcFile)
	}
	return io.ReadAll(io.LimitReader(f, maxEtcFile))
}
