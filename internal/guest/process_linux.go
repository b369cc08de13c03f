package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

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
