package runc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// ociVersion is the version of the runtime spec the bundles declare; runc
// 1.1 speaks 1.0.2 and newer ones read it too.
const ociVersion = "1.0.2"

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultCaps is the capability set container runtimes (Docker, containerd,
// CRI-O) give a non-privileged container, and nothing more.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// deniedSyscalls fail with EPERM: the calls Docker's default profile does
// not allow a container without extra capabilities. Names unknown to the
// host's libseccomp (e.g. 32-bit only calls) are skipped by runc.
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "fanotify_init", "finit_module", "fsconfig", "fsmount",
	"fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module",
	"io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl",
	"kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind",
	"mount", "mount_setattr", "move_mount", "move_pages", "name_to_handle_at",
	"nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
	"pidfd_getfd", "pivot_root", "process_madvise", "process_vm_readv",
	"process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd",
	"reboot", "request_key", "set_mempolicy", "setdomainname", "sethostname",
	"setns", "settimeofday", "stime", "swapoff", "swapon", "syslog", "sysfs",
	"umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
	"vm86old", "_sysctl",
}

// newNamespaceFlags are the clone flags that make namespaces; clone with any
// of them is denied (unshare and setns are denied outright).
var newNamespaceFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP,
}

func seccompProfile() *specs.LinuxSeccomp {
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32,
			specs.ArchAARCH64, specs.ArchARM},
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			// clone3 passes its flags in memory seccomp cannot read:
			// ENOSYS makes libc fall back to clone, checked below.
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	for _, f := range newNamespaceFlags {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual}},
		})
	}
	return s
}

// bundleParams is what goes into one container's config.json beyond its
// ContainerSpec.
type bundleParams struct {
	id, name   string
	rootfs     string
	hostname   string
	netnsPath  string
	etcDir     string
	hostNofile uint64 // the agent's RLIMIT_NOFILE hard limit
	hostNproc  uint64
	user       specs.User
}

func ociSpec(c runtime.ContainerSpec, p bundleParams) *specs.Spec {
	env := append([]string(nil), c.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	soft, hard := c.NofileSoft, c.NofileHard
	if hard == 0 {
		hard = min(65535, p.hostNofile)
	}
	hard = min(hard, p.hostNofile)
	if soft == 0 {
		soft = 1024
	}
	soft = min(soft, hard)
	nprocHard := min(hard, p.hostNproc)
	caps := append([]string(nil), defaultCaps...)

	netns := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.netnsPath}
	s := &specs.Spec{
		Version: ociVersion,
		Process: &specs.Process{
			Args: c.Args,
			Env:  env,
			Cwd:  cwd,
			User: p.user,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: soft, Hard: hard},
				{Type: "RLIMIT_NPROC", Soft: min(soft, nprocHard), Hard: nprocHard},
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: p.rootfs},
		Hostname: p.hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + containerPath(p.id, p.name),
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
			Seccomp:       seccompProfile(),
		},
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: p.etcDir + "/" + f,
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
			Destination: m.Destination, Type: "bind", Source: mountSource(p.rootfs, i, m),
			Options: []string{"rbind", "rprivate", mode, "nosuid", "nodev"},
		})
	}
	return s
}

// resolveUser turns a container's User ("", "uid", "uid:gid", "name",
// "name:group") into numeric IDs, reading names from the container's root
// file system (its /etc/passwd and /etc/group, resolved inside rootfs).
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
		if e, ok := lookup(rootfs, "/etc/passwd", func(f []string) bool { return f[2] == u }); ok {
			if gid, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				primary = uint32(gid)
			}
		}
	} else {
		e, ok := lookup(rootfs, "/etc/passwd", func(f []string) bool { return f[0] == u })
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
			e, ok := lookup(rootfs, "/etc/group", func(f []string) bool { return f[0] == g })
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

// lookup returns the first colon-separated entry of a file in rootfs that
// match accepts (entries with at least 4 fields for passwd, 3 for group).
// The path is resolved with the rootfs as root, so symbolic links in the
// image cannot lead outside it.
func lookup(rootfs, path string, match func([]string) bool) ([]string, bool) {
	dirfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, strings.TrimPrefix(path, "/"), &unix.OpenHow{
		Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if path == "/etc/passwd" && len(fields) < 4 {
			continue
		}
		if match(fields) {
			return fields, true
		}
	}
	return nil, false
}

func validName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("must be 1 to 63 characters")
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			(i > 0 && (r == '-' || r == '_' || r == '.'))
		if !ok {
			return fmt.Errorf("use letters, digits, and -, _ or . after the first character")
		}
	}
	return nil
}
