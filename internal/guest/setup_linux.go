package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

// disks maps the virtio-blk serials to their devices.
func disks() map[string]string {
	out := map[string]string{}
	serials, _ := filepath.Glob("/sys/block/vd*/serial")
	for _, s := range serials {
		if data, err := os.ReadFile(s); err == nil {
			out[strings.TrimSpace(string(data))] = "/dev/" + filepath.Base(filepath.Dir(s))
		}
	}
	return out
}

// waitDisks waits (5 s at most) for the disks of the given serials and
// returns every disk's device by serial.
func waitDisks(want map[string]bool) (map[string]string, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		devs := disks()
		missing := ""
		for d := range want {
			if devs[d] == "" {
				missing = d
			}
		}
		if missing == "" {
			return devs, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no disk with serial %q (found %v)", missing, devs)
		}
	}
}

// setup sets the sandbox up from the first hello's configuration: its
// hostname, network and writable disk, then (unless the guest is booted
// warm, for a task to come) the task's part, setupTask.
func (a *agent) setup() error {
	cfg := a.cfg
	if cfg == nil {
		return errors.New("hello without a configuration")
	}
	if cfg.Hostname != "" {
		unix.Sethostname([]byte(cfg.Hostname))
	}
	if err := setupNet(cfg.Net); err != nil {
		return err
	}
	devs, err := waitDisks(map[string]bool{"rw": true})
	if err != nil {
		return err
	}
	os.MkdirAll(rwMount, 0o755)
	if err := unix.Mount(devs["rw"], rwMount, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount the writable disk %s: %w", devs["rw"], err)
	}
	if cfg.Warm {
		return nil
	}
	return a.setupTask(cfg)
}

// claim sets up the task of the hello that claimed a guest booted warm:
// its hostname and setupTask. The network and the writable disk are
// the warm boot's.
func (a *agent) claim() error {
	cfg := a.cfg
	if cfg.Hostname != "" {
		unix.Sethostname([]byte(cfg.Hostname))
	}
	return a.setupTask(cfg)
}

// setupTask mounts the task's image disks and sets up its /etc files,
// volumes, cgroups and containers.
func (a *agent) setupTask(cfg *guestproto.Config) error {
	// One read-only image disk per distinct image of the task.
	want := map[string]bool{}
	for _, c := range cfg.Containers {
		want[c.Disk] = true
	}
	devs, err := waitDisks(want)
	if err != nil {
		return err
	}
	for d := range want {
		dir := filepath.Join(imagesDir, d)
		os.MkdirAll(dir, 0o755)
		// A warm guest's image disks were there at boot, before the
		// host wrote the task's image into them: whatever the kernel
		// read of them then (a partition scan) is dropped first.
		if err := dropCache(devs[d]); err != nil {
			return fmt.Errorf("image disk %s (%s): %w", d, devs[d], err)
		}
		for _, fs := range []string{"erofs", "ext4"} {
			if err = unix.Mount(devs[d], dir, fs, unix.MS_RDONLY, ""); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("mount image disk %s (%s): %w", d, devs[d], err)
		}
	}
	os.MkdirAll(etcDir, 0o755)
	for name, data := range cfg.Etc {
		if err := os.WriteFile(filepath.Join(etcDir, filepath.Base(name)), data, 0o644); err != nil {
			return err
		}
	}
	if err := setupVolumes(cfg.Volumes); err != nil {
		return err
	}
	if err := setupCgroups(cfg); err != nil {
		return err
	}
	for _, spec := range cfg.Containers {
		c, err := a.prepare(spec)
		if err != nil {
			return fmt.Errorf("container %s: %w", spec.Name, err)
		}
		a.mu.Lock()
		a.containers[spec.Name] = c
		a.mu.Unlock()
	}
	return nil
}

// dropCache empties the guest's cache of a disk's blocks (BLKFLSBUF).
func dropCache(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
}

func setupNet(n *guestproto.NetConfig) error {
	if n == nil {
		return nil
	}
	var eth netlink.Link
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if eth, err = netlink.LinkByName("eth0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network: eth0: %w", err)
		}
	}
	addr, err := netlink.ParseAddr(n.Address)
	if err != nil {
		return fmt.Errorf("network: address %q: %w", n.Address, err)
	}
	if err := netlink.AddrReplace(eth, addr); err != nil {
		return fmt.Errorf("network: set %s on eth0: %w", n.Address, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("network: eth0 up: %w", err)
	}
	if n.Gateway != "" {
		gw := net.ParseIP(n.Gateway)
		// On link: in a fleet the gateway lies outside the host's slice,
		// the task's own prefix.
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
			return fmt.Errorf("network: default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

// setupCgroups makes the cgroup all containers run under, with the task's
// fractional CPU (a quota of a 100 ms period), its memory (no swap) and
// its pids limit.
func setupCgroups(cfg *guestproto.Config) error {
	if err := os.WriteFile(filepath.Join(cgroupDir, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644); err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	if err := os.MkdirAll(taskCgroup, 0o755); err != nil {
		return err
	}
	files := [][2]string{{"cgroup.subtree_control", "+cpu +memory +pids"}}
	if cfg.MemoryMiB > 0 {
		files = append(files, [2]string{"memory.max", strconv.FormatInt(cfg.MemoryMiB<<20, 10)})
		files = append(files, [2]string{"memory.swap.max", "0"})
	}
	if cfg.MilliCPU > 0 {
		files = append(files, [2]string{"cpu.max", fmt.Sprintf("%d 100000", cfg.MilliCPU*100)})
	}
	if cfg.PidsLimit > 0 {
		files = append(files, [2]string{"pids.max", strconv.FormatInt(cfg.PidsLimit, 10)})
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(taskCgroup, f[0]), []byte(f[1]), 0o644); err != nil && f[0] != "memory.swap.max" {
			return fmt.Errorf("cgroups: %s: %w", f[0], err)
		}
	}
	return nil
}

// prepare mounts a container's root: an overlay of its image under an
// upper directory on the writable disk, with /proc, /sys, /dev and the /etc
// files of the sandbox.
func (a *agent) prepare(spec guestproto.Container) (*container, error) {
	root := filepath.Join(rootsDir, spec.Name)
	upper, work := filepath.Join(rwMount, spec.Name, "upper"), filepath.Join(rwMount, spec.Name, "work")
	for _, d := range []string{root, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", filepath.Join(imagesDir, spec.Disk), upper, work)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	// /proc is mounted by each process's vessel-ctr in its own mount
	// namespace (masked there); /sys is read-only and masked here; /dev
	// is a minimal one of the container's own.
	os.MkdirAll(filepath.Join(root, "proc"), 0o555)
	sub := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"sysfs", "sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY, ""},
		{"tmpfs", "run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
	for _, m := range sub {
		dst := filepath.Join(root, m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return nil, err
		}
		if err := unix.Mount(m.src, dst, m.fstype, m.flags, m.data); err != nil {
			return nil, fmt.Errorf("mount %s: %w", dst, err)
		}
	}
	if err := maskPaths(root, "/sys/", spec.Security.MaskedPaths, spec.Security.ReadonlyPaths); err != nil {
		return nil, err
	}
	if err := makeDev(filepath.Join(root, "dev")); err != nil {
		return nil, err
	}
	if err := writeSecurity(spec); err != nil {
		return nil, err
	}
	os.MkdirAll(filepath.Join(root, "tmp"), 0o1777)
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	entries, _ := os.ReadDir(etcDir)
	for _, e := range entries {
		src, dst := filepath.Join(etcDir, e.Name()), filepath.Join(root, "etc", e.Name())
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if _, err := os.Lstat(dst); err != nil {
			if err := os.WriteFile(dst, nil, 0o644); err != nil {
				return nil, err
			}
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("bind %s: %w", dst, err)
		}
		unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	if err := mountVolumes(root, spec.Mounts); err != nil {
		return nil, err
	}
	cg := filepath.Join(taskCgroup, spec.Name)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return nil, err
	}
	return &container{spec: spec, root: root, cgroup: cg}, nil
}
