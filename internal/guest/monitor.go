package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// MonitorConfig is the host-side monitor's configuration, the file
// <sandbox dir>/monitor.json that the runtime writes before starting it.
type MonitorConfig struct {
	// Control is QEMU's socket of the control channel (server side).
	Control string `json:"control"`
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
	Guest     Config `json:"guest"`
}

// RunMonitor is the host-side monitor of one VM (vessel-guest monitor
// <config>): it holds the control channel for as long as the VM runs,
// writes the containers' logs and exit codes to files, and relays the
// runtime's requests. It returns when the VM's side of the channel closes.
func RunMonitor(configPath string) error {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return err
	}
	var cfg MonitorConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	for _, d := range []string{cfg.LogDir, cfg.ExitDir, cfg.StartedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
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
	m := &monitor{cfg: cfg, guest: NewConn(conn, conn), logs: map[string]*os.File{}, routes: map[uint64]*route{},
		names: map[string]bool{}}
	for _, c := range cfg.Guest.Containers {
		if c.Name != "" && c.Name != "." && c.Name != ".." && !strings.ContainsAny(c.Name, "/\x00") {
			m.names[c.Name] = true
		}
	}
	g := cfg.Guest
	if err := m.guest.Send(Msg{Op: OpHello, Config: &g}); err != nil {
		return err
	}
	go m.accept(ln)
	err = m.readGuest()
	ln.Close()
	os.Remove(cfg.Listen)
	m.mu.Lock()
	for _, r := range m.routes {
		r.conn.Send(Msg{Op: EvReply, ID: r.clientID, Error: "the VM's control channel closed"})
		r.raw.Close()
	}
	m.mu.Unlock()
	return err
}

// The guest is on the sandbox's side of the wall: what it sends is
// untrusted. A container name it sends is used (as a file name in
// LogDir, ExitDir and StartedDir) only when it is one of the sandbox's
// containers, as the runtime configured them; a log line's stream must
// be stdout or stderr, and its data cannot start a line of its own.
type monitor struct {
	cfg   MonitorConfig
	guest *Conn
	// names are the sandbox's containers, from the configuration.
	names map[string]bool

	mu     sync.Mutex
	next   uint64
	logs   map[string]*os.File
	routes map[uint64]*route
}

// route is a runtime request waiting for the guest's answers.
type route struct {
	conn     *Conn
	raw      net.Conn
	clientID uint64
	exec     bool
}

func (m *monitor) readGuest() error {
	for {
		msg, err := m.guest.Recv()
		if err != nil {
			return err
		}
		switch msg.Op {
		case EvReady:
			writeAtomic(m.cfg.ReadyFile, []byte(msg.Error))
		case EvState:
			for _, s := range msg.State {
				if !m.names[s.Name] {
					continue
				}
				if s.Started {
					writeAtomic(filepath.Join(m.cfg.StartedDir, s.Name), nil)
				}
				if s.Exited {
					m.writeExit(s)
				}
			}
			if _, err := os.Stat(m.cfg.ReadyFile); err != nil {
				writeAtomic(m.cfg.ReadyFile, []byte(msg.Error))
			}
		case EvLog:
			if m.names[msg.Container] && (msg.Stream == "stdout" || msg.Stream == "stderr") {
				m.writeLog(msg)
			}
		case EvStarted:
			if m.names[msg.Container] {
				writeAtomic(filepath.Join(m.cfg.StartedDir, msg.Container), nil)
			}
		case EvExit:
			if !m.names[msg.Container] {
				continue
			}
			m.closeLog(msg.Container)
			m.writeExit(ContainerState{Name: msg.Container, Started: true, Exited: true, Code: msg.Code,
				OOMKilled: msg.OOMKilled, ExitedAt: time.Now()})
		case EvReply, EvOutput, EvExecExit:
			m.mu.Lock()
			r := m.routes[msg.ID]
			end := msg.Op == EvExecExit || (msg.Op == EvReply && (!r.isExec() || msg.Error != ""))
			if end {
				delete(m.routes, msg.ID)
			}
			m.mu.Unlock()
			if r == nil {
				continue
			}
			msg.ID = r.clientID
			r.conn.Send(msg)
			if end {
				r.raw.Close()
			}
		}
	}
}

func (r *route) isExec() bool { return r != nil && r.exec }

func (m *monitor) writeExit(s ContainerState) {
	data, _ := json.Marshal(s)
	writeAtomic(filepath.Join(m.cfg.ExitDir, s.Name), data)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeLog appends one line in the CRI format, stamped with the host's
// time on arrival (the guest's clock is not trusted).
func (m *monitor) writeLog(msg Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.logs[msg.Container]
	if f == nil {
		var err error
		f, err = os.OpenFile(filepath.Join(m.cfg.LogDir, msg.Container+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return
		}
		m.logs[msg.Container] = f
	}
	tag := "F"
	if msg.Partial {
		tag = "P"
	}
	// The guest splits output into lines; a newline inside one would
	// start a line the monitor did not stamp: it is escaped.
	data := bytes.ReplaceAll(msg.Data, []byte("\n"), []byte(`\n`))
	line := make([]byte, 0, len(data)+64)
	line = time.Now().UTC().AppendFormat(line, time.RFC3339Nano)
	line = append(line, ' ')
	line = append(line, msg.Stream...)
	line = append(line, ' ')
	line = append(line, tag...)
	line = append(line, ' ')
	line = append(line, data...)
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

// client serves one runtime request: start, signal or exec (with its
// stdin), relaying the guest's answers back on the same connection.
func (m *monitor) client(raw net.Conn) {
	conn := NewConn(raw, raw)
	req, err := conn.Recv()
	if err != nil {
		raw.Close()
		return
	}
	switch req.Op {
	case OpStart, OpRestart, OpSignal, OpExec:
	default:
		conn.Send(Msg{Op: EvReply, ID: req.ID, Error: fmt.Sprintf("unknown operation %q", req.Op)})
		raw.Close()
		return
	}
	m.mu.Lock()
	m.next++
	id := m.next
	m.routes[id] = &route{conn: conn, raw: raw, clientID: req.ID, exec: req.Op == OpExec}
	m.mu.Unlock()
	clientID := req.ID
	req.ID = id
	if err := m.guest.Send(req); err != nil {
		m.mu.Lock()
		delete(m.routes, id)
		m.mu.Unlock()
		conn.Send(Msg{Op: EvReply, ID: clientID, Error: err.Error()})
		raw.Close()
		return
	}
	if req.Op != OpExec {
		return
	}
	// Stdin and terminal sizes of an exec: relayed until the client
	// closes.
	for {
		in, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && req.Stdin {
				m.guest.Send(Msg{Op: OpStdin, ID: id, EOF: true})
			}
			return
		}
		switch in.Op {
		case OpStdin:
			in.ID = id
			m.guest.Send(in)
			if in.EOF {
				req.Stdin = false
			}
		case OpResize:
			in.ID = id
			m.guest.Send(in)
		}
	}
}
