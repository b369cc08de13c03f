package guest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

func (a *agent) boot() error {
	if err := leaveRootfs(); err != nil {
		return fmt.Errorf("leave the initramfs root: %w", err)
	}
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"cgroup2", cgroupDir, "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	for _, m := range mounts {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	// The console may be missing from the initramfs: log there once /dev is up.
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		os.Stderr = f
		os.Stdout = f
	}
	os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0o644)
	// Allocations are bounded by the containers' memory cgroup, not by
	// the VM's small RAM: a process may reserve more than the VM has and
	// is OOM-killed when it touches more than the task's memory, as on a
	// host with runc.
	os.WriteFile("/proc/sys/vm/overcommit_memory", []byte("1"), 0o644)
	if err := loadModules(); err != nil {
		return err
	}
	unix.Sethostname([]byte("localhost"))
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	go a.reap()
	path, err := findPort(guestproto.PortName, 10*time.Second)
	if err != nil {
		return err
	}
	a.port, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	a.conn = guestproto.NewConnLimit(eofRetry{a.port}, a.port, guestproto.MaxConfigMsg)
	a.out = make(chan guestproto.Msg, 4096)
	a.hello = make(chan struct{})
	go a.write()
	return nil
}

// loadModules loads the kernel modules of the initramfs in the order of
// modules.order (dependencies first).
func loadModules() error {
	order, err := os.ReadFile(filepath.Join(modulesDir, "modules.order"))
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, name := range strings.Fields(string(order)) {
		data, err := os.ReadFile(filepath.Join(modulesDir, name+".ko"))
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		if err := unix.InitModule(data, ""); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// findPort waits for the virtio-serial port called name and returns its
// device.
func findPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ports, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range ports {
			if data, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(data)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port %q", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eofRetry turns the EOF a virtio-serial port returns while no host is
// connected into a wait.
type eofRetry struct{ f *os.File }

func (r eofRetry) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaveRootfs moves the initramfs's files onto a tmpfs mounted over / and
// enters it, as switch_root does: pivot_root, which each container's
// process needs, fails in a namespace whose root is the kernel's rootfs.
// The files are moved (copied, then removed), so that they are not kept
// twice.
func leaveRootfs() error {
	const newRoot = "/.root"
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount the root tmpfs: %w", err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if "/"+e.Name() == newRoot {
			continue
		}
		if err := moveTree("/"+e.Name(), newRoot+"/"+e.Name()); err != nil {
			return err
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the root tmpfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// moveTree copies src (a directory, regular file, symbolic link or
// device) to dst and removes src.
func moveTree(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	switch {
	case st.IsDir():
		if err := os.Mkdir(dst, st.Mode().Perm()); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := moveTree(src+"/"+e.Name(), dst+"/"+e.Name()); err != nil {
				return err
			}
		}
	case st.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case st.Mode().IsRegular():
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
			return err
		}
	default:
		if err := unix.Mknod(dst, sys.Mode, int(sys.Rdev)); err != nil {
			return err
		}
	}
	os.Lchown(dst, int(sys.Uid), int(sys.Gid))
	if st.Mode()&os.ModeSymlink == 0 {
		os.Chmod(dst, st.Mode())
	}
	return os.Remove(src)
}
