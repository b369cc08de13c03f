package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/pty"
)

// Paths inside the guest.
const (
	modulesDir = "/lib/modules"
	rwMount    = "/rw"
	imagesDir  = "/images"
	rootsDir   = "/containers"
	cgroupDir  = "/sys/fs/cgroup"
	taskCgroup = "/sys/fs/cgroup/task"
	etcDir     = "/run/etc"
	defaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	logChunk   = 16 << 10
)

// Main is the guest agent's entry point as PID 1 of the VM. It never
// returns; on a fatal error it powers the VM off.
func Main() {
	a := &agent{containers: map[string]*container{}, execs: map[uint64]*process{}, waits: map[int]chan unix.WaitStatus{}}
	if err := a.boot(); err != nil {
		fatal(err)
	}
	a.serve()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vessel-guest: "+format+"\n", args...)
}

func fatal(err error) {
	logf("fatal: %v", err)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

type agent struct {
	conn  *guestproto.Conn
	port  *os.File
	out   chan guestproto.Msg
	hello chan struct{} // closed on the first hello

	mu         sync.Mutex
	cfg        *guestproto.Config
	ready      bool
	setupErr   string
	containers map[string]*container
	execs      map[uint64]*process

	// reapMu is held while starting a process and while reaping, so that
	// a process is registered in waits before it can be reaped.
	reapMu sync.Mutex
	waits  map[int]chan unix.WaitStatus
}

type container struct {
	spec      guestproto.Container
	root      string
	cgroup    string
	started   bool
	exited    bool
	code      int
	oom       bool
	exitedAt  time.Time
	pid       int
	oomBefore int64
}

type process struct {
	pid   int
	stdin *os.File
	// tty is the terminal's controlling side of an exec with a TTY: input
	// is written to it, sizes set on it, and its stdin is nil.
	tty *os.File
}

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

// write sends queued messages once the host has said hello, retrying a
// message while the host side is away.
func (a *agent) write() {
	<-a.hello
	for m := range a.out {
		for {
			if err := a.conn.Send(m); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (a *agent) send(m guestproto.Msg) { a.out <- m }

func (a *agent) serve() {
	for {
		m, err := a.conn.Recv()
		if err != nil {
			logf("control channel: %v", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		a.handle(m)
	}
}

func (a *agent) reply(id uint64, err error) {
	m := guestproto.Msg{Op: guestproto.EvReply, ID: id}
	if err != nil {
		m.Error = err.Error()
	}
	a.send(m)
}

func (a *agent) handle(m guestproto.Msg) {
	switch m.Op {
	case guestproto.OpHello:
		a.mu.Lock()
		first := a.cfg == nil
		if first {
			a.cfg = m.Config
		}
		a.mu.Unlock()
		select {
		case <-a.hello:
		default:
			close(a.hello)
		}
		if first {
			ev := guestproto.Msg{Op: guestproto.EvReady}
			if err := a.setup(); err != nil {
				ev.Error = err.Error()
				a.setupErr = ev.Error
			}
			a.send(ev)
			return
		}
		a.send(guestproto.Msg{Op: guestproto.EvState, State: a.state(), Error: a.setupErr})
	case guestproto.OpStart:
		a.reply(m.ID, a.start(m.Container))
	case guestproto.OpRestart:
		a.reply(m.ID, a.restart(m.Container))
	case guestproto.OpSignal:
		a.reply(m.ID, a.signal(m.Container, syscall.Signal(m.Signal)))
	case guestproto.OpExec:
		go a.exec(m)
	case guestproto.OpStdin:
		a.mu.Lock()
		p := a.execs[m.ID]
		a.mu.Unlock()
		switch {
		case p != nil && p.tty != nil:
			// A terminal has no end of input: EOF is not passed on.
			if len(m.Data) > 0 {
				p.tty.Write(m.Data)
			}
		case p != nil && p.stdin != nil:
			if len(m.Data) > 0 {
				p.stdin.Write(m.Data)
			}
			if m.EOF {
				p.stdin.Close()
			}
		}
	case guestproto.OpResize:
		a.mu.Lock()
		p := a.execs[m.ID]
		a.mu.Unlock()
		if p != nil && p.tty != nil {
			pty.SetSize(p.tty, m.Width, m.Height)
		}
	default:
		a.reply(m.ID, fmt.Errorf("unknown operation %q", m.Op))
	}
}

func (a *agent) state() []guestproto.ContainerState {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []guestproto.ContainerState
	for _, c := range a.containers {
		out = append(out, guestproto.ContainerState{Name: c.spec.Name, Started: c.started, Exited: c.exited,
			Code: c.code, OOMKilled: c.oom, ExitedAt: c.exitedAt})
	}
	return out
}

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
	// Disks: "rw" (ext4, formatted by the host) and one read-only image per
	// distinct image of the task.
	want := map[string]bool{"rw": true}
	for _, c := range cfg.Containers {
		want[c.Disk] = true
	}
	var devs map[string]string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		devs = disks()
		missing := ""
		for d := range want {
			if devs[d] == "" {
				missing = d
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no disk with serial %q (found %v)", missing, devs)
		}
	}
	os.MkdirAll(rwMount, 0o755)
	if err := unix.Mount(devs["rw"], rwMount, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount the writable disk %s: %w", devs["rw"], err)
	}
	for d := range want {
		if d == "rw" {
			continue
		}
		dir := filepath.Join(imagesDir, d)
		os.MkdirAll(dir, 0o755)
		var err error
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
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("network: default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

// setupCgroups makes the cgroup all containers run under, with the task's
// fractional CPU (a quota of a 100 ms period) and its pids limit.
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

// reap collects every child and orphan (the agent is PID 1) and hands
// the statuses of the processes it started to their waiters.
func (a *agent) reap() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	for range ch {
		a.reapMu.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			if w := a.waits[pid]; w != nil {
				w <- ws
				delete(a.waits, pid)
			}
		}
		a.reapMu.Unlock()
	}
}

// spawn starts a process in a container's root and cgroup and returns its
// pid and a channel for its wait status.
func (a *agent) spawn(c *container, args, env []string, files []uintptr, main bool) (int, chan unix.WaitStatus, error) {
	if len(args) == 0 {
		return 0, nil, errors.New("no command")
	}
	uid, gid, home, err := lookupUser(c.root, c.spec.User)
	if err != nil {
		return 0, nil, err
	}
	env = withDefaults(env, home)
	path, err := lookPath(c.root, args[0], env)
	if err != nil {
		return 0, nil, err
	}
	if main && c.spec.Security.RunAsNonRoot && uid == 0 {
		return 0, nil, errors.New(guestproto.RunAsNonRootError)
	}
	dir := c.spec.WorkingDir
	if dir == "" {
		dir = "/"
	}
	cgfd, err := unix.Open(c.cgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	defer unix.Close(cgfd)
	// Every process of a container, its main one and each exec, starts
	// as the agent's binary "vessel-ctr" in a mount namespace of its own,
	// which confines it as runc would (ContainerInit) and execs the
	// command. The main process is also PID 1 of its own PID namespace
	// and has its own IPC and UTS namespaces; an exec joins those of the
	// main process (as runc exec does), so that it sees the container's
	// processes and its /proc is theirs.
	mode := "exec"
	flags := uintptr(unix.CLONE_NEWNS)
	var joinPid int
	if main {
		mode = "main"
		flags |= unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS
	} else {
		a.mu.Lock()
		joinPid = c.pid
		a.mu.Unlock()
		if joinPid <= 0 {
			return 0, nil, fmt.Errorf("container %q has no running process to exec beside", c.spec.Name)
		}
	}
	attr := &syscall.ProcAttr{Dir: "/", Env: env, Files: files, Sys: &syscall.SysProcAttr{
		Setsid: true, UseCgroupFD: true, CgroupFD: cgfd, Cloneflags: flags,
	}}
	if len(files) > 0 && isTerminal(files[0]) {
		// An exec with a TTY: its terminal becomes the controlling one of
		// its session, for job control and SIGWINCH.
		attr.Sys.Setctty, attr.Sys.Ctty = true, 0
	}
	exe := "/init"
	argv := append([]string{ContainerInitArg, mode, c.spec.Name, c.root, dir, strconv.FormatUint(uint64(uid), 10),
		strconv.FormatUint(uint64(gid), 10), path}, args...)
	// fd 3 of vessel-ctr closes when it execs the command (or carries
	// its error), so that start returns once the command runs.
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer syncR.Close()
	attr.Files = append(append([]uintptr(nil), files...), syncW.Fd())
	ch := make(chan unix.WaitStatus, 1)
	fork := func() (int, error) {
		a.reapMu.Lock()
		defer a.reapMu.Unlock()
		pid, err := syscall.ForkExec(exe, argv, attr)
		if err == nil {
			a.waits[pid] = ch
		}
		return pid, err
	}
	var pid int
	if joinPid > 0 {
		pid, err = forkInNamespacesOf(joinPid, fork)
	} else {
		pid, err = fork()
	}
	syncW.Close()
	if err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	if msg, _ := io.ReadAll(io.LimitReader(syncR, 4096)); len(msg) > 0 {
		return 0, nil, fmt.Errorf("start %s: %s", args[0], msg)
	}
	// The agent's OOM immunity is inherited: give it up (before the
	// process can allocate much: it has just been forked).
	os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte("0"), 0o644)
	if c.spec.NofileSoft > 0 || c.spec.NofileHard > 0 {
		lim := unix.Rlimit{Cur: c.spec.NofileSoft, Max: c.spec.NofileHard}
		unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil)
	}
	return pid, ch, nil
}

func withDefaults(env []string, home string) []string {
	has := func(k string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	out := append([]string(nil), env...)
	if !has("PATH") {
		out = append(out, defaultEnv)
	}
	if !has("HOME") {
		out = append(out, "HOME="+home)
	}
	if !has("HOSTNAME") {
		if h, err := os.Hostname(); err == nil {
			out = append(out, "HOSTNAME="+h)
		}
	}
	return out
}

// lookPath finds name in the container's PATH, as seen from its root.
func lookPath(root, name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := strings.TrimPrefix(defaultEnv, "PATH=")
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", name)
}

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

// oomKills is the count of OOM kills in a cgroup.
func oomKills(cgroup string) int64 {
	data, _ := os.ReadFile(filepath.Join(cgroup, "memory.events"))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (a *agent) container(name string) (*container, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready && a.cfg == nil {
		return nil, errors.New("sandbox not set up")
	}
	c := a.containers[name]
	if c == nil {
		return nil, fmt.Errorf("container %q not found", name)
	}
	return c, nil
}

func (a *agent) start(name string) error {
	c, err := a.container(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if c.started {
		a.mu.Unlock()
		return fmt.Errorf("container %q already started", name)
	}
	c.started = true
	a.mu.Unlock()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	null, _ := os.Open("/dev/null")
	c.oomBefore = oomKills(c.cgroup)
	pid, ch, err := a.spawn(c, c.spec.Args, c.spec.Env, []uintptr{null.Fd(), outW.Fd(), errW.Fd()}, true)
	null.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		a.mu.Lock()
		c.started = false
		a.mu.Unlock()
		return err
	}
	a.mu.Lock()
	c.pid = pid
	a.mu.Unlock()
	a.send(guestproto.Msg{Op: guestproto.EvStarted, Container: name})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.pump(name, "stdout", outR) }()
	go func() { defer wg.Done(); a.pump(name, "stderr", errR) }()
	go func() {
		ws := <-ch
		at := time.Now()
		code := exitCode(ws)
		oom := code == 137 && oomKills(c.cgroup) > c.oomBefore
		// What the main process left behind ends with it, as when a
		// container's PID namespace loses its init.
		os.WriteFile(filepath.Join(c.cgroup, "cgroup.kill"), []byte("1"), 0o644)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			outR.Close()
			errR.Close()
		}
		a.mu.Lock()
		c.exited, c.code, c.oom, c.exitedAt = true, code, oom, at
		a.mu.Unlock()
		a.send(guestproto.Msg{Op: guestproto.EvExit, Container: name, Code: code, OOMKilled: oom, Time: at})
	}()
	return nil
}

// restart runs an exited container again: its root, writable layer and
// cgroup are kept, as a kubelet keeps the pod sandbox.
func (a *agent) restart(name string) error {
	c, err := a.container(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	switch {
	case !c.started:
		a.mu.Unlock()
		return fmt.Errorf("container %q was never started", name)
	case !c.exited:
		a.mu.Unlock()
		return fmt.Errorf("container %q still runs", name)
	}
	code, oom, at := c.code, c.oom, c.exitedAt
	c.started, c.exited, c.code, c.oom, c.exitedAt, c.pid = false, false, 0, false, time.Time{}, 0
	a.mu.Unlock()
	if err := a.start(name); err != nil {
		// It did not start: it stays the exited container it was.
		a.mu.Lock()
		c.started, c.exited, c.code, c.oom, c.exitedAt = true, true, code, oom, at
		a.mu.Unlock()
		return err
	}
	return nil
}

// pump sends a container's output as log lines: one message per line,
// lines longer than logChunk split into partial ones.
func (a *agent) pump(name, stream string, r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, logChunk)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := line[len(line)-1] == '\n'
			text := bytes.TrimSuffix(line, []byte("\n"))
			a.send(guestproto.Msg{Op: guestproto.EvLog, Container: name, Stream: stream, Data: append([]byte(nil), text...), Partial: !full, Time: time.Now()})
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (a *agent) signal(name string, sig syscall.Signal) error {
	c, err := a.container(name)
	if err != nil {
		return err
	}
	a.mu.Lock()
	pid, running := c.pid, c.started && !c.exited
	a.mu.Unlock()
	if !running || pid == 0 {
		return nil
	}
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

func (a *agent) exec(m guestproto.Msg) {
	c, err := a.container(m.Container)
	if err != nil {
		a.reply(m.ID, err)
		return
	}
	a.mu.Lock()
	running := c.started && !c.exited
	a.mu.Unlock()
	if !running {
		a.reply(m.ID, fmt.Errorf("container %q is not running", m.Container))
		return
	}
	var files []uintptr
	var outputs []execOutput
	proc := &process{}
	var children []*os.File // the child's ends, closed once it started
	if m.TTY {
		ptmx, tty, err := pty.Open()
		if err != nil {
			a.reply(m.ID, err)
			return
		}
		if m.Width > 0 && m.Height > 0 {
			pty.SetSize(ptmx, m.Width, m.Height)
		}
		proc.tty = ptmx
		files = []uintptr{tty.Fd(), tty.Fd(), tty.Fd()}
		children = append(children, tty)
		outputs = append(outputs, execOutput{"stdout", pty.Reader(ptmx), ptmx})
	} else {
		outR, outW, _ := os.Pipe()
		errR, errW, _ := os.Pipe()
		var inR *os.File
		if m.Stdin {
			inR, proc.stdin, _ = os.Pipe()
		} else {
			inR, _ = os.Open("/dev/null")
		}
		files = []uintptr{inR.Fd(), outW.Fd(), errW.Fd()}
		children = append(children, inR, outW, errW)
		outputs = append(outputs, execOutput{"stdout", outR, outR}, execOutput{"stderr", errR, errR})
	}
	a.mu.Lock()
	a.execs[m.ID] = proc
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.execs, m.ID)
		a.mu.Unlock()
		if proc.stdin != nil {
			proc.stdin.Close()
		}
	}()
	env := append(append([]string(nil), c.spec.Env...), m.Env...)
	_, ch, err := a.spawn(c, m.Args, env, files, false)
	for _, f := range children {
		f.Close()
	}
	if err != nil {
		for _, o := range outputs {
			o.f.Close()
		}
		a.reply(m.ID, err)
		return
	}
	a.reply(m.ID, nil)
	var wg sync.WaitGroup
	for _, s := range outputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.r.Read(buf)
				if n > 0 {
					a.send(guestproto.Msg{Op: guestproto.EvOutput, ID: m.ID, Stream: s.name, Data: append([]byte(nil), buf[:n]...)})
				}
				if err != nil {
					return
				}
			}
		}()
	}
	ws := <-ch
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		// Something the command left behind holds its output: cut it off.
	}
	for _, o := range outputs {
		o.f.Close()
	}
	a.send(guestproto.Msg{Op: guestproto.EvExecExit, ID: m.ID, Code: exitCode(ws)})
}

// execOutput is one output of an exec: read from r, closed with f.
type execOutput struct {
	name string
	r    io.Reader
	f    *os.File
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// forkInNamespacesOf runs fork on a thread of its own that has first
// joined the PID (for its children), IPC and UTS namespaces of process
// pid, so that what fork starts is in them. The thread is never given back
// to the Go scheduler: it ends with its goroutine, namespaces and all.
func forkInNamespacesOf(pid int, fork func() (int, error)) (int, error) {
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		for _, ns := range []struct {
			name string
			kind int
		}{{"pid", unix.CLONE_NEWPID}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}} {
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- result{err: fmt.Errorf("the container's %s namespace: %w", ns.name, err)}
				return
			}
			err = unix.Setns(fd, ns.kind)
			unix.Close(fd)
			if err != nil {
				done <- result{err: fmt.Errorf("joining the container's %s namespace: %w", ns.name, err)}
				return
			}
		}
		p, err := fork()
		done <- result{p, err}
	}()
	r := <-done
	return r.pid, r.err
}
