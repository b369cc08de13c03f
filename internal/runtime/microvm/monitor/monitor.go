package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/guestproto"
)

// Config is the host-side monitor's configuration, the file
// <sandbox dir>/monitor.json that the runtime writes before starting it.
type Config struct {
	// Control is QEMU's socket of the control channel (server side).
	Control string `json:"control"`
	// CgroupProcs are the cgroup.procs files of the sandbox's cgroups:
	// the monitor writes itself into them first thing, so that it is
	// charged to the task, beside QEMU.
	CgroupProcs []string `json:"cgroupProcs,omitempty"`
	// Listen is the monitor's own socket, where the runtime sends start,
	// signal and exec requests (one request per connection, Msg lines).
	Listen string `json:"listen"`
	// LogDir receives <name>.log per container in the CRI format.
	LogDir      string `json:"logDir"`
	LogMaxBytes int64  `json:"logMaxBytes"`
	// ExitDir receives <name>, a ContainerState in JSON, when a container
	// has exited; StartedDir an empty <name> once it has started.
	ExitDir    string `json:"exitDir"`
	StartedDir string `json:"startedDir"`
	// ReadyFile is written when the guest has set the sandbox up: empty,
	// or the guest's error.
	ReadyFile string `json:"readyFile"`
	// StallFile receives the guest's dump of a set-up that has not ended
	// after guestproto.StallAfter (guestproto.EvStall), for a person to
	// read; none when empty.
	StallFile string `json:"stallFile,omitempty"`
	// ConsoleLog is the VM's console file (QEMU appends to it); the
	// monitor empties it when it is over ConsoleMaxBytes.
	ConsoleLog      string            `json:"consoleLog,omitempty"`
	ConsoleMaxBytes int64             `json:"consoleMaxBytes,omitempty"`
	Guest           guestproto.Config `json:"guest"`
}

// Run is the host-side monitor of one VM (vessel-guest monitor
// <config>): it holds the control channel for as long as the VM runs,
// writes the containers' logs and exit codes to files, and relays the
// runtime's requests. It returns when the VM's side of the channel closes.
//
// On SIGHUP it reads its configuration again and sends the guest a hello
// with the new guest part: how a warm VM is claimed for a task without
// the control channel's connection being dropped (see reload).
func Run(configPath string) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	for _, p := range cfg.CgroupProcs {
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("join the sandbox's cgroup: %w", err)
		}
	}
	m := &monitor{logs: map[string]*os.File{}, routes: map[uint64]*route{}}
	if err := m.configure(cfg); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	defer m.closeRoots()
	var conn net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conn, err = net.Dial("unix", cfg.Control)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control channel: %w", err)
		}
	}
	os.Remove(cfg.Listen)
	ln, err := net.Listen("unix", cfg.Listen)
	if err != nil {
		return err
	}
	m.guest = guestproto.NewConn(conn, conn)
	g := cfg.Guest
	if err := m.guest.Send(guestproto.Msg{Op: guestproto.OpHello, Config: &g}); err != nil {
		return err
	}
	go m.accept(ln)
	go m.reloads(configPath, hup)
	stopConsole := make(chan struct{})
	defer close(stopConsole)
	go capConsole(cfg.ConsoleLog, cfg.ConsoleMaxBytes, stopConsole)
	err = m.readGuest()
	ln.Close()
	os.Remove(cfg.Listen)
	m.mu.Lock()
	for _, r := range m.routes {
		r.conn.Send(guestproto.Msg{Op: guestproto.EvReply, ID: r.clientID, Error: "the VM's control channel closed"})
		r.raw.Close()
	}
	m.mu.Unlock()
	m.closeLogs()
	return err
}

func loadConfig(path string) (Config, error) {
	var cfg Config
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// configure takes cfg's containers and directories (checked, the
// directories made and opened) in place of the ones the monitor had.
func (m *monitor) configure(cfg Config) error {
	names := map[string]bool{}
	for _, c := range cfg.Guest.Containers {
		if !safeName(c.Name) {
			return fmt.Errorf("container name %q: want a plain file name", c.Name)
		}
		names[c.Name] = true
	}
	var roots [3]*os.Root
	for i, dir := range []string{cfg.LogDir, cfg.ExitDir, cfg.StartedDir} {
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			roots[i], err = os.OpenRoot(dir)
		}
		if err != nil {
			for _, r := range roots[:i] {
				r.Close()
			}
			return err
		}
	}
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	m.closeRoots()
	m.cfg, m.names = cfg, names
	m.logDir, m.exitDir, m.startedDir = roots[0], roots[1], roots[2]
	m.closeLogs()
	return nil
}

// closeLogs closes the containers' open log files.
func (m *monitor) closeLogs() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, f := range m.logs {
		f.Close()
		delete(m.logs, name)
	}
}

func (m *monitor) closeRoots() {
	for _, r := range []*os.Root{m.logDir, m.exitDir, m.startedDir} {
		if r != nil {
			r.Close()
		}
	}
}

// reloads serves SIGHUP: the configuration is read again (its sockets,
// cgroups and console are kept) and its guest part sent in a new hello,
// which claims a VM booted warm for the task the configuration now
// describes. The guest answers on the same connection, and the ready
// file is written as at the start. A configuration the monitor cannot
// take is written to the ready file as the error, so that the runtime
// waiting for it does not wait for a hello never sent.
func (m *monitor) reloads(path string, hup <-chan os.Signal) {
	for range hup {
		cfg, err := loadConfig(path)
		if err == nil {
			err = m.configure(cfg)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vessel-guest monitor: reload: %v\n", err)
			m.cfgMu.Lock()
			writeAtomic(nil, m.cfg.ReadyFile, []byte("the VM's monitor could not take its new configuration: "+err.Error()))
			m.cfgMu.Unlock()
			continue
		}
		g := cfg.Guest
		if err := m.guest.Send(guestproto.Msg{Op: guestproto.OpHello, Config: &g}); err != nil {
			fmt.Fprintf(os.Stderr, "vessel-guest monitor: reload: hello: %v\n", err)
			continue
		}
		fmt.Fprintf(os.Stderr, "vessel-guest monitor: %s: configuration reloaded, hello sent\n", time.Now().UTC().Format(time.RFC3339Nano))
	}
}

// safeName reports whether name can be a file name in the monitor's
// directories: not empty, ".", "..", nor with a separator or NUL.
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") && len(name) <= 255
}

// maxRefusalLogs bounds what a hostile guest can make the monitor write to
// its own log.
const maxRefusalLogs = 20

type monitor struct {
	guest *guestproto.Conn

	// cfgMu guards the configuration, which a reload replaces; the
	// guest's messages are handled under it.
	cfgMu sync.Mutex
	cfg   Config
	// names are the sandbox's containers: the only names the guest's
	// messages may carry. Files are opened only below these roots.
	names                       map[string]bool
	logDir, exitDir, startedDir *os.Root
	refusals                    int

	mu     sync.Mutex
	next   uint64
	logs   map[string]*os.File
	routes map[uint64]*route
}

// route is a runtime request waiting for the guest's answers.
type route struct {
	conn     *guestproto.Conn
	raw      net.Conn
	clientID uint64
	exec     bool
}

// refuse logs a message of the guest that the monitor drops. Everything
// the guest sends is untrusted: a message naming a container the sandbox
// does not have, an unknown stream, a line over MaxMsg or one that is not
// JSON is dropped (the guest, not the host, is what misbehaves; the
// sandbox's own containers go on being served).
func (m *monitor) refuse(format string, args ...any) {
	m.refusals++
	switch {
	case m.refusals <= maxRefusalLogs:
		fmt.Fprintf(os.Stderr, "vessel-guest monitor: dropped a message of the guest: "+format+"\n", args...)
	case m.refusals == maxRefusalLogs+1:
		fmt.Fprintf(os.Stderr, "vessel-guest monitor: dropping further bad messages of the guest without logging them\n")
	}
}

// known reports whether the guest's message names a container of the
// sandbox, and logs the refusal if not.
func (m *monitor) known(op, name string) bool {
	if m.names[name] {
		return true
	}
	m.refuse("%s for container %q, which the sandbox does not have", op, truncate(name, 64))
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (m *monitor) readGuest() error {
	for {
		msg, err := m.guest.Recv()
		if errors.Is(err, guestproto.ErrBadMsg) {
			m.refuse("%v", err)
			continue
		}
		if err != nil {
			return err
		}
		m.cfgMu.Lock()
		m.handle(msg)
		m.cfgMu.Unlock()
	}
}

// handle takes one message of the guest (under cfgMu).
func (m *monitor) handle(msg guestproto.Msg) {
	switch msg.Op {
	case guestproto.EvReady:
		fmt.Fprintf(os.Stderr, "vessel-guest monitor: %s: the guest is ready (error: %q)\n", time.Now().UTC().Format(time.RFC3339Nano), msg.Error)
		writeAtomic(nil, m.cfg.ReadyFile, []byte(msg.Error))
	case guestproto.EvState:
		for _, s := range msg.State {
			if !m.known(msg.Op, s.Name) {
				continue
			}
			if s.Started {
				writeAtomic(m.startedDir, s.Name, nil)
			}
			if s.Exited {
				m.writeExit(s)
			}
		}
		if _, err := os.Stat(m.cfg.ReadyFile); err != nil {
			writeAtomic(nil, m.cfg.ReadyFile, []byte(msg.Error))
		}
	case guestproto.EvLog:
		if !m.known(msg.Op, msg.Container) {
			return
		}
		if msg.Stream != "stdout" && msg.Stream != "stderr" {
			m.refuse("log of container %s on stream %q", msg.Container, truncate(msg.Stream, 64))
			return
		}
		if bytes.IndexByte(msg.Data, '\n') >= 0 {
			// The agent sends one line per message: a newline
			// would forge lines of the log file.
			m.refuse("log of container %s with a newline in its line", msg.Container)
			return
		}
		m.writeLog(msg)
	case guestproto.EvStarted:
		if m.known(msg.Op, msg.Container) {
			writeAtomic(m.startedDir, msg.Container, nil)
		}
	case guestproto.EvExit:
		if !m.known(msg.Op, msg.Container) {
			return
		}
		m.closeLog(msg.Container)
		m.writeExit(guestproto.ContainerState{Name: msg.Container, Started: true, Exited: true, Code: msg.Code,
			OOMKilled: msg.OOMKilled, ExitedAt: time.Now()})
	case guestproto.EvReply, guestproto.EvOutput, guestproto.EvExecExit:
		m.mu.Lock()
		r := m.routes[msg.ID]
		end := msg.Op == guestproto.EvExecExit || (msg.Op == guestproto.EvReply && (!r.isExec() || msg.Error != ""))
		if end {
			delete(m.routes, msg.ID)
		}
		m.mu.Unlock()
		if r == nil {
			return
		}
		msg.ID = r.clientID
		r.conn.Send(msg)
		if end {
			r.raw.Close()
		}
	case guestproto.EvStall:
		// Stored, never parsed: the guest's word for where it waits.
		if m.cfg.StallFile != "" && len(msg.Error) <= guestproto.MaxStall {
			writeAtomic(nil, m.cfg.StallFile, []byte(msg.Error))
			fmt.Fprintf(os.Stderr, "vessel-guest monitor: %s: the guest's set-up has not ended after %v; its dump is in %s\n",
				time.Now().UTC().Format(time.RFC3339Nano), guestproto.StallAfter, m.cfg.StallFile)
		}
	default:
		m.refuse("unknown event %q", truncate(msg.Op, 64))
	}
}

func (r *route) isExec() bool { return r != nil && r.exec }

func (m *monitor) writeExit(s guestproto.ContainerState) {
	data, _ := json.Marshal(s)
	writeAtomic(m.exitDir, s.Name, data)
}

// writeAtomic writes name in root (a path of the host when root is nil)
// through a temporary file and a rename.
func writeAtomic(root *os.Root, name string, data []byte) error {
	tmp := name + ".tmp"
	if root == nil {
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, name)
	}
	if err := root.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return root.Rename(tmp, name)
}

// writeLog appends one line in the CRI format, stamped with the host's
// time on arrival (the guest's clock is not trusted).
func (m *monitor) writeLog(msg guestproto.Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.logs[msg.Container]
	if f == nil {
		var err error
		f, err = m.logDir.OpenFile(msg.Container+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return
		}
		m.logs[msg.Container] = f
	}
	tag := "F"
	if msg.Partial {
		tag = "P"
	}
	line := make([]byte, 0, len(msg.Data)+64)
	line = time.Now().UTC().AppendFormat(line, time.RFC3339Nano)
	line = append(line, ' ')
	line = append(line, msg.Stream...)
	line = append(line, ' ')
	line = append(line, tag...)
	line = append(line, ' ')
	line = append(line, msg.Data...)
	line = append(line, '\n')
	if m.cfg.LogMaxBytes > 0 {
		if st, err := f.Stat(); err == nil && st.Size()+int64(len(line)) > m.cfg.LogMaxBytes {
			f.Truncate(0)
		}
	}
	f.Write(line)
}

func (m *monitor) closeLog(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.logs[name]; f != nil {
		f.Close()
		delete(m.logs, name)
	}
}

func (m *monitor) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go m.client(c)
	}
}

// client serves one runtime request: start, signal, stats or exec (with
// its stdin), relaying the guest's answers back on the same connection.
func (m *monitor) client(raw net.Conn) {
	conn := guestproto.NewConn(raw, raw)
	req, err := conn.Recv()
	if err != nil {
		raw.Close()
		return
	}
	switch req.Op {
	case guestproto.OpStart, guestproto.OpRestart, guestproto.OpSignal, guestproto.OpExec, guestproto.OpStats:
	default:
		conn.Send(guestproto.Msg{Op: guestproto.EvReply, ID: req.ID, Error: fmt.Sprintf("unknown operation %q", req.Op)})
		raw.Close()
		return
	}
	m.mu.Lock()
	m.next++
	id := m.next
	m.routes[id] = &route{conn: conn, raw: raw, clientID: req.ID, exec: req.Op == guestproto.OpExec}
	m.mu.Unlock()
	clientID := req.ID
	req.ID = id
	if err := m.guest.Send(req); err != nil {
		m.mu.Lock()
		delete(m.routes, id)
		m.mu.Unlock()
		conn.Send(guestproto.Msg{Op: guestproto.EvReply, ID: clientID, Error: err.Error()})
		raw.Close()
		return
	}
	if req.Op != guestproto.OpExec {
		return
	}
	// Stdin and terminal sizes of an exec: relayed until the client
	// closes.
	for {
		in, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && req.Stdin {
				m.guest.Send(guestproto.Msg{Op: guestproto.OpStdin, ID: id, EOF: true})
			}
			return
		}
		switch in.Op {
		case guestproto.OpStdin:
			in.ID = id
			m.guest.Send(in)
			if in.EOF {
				req.Stdin = false
			}
		case guestproto.OpResize:
			in.ID = id
			m.guest.Send(in)
		}
	}
}

// capConsole empties the console log whenever it is over max bytes
// (checked every second): what the guest writes to its console is bounded
// by max plus one second of output.
func capConsole(path string, max int64, stop chan struct{}) {
	if path == "" || max <= 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() > max {
			os.Truncate(path, 0)
		}
	}
}
