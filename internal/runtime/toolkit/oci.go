package toolkit

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/seccomp"
)

// ociVersion is the version of the runtime spec the bundles declare; runc
// 1.1 speaks 1.0.2 and newer ones read it too.
const ociVersion = "1.0.2"

// defaultPath is the PATH given to containers without one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BundleParams is what goes into one container's config.json beyond its
// ContainerSpec.
type BundleParams struct {
	ID, Name string // the sandbox and the container
	// Home names the sandbox's cgroup when it is not ID (Record.HomeID:
	// a claimed warm sandbox's); empty means ID.
	Home       string
	Rootfs     string
	Hostname   string
	NetNSPath  string
	EtcDir     string // hosts, hostname, resolv.conf, bind-mounted read-only
	HostNofile uint64 // the agent's RLIMIT_NOFILE hard limit (HostLimits)
	User       specs.User
	// InitPath is the host's static init (tini-static, FindInit), bound
	// read-only at /sbin/vessel-init in containers whose Security.Init is
	// set.
	InitPath string
}

// initDestination is where a container's init is bound, read-only.
const initDestination = "/sbin/vessel-init"

// OCISpec returns container c's OCI spec as the conmon-backed back ends
// run it, in the cgroup vessel/<ID>/<Name>: the sandbox's hostname (also
// as HOSTNAME unless c sets it), its capabilities (the default
// set when c.Security.Capabilities is nil), the seccomp allow-list for
// them, no new privileges, masked and read-only /proc and /sys paths,
// RLIMIT_NOFILE, its root read-only when asked, its supplemental groups,
// and with Security.Init an init (tini) as PID 1 that runs c.Args (an init
// asked for without InitPath is an error of kind errdefs.ErrUnavailable). There is
// no RLIMIT_NPROC: the host counts it per uid across every task of that
// uid, and the sandbox's pids cgroup already bounds its processes.
func OCISpec(c runtime.ContainerSpec, p BundleParams) (*specs.Spec, error) {
	env := append([]string(nil), c.Env...)
	hasPath, hasHostname := false, false
	for _, e := range env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
		hasHostname = hasHostname || strings.HasPrefix(e, "HOSTNAME=")
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	// As container runtimes do (and the micro-VM's guest agent): the
	// sandbox's hostname, unless the container sets its own.
	if !hasHostname && p.Hostname != "" {
		env = append(env, "HOSTNAME="+p.Hostname)
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	soft, hard := c.NofileSoft, c.NofileHard
	if hard == 0 {
		hard = min(65535, p.HostNofile)
	}
	hard = min(hard, p.HostNofile)
	if soft == 0 {
		soft = 1024
	}
	soft = min(soft, hard)
	caps := c.Security.Capabilities
	if caps == nil {
		caps = runtime.DefaultCapabilities
	}
	caps = append([]string{}, caps...)
	profile, err := seccomp.Profile(caps)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile for %v: %w", caps, err)
	}
	user := p.User
	user.AdditionalGids = append(append([]uint32(nil), user.AdditionalGids...), c.Security.SupplementalGroups...)
	args := c.Args
	if c.Security.Init {
		if p.InitPath == "" {
			return nil, errdefs.Unavailable("container %q asks for an init process, but this host has none (install Debian's tini package: /usr/bin/tini-static)", c.Name)
		}
		// -s: reap as a subreaper too, should the init not be PID 1 of
		// the container's namespace.
		args = append([]string{initDestination, "-s", "--"}, c.Args...)
	}

	netns := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNSPath}
	s := &specs.Spec{
		Version: ociVersion,
		Process: &specs.Process{
			Args: args,
			Env:  env,
			Cwd:  cwd,
			User: user,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: soft, Hard: hard},
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: p.Rootfs, Readonly: c.Security.ReadOnlyRootfs},
		Hostname: p.Hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + ContainerCgroup(cmp.Or(p.Home, p.ID), p.Name),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace}, netns,
			},
			MaskedPaths:   runtime.MaskedPaths,
			ReadonlyPaths: runtime.ReadonlyPaths,
			Seccomp:       profile,
		},
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: p.EtcDir + "/" + f,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	// The task's volumes, after the defaults so that one may cover a
	// default mount (an emptyDir at /dev/shm). runc resolves each
	// destination inside rootfs and makes it when missing.
	for i, m := range c.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: m.Destination, Type: "bind", Source: mountSource(p.Rootfs, i, m),
			Options: []string{"rbind", "rprivate", mode, "nosuid", "nodev"},
		})
	}
	// Last, so that no volume covers it.
	if c.Security.Init {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: initDestination, Type: "bind", Source: p.InitPath,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	return s, nil
}

// maxUserFileSize bounds the image's /etc/passwd and /etc/group: larger
// ones are refused rather than read.
const maxUserFileSize = 4 << 20

// checkUserFiles refuses an image whose /etc/passwd or /etc/group exists
// but is not a regular file (a named pipe would block whoever opens it, a
// device never end) or is larger than maxUserFileSize: the OCI runtime
// reads both when it starts the container, whatever its user. Errors are
// of kind errdefs.ErrInvalidArgument.
func checkUserFiles(rootfs string) error {
	for _, path := range []string{"/etc/passwd", "/etc/group"} {
		f, err := openUserFile(rootfs, path)
		if err != nil {
			return err
		}
		if f != nil {
			f.Close()
		}
	}
	return nil
}

// openUserFile opens path (/etc/passwd or /etc/group) inside rootfs, with
// rootfs as its root so that symbolic links in the image cannot lead
// outside it, without blocking (O_NONBLOCK: a named pipe opens at once),
// and returns it when it is a regular file of at most maxUserFileSize
// bytes; nil when there is none. Other files are an error of kind
// errdefs.ErrInvalidArgument.
func openUserFile(rootfs, path string) (*os.File, error) {
	dirfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("root file system %s: %w", rootfs, err)
	}
	defer unix.Close(dirfd)
	// O_PATH first: nothing is opened (a device's driver never sees an
	// open, a named pipe does not block) until the file is known regular.
	pfd, err := unix.Openat2(dirfd, strings.TrimPrefix(path, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil, nil
	}
	if err != nil {
		return nil, errdefs.InvalidArgument("the image's %s cannot be opened: %v", path, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, fmt.Errorf("the image's %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errdefs.InvalidArgument("the image's %s is %s, not a regular file; make it a regular file or remove it",
			path, fileType(st.Mode))
	}
	if st.Size > maxUserFileSize {
		return nil, errdefs.InvalidArgument("the image's %s has %d bytes, more than the %d accepted", path, st.Size, maxUserFileSize)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("the image's %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	return f, nil
}

// fileType names the type of a file of mode m, as stat(2) gives it.
func fileType(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("of type %#o", m&unix.S_IFMT)
}

// resolveUser turns a container's User ("", "uid", "uid:gid", "name",
// "name:group") into numeric IDs, reading names from the container's root
// file system (its /etc/passwd and /etc/group, resolved inside rootfs). A
// uid the image does not define gets gid 0, as with Docker.
func resolveUser(rootfs, user string) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	var out specs.User
	var primary uint32
	if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		out.UID = uint32(n)
		primary = 0
		e, ok, err := lookup(rootfs, "/etc/passwd", func(f []string) bool { return f[2] == u })
		if err != nil {
			return out, err
		}
		if ok {
			if gid, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				primary = uint32(gid)
			}
		}
	} else {
		e, ok, err := lookup(rootfs, "/etc/passwd", func(f []string) bool { return f[0] == u })
		if err != nil {
			return out, err
		}
		if !ok || len(e) < 4 {
			return out, errdefs.InvalidArgument("user %q is not in the image's /etc/passwd: use a numeric uid[:gid] or a name the image defines", u)
		}
		uid, err1 := strconv.ParseUint(e[2], 10, 32)
		gid, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			return out, errdefs.InvalidArgument("user %q has a malformed /etc/passwd entry in the image", u)
		}
		out.UID, primary = uint32(uid), uint32(gid)
	}
	out.GID = primary
	if hasGroup {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			out.GID = uint32(n)
		} else {
			e, ok, err := lookup(rootfs, "/etc/group", func(f []string) bool { return f[0] == g })
			if err != nil {
				return out, err
			}
			if !ok || len(e) < 3 {
				return out, errdefs.InvalidArgument("group %q is not in the image's /etc/group: use a numeric gid or a name the image defines", g)
			}
			gid, err := strconv.ParseUint(e[2], 10, 32)
			if err != nil {
				return out, errdefs.InvalidArgument("group %q has a malformed /etc/group entry in the image", g)
			}
			out.GID = uint32(gid)
		}
	}
	return out, nil
}

// lookup returns the first colon-separated entry of /etc/passwd or
// /etc/group in rootfs that match accepts (entries with at least 4 fields
// for passwd, 3 for group); ok is false when there is none or no file.
// The file is opened as openUserFile does; an error says why it cannot be
// read.
func lookup(rootfs, path string, match func([]string) bool) (entry []string, ok bool, err error) {
	f, err := openUserFile(rootfs, path)
	if f == nil || err != nil {
		return nil, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxUserFileSize))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if path == "/etc/passwd" && len(fields) < 4 {
			continue
		}
		if match(fields) {
			return fields, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, errdefs.InvalidArgument("the image's %s cannot be read: %v", path, err)
	}
	return nil, false, nil
}
