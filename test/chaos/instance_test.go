//go:build chaos

package chaos

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/awsclient"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/network"
)

// instance is one Vessel under test: a control plane and one agent, both
// with their data directories on a loop-mounted ext4 file of their own.
type instance struct {
	t        *testing.T
	vessel   string
	work     string // holds the loop file, the mount point and the logs
	mnt      string // the loop-mounted file system ("the data directory's disk")
	server   string // server data directory (under mnt)
	agent    string // agent data directory (under mnt)
	addr     string // server API address
	subnet   string
	runtimes []string
	// serverExtra are more flags of vessel server (the Kubernetes bridge's).
	serverExtra []string

	keyID, secret string
	// joinToken is what the agent joins with; later starts use the
	// credential it kept.
	joinToken string

	mu       sync.Mutex
	srvProc  *exec.Cmd
	srvDone  chan struct{}
	agtProc  *exec.Cmd
	agtDone  chan struct{}
	proxy    *proxy
	serverLg *os.File
	agentLg  *os.File
}

// diskSize is the size of the data directory's file system: big enough for
// the image, the store and a few dozen sparse writable layers, small enough
// to fill in an instant.
const diskSize = 2 << 30

func newInstance(t *testing.T, vessel, work string, runtimes []string) *instance {
	in := &instance{t: t, vessel: vessel, work: work, runtimes: runtimes}
	in.mnt = filepath.Join(work, "mnt")
	in.server = filepath.Join(in.mnt, "server")
	in.agent = filepath.Join(in.mnt, "agent")
	img := filepath.Join(work, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// -m 0: no blocks reserved for root, so a fill really fills.
	run(t, "mkfs.ext4", "-q", "-F", "-m", "0", img)
	if err := os.MkdirAll(in.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-o", "loop", img, in.mnt)
	t.Cleanup(in.unmountDisk)
	for _, d := range []string{in.server, in.agent} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	in.subnet = freeSubnet(t)
	in.addr = freeAddr(t)
	if in.serverLg, err = os.Create(filepath.Join(work, "server.log")); err != nil {
		t.Fatal(err)
	}
	if in.agentLg, err = os.Create(filepath.Join(work, "agent.log")); err != nil {
		t.Fatal(err)
	}
	return in
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unmountDisk unmounts the loop file system (lazily if something still
// holds it) and detaches its loop device.
func (in *instance) unmountDisk() {
	img := filepath.Join(in.work, "disk.img")
	if err := unix.Unmount(in.mnt, 0); err != nil {
		in.t.Logf("unmounting %s: %v; detaching it", in.mnt, err)
		unix.Unmount(in.mnt, unix.MNT_DETACH)
	}
	// mount -o loop sets autoclear; detach anyway if it is still there.
	out, _ := exec.Command("losetup", "-j", img).Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if dev, _, ok := strings.Cut(line, ":"); ok {
			exec.Command("losetup", "-d", dev).Run()
		}
	}
}

// prepareImage loads a busybox image into the agent's image cache.
func (in *instance) prepareImage() {
	t := in.t
	root := filepath.Join(in.work, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required (scripts/setup installs it): %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "echo", "cat", "true", "dd"} {
		os.Symlink("busybox", filepath.Join(root, "bin", a))
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	run(t, in.vessel, "image", "import", "--data-dir", in.agent, "--rootfs", root, "--ref", "busybox:chaos",
		"--cmd", "sh", "--env", "PATH=/bin")
	os.RemoveAll(root)
}

func (in *instance) endpoint() string { return "http://" + in.addr }

// startServer starts the control plane and waits until it answers.
func (in *instance) startServer() error {
	args := []string{"server", "--no-agent", "--data-dir", in.server, "--listen", in.addr,
		"--subnet", "subnet-default=" + in.subnet, "--dns-listen=",
		"--host-timeout", hostTimeout.String(), "--pending-timeout", "2m"}
	args = append(args, in.serverExtra...)
	cmd := exec.Command(in.vessel, args...)
	cmd.Stdout, cmd.Stderr = in.serverLg, in.serverLg
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	in.mu.Lock()
	in.srvProc, in.srvDone = cmd, done
	in.mu.Unlock()
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("vessel server exited: %v (see %s)", cmd.ProcessState, in.serverLg.Name())
		default:
		}
		resp, err := http.Get(in.endpoint() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
	}
	return fmt.Errorf("vessel server did not answer /healthz within 90 s")
}

// readKeys reads the admin key the server made on its first start, as
// `vessel credentials` prints it (the server never prints a secret), and
// makes the join token the agent joins with.
func (in *instance) readKeys() {
	out := run(in.t, in.vessel, "credentials", "--data-dir", in.server, "--endpoint", in.endpoint())
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "export AWS_ACCESS_KEY_ID="); ok {
			in.keyID = strings.Trim(v, "'")
		}
		if v, ok := strings.CutPrefix(line, "export AWS_SECRET_ACCESS_KEY="); ok {
			in.secret = strings.Trim(v, "'")
		}
	}
	if in.keyID == "" || in.secret == "" {
		in.t.Fatalf("vessel credentials printed no key:\n%s", out)
	}
	out = run(in.t, in.vessel, "host", "token", "create", "--ttl", "24h", "--data-dir", in.server, "--endpoint", in.endpoint())
	f := strings.Fields(out)
	i := slices.Index(f, "--token")
	if i < 0 || i+1 >= len(f) {
		in.t.Fatalf("vessel host token create printed no token:\n%s", out)
	}
	in.joinToken = f[i+1]
}

// startAgent starts the host agent, joined to the server through the proxy.
func (in *instance) startAgent() error {
	args := []string{"agent", "--server", "http://" + in.proxy.addr(), "--data-dir", in.agent,
		"--listen", "127.0.0.1:0", "--host-id", "chaos-host",
		"--runtimes", strings.Join(in.runtimes, ","), "--runtime", in.runtimes[0],
		"--subnet", "subnet-default=" + in.subnet,
		"--cpu-allocation-ratio", "16", "--memory-allocation-ratio", "4", "--token", in.joinToken,
		// No warm pools (a host keeps them by default): the faults hit
		// the test's own tasks only.
		"--warm-pool", "microvm=0,gvisor=0,runc=0"}
	cmd := exec.Command(in.vessel, args...)
	// No access key: the agent signs with the host credential it got by
	// joining.
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=")
	cmd.Stdout, cmd.Stderr = in.agentLg, in.agentLg
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	in.mu.Lock()
	in.agtProc, in.agtDone = cmd, done
	in.mu.Unlock()
	return nil
}

// stop signals a process of ours and waits for it, killing it after 30 s.
func stop(cmd *exec.Cmd, done chan struct{}, sig syscall.Signal) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (in *instance) stopServer(sig syscall.Signal) {
	in.mu.Lock()
	cmd, done := in.srvProc, in.srvDone
	in.srvProc = nil
	in.mu.Unlock()
	stop(cmd, done, sig)
}

func (in *instance) stopAgent(sig syscall.Signal) {
	in.mu.Lock()
	cmd, done := in.agtProc, in.agtDone
	in.agtProc = nil
	in.mu.Unlock()
	stop(cmd, done, sig)
}

func (in *instance) ecs() *ecs.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(in.keyID, in.secret, ""),
		RetryMaxAttempts: 3, HTTPClient: awsclient.HTTPClient(&http.Client{Timeout: 20 * time.Second})}
	return ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(in.endpoint()) })
}

// removeNetwork removes the subnet's bridge and the agent's firewall
// tables: a host keeps both when its agent stops, by design.
func (in *instance) removeNetwork() {
	_, cidr, _ := net.ParseCIDR(in.subnet)
	links, _ := netlink.LinkList()
	for _, l := range links {
		if !strings.HasPrefix(l.Attrs().Name, "vsl-") {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if cidr.Contains(a.IP) {
				netlink.LinkDel(l)
			}
		}
	}
	if err := network.RemoveFirewall(filepath.Join(in.agent, "network")); err != nil {
		in.t.Errorf("removing the agent's firewall tables: %v", err)
	}
}

// freeSubnet picks a 10.Y.X.0/24 that overlaps no address of the host, so
// the run never touches another Vessel's subnet.
func freeSubnet(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for i := 0; i < 200; i++ {
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 90+rand.IntN(160), rand.IntN(256)))
		used := false
		for _, a := range addrs {
			if ip, n, err := net.ParseCIDR(a.String()); err == nil && (cidr.Contains(ip) || n.Contains(cidr.IP)) {
				used = true
			}
		}
		if !used {
			return cidr.String()
		}
	}
	t.Fatal("no free 10.Y.X.0/24 subnet")
	return ""
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proxy is the agent's only way to the control plane, so that its
// connection can be cut: cut closes every connection and refuses new ones
// until restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	cutOff bool
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cutOff {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *proxy) pipe(c net.Conn) {
	defer p.forget(c)
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.cutOff {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = true
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
}

func (p *proxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.cutOff = false
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.cut()
	p.ln.Close()
}

// fillDisk takes every free block of the data directory's file system with
// one preallocated file and returns a function that removes it.
func (in *instance) fillDisk() (func(), error) {
	path := filepath.Join(in.mnt, "chaos-fill")
	f, err := os.Create(path)
	if err != nil {
		return func() {}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(in.mnt, &st); err != nil {
		f.Close()
		os.Remove(path)
		return func() {}, err
	}
	size := int64(st.Bfree) * int64(st.Bsize)
	// Halve until it fits: metadata takes some blocks of its own.
	for size > 0 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
			break
		}
		size /= 2
	}
	// Then whatever is left, a block at a time.
	buf := make([]byte, 1<<20)
	f.Seek(0, io.SeekEnd)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	return func() { os.Remove(path) }, nil
}

// processes lists the processes whose command line names dir, with their
// command name and command line.
type process struct {
	pid  int
	comm string
	cmd  string
}

func processesNaming(dir string) []process {
	var out []process
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		var pid int
		fmt.Sscanf(filepath.Base(p), "%d", &pid)
		if pid == os.Getpid() {
			continue
		}
		out = append(out, process{pid: pid, comm: strings.TrimSpace(string(comm)), cmd: strings.ReplaceAll(string(b), "\x00", " ")})
	}
	return out
}

// cgroupProcs lists the processes of a task's cgroup tree (pids controller).
func cgroupProcs(taskID string) []process {
	var out []process
	for _, root := range []string{"/sys/fs/cgroup/pids/vessel", "/sys/fs/cgroup/vessel"} {
		filepath.WalkDir(filepath.Join(root, taskID), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				fmt.Sscanf(f, "%d", &pid)
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				out = append(out, process{pid: pid, comm: strings.TrimSpace(string(comm)), cmd: strings.ReplaceAll(string(cmd), "\x00", " ")})
			}
			return nil
		})
	}
	return out
}
