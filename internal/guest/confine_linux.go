package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

// securityDir holds each container's Security for vessel-ctr, in the
// VM's /run (not visible to containers).
const securityDir = "/run/vessel-security"

// makeDev makes a container's /dev as runc does: a tmpfs with null,
// zero, full, random, urandom and tty, a devpts instance of its own with
// ptmx, shm, a mount point for mqueue and the fd, stdin, stdout, stderr
// and core links. No disk or other device of the VM is there.
func makeDev(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(dev, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("/dev/%s: %w", n.name, err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
		"newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("mount /dev/pts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	links := map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links["core"] = "/proc/kcore" // as runc: only where the kernel has it
	}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(dev, link)); err != nil {
			return err
		}
	}
	return nil
}

// maskPaths masks (an empty read-only tmpfs over a directory, /dev/null
// over a file) and makes read-only the paths under prefix (/proc/ or
// /sys/) of the container whose root is root, as runc does. Missing
// paths are skipped. Paths are resolved inside root.
func maskPaths(root, prefix string, masked, readonly []string) error {
	inRoot := func(p string) (string, os.FileInfo, bool) {
		if !strings.HasPrefix(p, prefix) || strings.Contains(p, "..") {
			return "", nil, false
		}
		full := filepath.Join(root, p)
		st, err := os.Lstat(full)
		if err != nil || st.Mode()&os.ModeSymlink != 0 {
			return "", nil, false
		}
		return full, st, true
	}
	for _, p := range masked {
		full, st, ok := inRoot(p)
		if !ok {
			continue
		}
		var err error
		if st.IsDir() {
			err = unix.Mount("tmpfs", full, "tmpfs", unix.MS_RDONLY, "")
		} else {
			err = unix.Mount("/dev/null", full, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readonly {
		full, _, ok := inRoot(p)
		if !ok {
			continue
		}
		if err := unix.Mount(full, full, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		if err := unix.Mount(full, full, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	return nil
}

// writeSecurity leaves a container's Security where its vessel-ctr
// processes read it.
func writeSecurity(spec guestproto.Container) error {
	if err := os.MkdirAll(securityDir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(spec.Security)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(securityDir, spec.Name+".json"), data, 0o600)
}

// ContainerInit runs in a mount namespace of its own (and, for the main
// process, new PID, IPC and UTS namespaces) and confines itself as runc
// confines a container's process before exec'ing the command: a fresh
// /proc with masked and read-only paths, mqueue, a read-only root if
// asked, pivot_root into the root, the capability bounding set, the
// user's IDs and groups, exactly the container's capabilities,
// no_new_privs and the seccomp filter last. It returns only on error (also
// written to fd 3).
func ContainerInit(argv []string) (err error) {
	// Credentials, capabilities, no_new_privs and seccomp are a thread's:
	// everything happens on this one, which execs.
	goruntime.LockOSThread()
	unix.CloseOnExec(3)
	defer func() {
		if err != nil {
			unix.Write(3, []byte(err.Error()))
		}
	}()
	if len(argv) < 9 {
		return errors.New("usage: vessel-ctr main|exec name root dir uid gid path args")
	}
	mode, name, root, dir, path, args := argv[1], argv[2], argv[3], argv[4], argv[7], argv[8:]
	uid, err1 := strconv.ParseUint(argv[5], 10, 32)
	gid, err2 := strconv.ParseUint(argv[6], 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(securityDir, filepath.Base(name)+".json"))
	if err != nil {
		return err
	}
	var sec guestproto.Security
	if err := json.Unmarshal(data, &sec); err != nil {
		return err
	}
	lastCap := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			lastCap = n
		}
	}
	var initFD int = -1
	if sec.Init && mode == "main" {
		// The guest binary serves as the init; it is outside the root
		// after pivot_root, so it is opened now and exec'd by fd.
		if initFD, err = unix.Open("/init", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	proc := filepath.Join(root, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := maskPaths(root, "/proc/", sec.MaskedPaths, sec.ReadonlyPaths); err != nil {
		return err
	}
	if mode == "main" {
		if err := unix.Mount("mqueue", filepath.Join(root, "dev/mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount /dev/mqueue: %w", err)
		}
	}
	if sec.ReadOnlyRootfs {
		if err := unix.Mount("", root, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	if err := pivotRoot(root); err != nil {
		return err
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("working directory %s: %w", dir, err)
	}
	keep := uint64(0)
	for _, c := range sec.Capabilities {
		if c >= 0 && c < 64 {
			keep |= 1 << uint(c)
		}
	}
	for c := 0; c <= lastCap; c++ {
		if keep&(1<<uint(c)) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	// This thread's IDs only (raw calls; Go's setuid would change every
	// thread's): the thread execs.
	groups := append([]uint32{}, sec.SupplementalGroups...)
	var gptr unsafe.Pointer
	if len(groups) > 0 {
		gptr = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gptr), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setuid %d: %w", uid, e)
	}
	capData := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &capData[0]); err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if len(sec.Seccomp) > 0 {
		filter := make([]unix.SockFilter, len(sec.Seccomp))
		for i, f := range sec.Seccomp {
			filter[i] = unix.SockFilter{Code: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
			return fmt.Errorf("seccomp: %w", err)
		}
	}
	if initFD >= 0 {
		initArgv := append([]string{InitArg, path}, args...)
		if err := execveat(initFD, initArgv, os.Environ()); err != nil {
			return fmt.Errorf("exec init: %w", err)
		}
	}
	if err := unix.Exec(path, args, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// pivotRoot makes root the root of this mount namespace and detaches the
// old one, as runc does.
func pivotRoot(root string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

func execveat(fd int, argv, envv []string) error {
	path, err := unix.BytePtrFromString("")
	if err != nil {
		return err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envvp, err := syscall.SlicePtrFromStrings(envv)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envvp[0])), unix.AT_EMPTY_PATH, 0)
	return e
}
