package fleet

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Config says how to build a fleet.
type Config struct {
	// Vessel is the path of the vessel binary that servers and agents run.
	Vessel string
}

// Fleet is a set of machines on one bridge.
type Fleet struct {
	t      testing.TB
	cfg    Config
	id     int          // the third octet of the fleet's /24, and its names' number
	bridge string       // the bridge's name in the test's namespace
	prefix netip.Prefix // 198.19.<id>.0/24
	gw     netip.Addr   // the bridge's address: the test process's own

	mu       sync.Mutex
	machines []*Machine
	procs    []*Process
	servers  []*Server
	agents   []*Agent
	dirs     []string // data directories the leftovers check looks for
	// vesselStopped: the servers' tasks, agents and servers were stopped.
	vesselStopped bool
}

// New makes the fleet's bridge; machines come with Machine. Everything is
// removed, and checked gone, when t ends. It skips t when not root.
func New(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a fleet of network namespaces needs root")
	}
	if cfg.Vessel == "" {
		t.Fatal("fleet.Config.Vessel: the path of the vessel binary is required")
	}
	// The test's temporary directory (the machines' data directories)
	// is removed by a cleanup registered at its first use: use it now, so
	// that it runs after the fleet's, once nothing holds it.
	t.TempDir()
	f := &Fleet{t: t, cfg: cfg}
	// The test's temporary directories (the machines' data directories)
	// are removed by a cleanup the first TempDir registers: registered
	// before the fleet's, it runs after it, once every process is gone.
	t.TempDir()
	f.id = freeOctet(t)
	f.bridge = fmt.Sprintf("vfleet%d", f.id)
	f.prefix = netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", f.id))
	f.gw = netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", f.id))
	t.Cleanup(f.cleanup)
	// The bridge's MAC is set, so that it keeps it: a Linux bridge whose
	// MAC was never set takes its ports' lowest, and a machine joining
	// with a lower one changed it under the machines that had learnt it
	// (their packets for the gateway were dropped, tens of seconds long:
	// TestGatewayStaysReachableAsMachinesJoin).
	f.ip("link", "add", f.bridge, "address", bridgeMAC(f.gw).String(), "type", "bridge")
	f.ip("addr", "add", f.gw.String()+"/24", "dev", f.bridge)
	f.ip("link", "set", f.bridge, "up")
	return f
}

// bridgeMAC is the fleet bridge's MAC: locally administered, from its
// address.
func bridgeMAC(gw netip.Addr) net.HardwareAddr {
	b := gw.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// freeOctet picks N for 198.19.N.0/24 (a range for tests) that no address
// of this host is in and no other fleet's bridge uses.
func freeOctet(t testing.TB) int {
	addrs, _ := net.InterfaceAddrs()
	for range 256 {
		n := rand.IntN(256)
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("198.19.%d.0/24", n))
		used := false
		for _, a := range addrs {
			if ip, nw, err := net.ParseCIDR(a.String()); err == nil && (cidr.Contains(ip) || nw.Contains(cidr.IP)) {
				used = true
			}
		}
		if _, err := net.InterfaceByName(fmt.Sprintf("vfleet%d", n)); err == nil {
			used = true
		}
		if !used {
			return n
		}
	}
	t.Fatal("fleet: no free 198.19.N.0/24")
	return 0
}

// ip runs ip(8) with args and fails the test on error.
func (f *Fleet) ip(args ...string) {
	f.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		f.t.Fatalf("fleet: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Gateway is the test process's address on the fleet's bridge.
func (f *Fleet) Gateway() netip.Addr { return f.gw }

// Machine is a network namespace with one address on the fleet's bridge.
type Machine struct {
	f    *Fleet
	Name string
	// NetNS is the namespace's path, for nsenter --net.
	NetNS string
	// Addr is the machine's address on the fleet's bridge.
	Addr netip.Addr
	ns   string // the namespace's name under /run/netns
	veth string // the host end of its link to the bridge
}

// Machine adds a machine named name (short: it becomes part of the
// namespace's name).
func (f *Fleet) Machine(name string) *Machine {
	f.t.Helper()
	f.mu.Lock()
	i := len(f.machines)
	if 10+i > 254 {
		f.mu.Unlock()
		f.t.Fatal("fleet: at most 245 machines")
	}
	m := &Machine{f: f, Name: name,
		ns:   fmt.Sprintf("vfleet%d-%s", f.id, name),
		veth: fmt.Sprintf("vf%d-%d", f.id, i),
		Addr: netip.MustParseAddr(fmt.Sprintf("198.19.%d.%d", f.id, 10+i)),
	}
	m.NetNS = "/run/netns/" + m.ns
	f.machines = append(f.machines, m)
	f.mu.Unlock()
	peer := m.veth + "p"
	f.ip("netns", "add", m.ns)
	f.ip("link", "add", m.veth, "type", "veth", "peer", "name", peer, "netns", m.ns)
	f.ip("link", "set", m.veth, "master", f.bridge, "up")
	f.ip("-n", m.ns, "link", "set", peer, "name", "eth0")
	f.ip("-n", m.ns, "addr", "add", m.Addr.String()+"/24", "dev", "eth0")
	f.ip("-n", m.ns, "link", "set", "eth0", "up")
	f.ip("-n", m.ns, "link", "set", "lo", "up")
	return m
}

// Command makes a command that runs name in the machine's network
// namespace (only: it shares the test's mounts, so that what it mounts is
// seen and cleaned up as on the host). nsenter execs name, so the
// command's process is name's.
func (m *Machine) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + m.NetNS, "--", name}, args...)...)
}

// Cut takes the machine off the bridge (its link down): a partition.
func (m *Machine) Cut() { m.f.ip("link", "set", m.veth, "down") }

// Heal puts the machine back on the bridge.
func (m *Machine) Heal() { m.f.ip("link", "set", m.veth, "up") }

// Process is a long-running command on a machine, its output kept.
type Process struct {
	m    *Machine
	name string
	argv []string
	env  []string
	log  *Log

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts argv on the machine with env (nil: the test's environment)
// and returns at once; it is stopped when the test ends.
func (m *Machine) Start(name string, env []string, argv ...string) *Process {
	m.f.t.Helper()
	p := &Process{m: m, name: name, argv: argv, env: env, log: &Log{}}
	m.f.mu.Lock()
	m.f.procs = append(m.f.procs, p)
	m.f.mu.Unlock()
	p.Start()
	return p
}

// Start starts the process again (after Kill or Stop) with the same
// command, environment and log.
func (p *Process) Start() {
	t := p.m.f.t
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("fleet: %s is already running", p.name)
	}
	cmd := p.m.Command(p.argv[0], p.argv[1:]...)
	if p.env != nil {
		cmd.Env = p.env
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Children that outlive it (an agent's conmon) may hold its output
	// open: do not wait for them.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("fleet: starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Name is what the process was called at Start.
func (p *Process) Name() string { return p.name }

// Machine is where the process runs.
func (p *Process) Machine() *Machine { return p.m }

// Log is everything the process wrote to stdout and stderr, over all its
// starts.
func (p *Process) Log() string { return p.log.String() }

// PID is the running process's ID, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running says whether the process was started and has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited is closed when the running process exits (nil if none runs).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Signal sends sig to the running process (SIGSTOP and SIGCONT to pause
// and resume it).
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("fleet: %s is not running", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() { p.stop(syscall.SIGKILL, 0) }

// Stop sends SIGTERM (after SIGCONT, in case it is paused), and SIGKILL
// if it has not exited within 15 s; it waits for the exit.
func (p *Process) Stop() { p.stop(syscall.SIGTERM, 15*time.Second) }

func (p *Process) stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	p.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
		}
	} else {
		<-p.done
	}
	p.cmd, p.done = nil, nil
}

// Log is a process's output, safe for concurrent writes and reads.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// dataDir makes a data directory that the leftovers check covers. The
// servers' tasks, agents and servers are stopped before the test's
// temporary directories are removed (a cleanup registered after them
// runs first): a task's mounts would keep them busy.
func (f *Fleet) dataDir() string {
	d := f.t.TempDir()
	f.mu.Lock()
	f.dirs = append(f.dirs, d)
	first := len(f.dirs) == 1
	f.mu.Unlock()
	if first {
		f.t.Cleanup(f.stopVessel)
	}
	return d
}

// cleanup stops the servers' tasks, then every process, removes the
// namespaces and the bridge, and checks that nothing is left.
func (f *Fleet) cleanup() {
	t := f.t
	f.stopVessel()
	f.mu.Lock()
	procs := append([]*Process(nil), f.procs...)
	machines := append([]*Machine(nil), f.machines...)
	f.mu.Unlock()
	if t.Failed() {
		for _, p := range procs {
			t.Logf("fleet: %s on %s (%s) log:\n%s", p.name, p.m.Name, p.m.Addr, tail(p.log.String(), 6000))
		}
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
	for _, m := range machines {
		if out, err := exec.Command("ip", "netns", "del", m.ns).CombinedOutput(); err != nil {
			t.Errorf("fleet: removing namespace %s: %v: %s", m.ns, err, out)
		}
		// The veth goes with its namespace; a failed set-up may leave the
		// host end alone.
		exec.Command("ip", "link", "del", m.veth).Run()
	}
	if out, err := exec.Command("ip", "link", "del", f.bridge).CombinedOutput(); err != nil {
		t.Errorf("fleet: removing bridge %s: %v: %s", f.bridge, err, out)
	}
	if left := f.leftovers(); len(left) > 0 {
		t.Errorf("fleet: left behind:\n%s", strings.Join(left, "\n"))
	}
}

// leftovers lists what of the fleet is still on the host: processes that
// name one of its data directories, mounts under them, its namespaces and
// links.
func (f *Fleet) leftovers() []string {
	var left []string
	f.mu.Lock()
	dirs := append([]string(nil), f.dirs...)
	f.mu.Unlock()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(cmd, d) {
				left = append(left, "process "+filepath.Dir(p)+": "+cmd)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			for _, d := range dirs {
				if strings.Contains(line, d) {
					left = append(left, "mount: "+line)
					break
				}
			}
		}
	}
	ns, _ := filepath.Glob(fmt.Sprintf("/run/netns/vfleet%d-*", f.id))
	for _, n := range ns {
		left = append(left, "network namespace "+n)
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if i.Name == f.bridge || strings.HasPrefix(i.Name, fmt.Sprintf("vf%d-", f.id)) {
			left = append(left, "link "+i.Name)
		}
	}
	return left
}
