package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/pty"
	"vessel.dev/vessel/internal/runtime/cgroupstat"
)

// write sends queued messages once the host has said hello, retrying a
// message while the host side is away. A message the port has not taken
// within writeStall is reported on the console (stalledWrite): one timer,
// armed only while a message is being sent, so an idle guest never wakes
// for it.
func (a *agent) write() {
	<-a.hello
	stall := time.AfterFunc(time.Hour, a.stalledWrite)
	stall.Stop()
	for m := range a.out {
		stall.Reset(writeStall)
		for {
			if err := a.conn.Send(m); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		stall.Stop()
	}
}

// writeStall is how long a message may take to leave the guest before
// stalledWrite reports it.
const writeStall = 10 * time.Second

// stalledWrite reports on the console a Send that has not returned within
// writeStall: the control channel no longer moves toward the host, so the
// host hears nothing more of the guest (neither answers nor a stall dump),
// and the console is where it can be read (the runtime quotes the
// console's end in a claim's or boot's timeout).
func (a *agent) stalledWrite() {
	logf("control channel: a message has not left the guest for %v (%d more queued); threads: %s",
		writeStall, len(a.out), threadWaits())
}

// threadWaits is where each thread of the agent waits in the kernel
// (tid:wchan), for a console line.
func threadWaits() string {
	tasks, _ := filepath.Glob("/proc/self/task/*")
	var out []string
	for _, t := range tasks {
		wchan, _ := os.ReadFile(t + "/wchan")
		out = append(out, filepath.Base(t)+":"+procState(t)+":"+string(wchan))
	}
	return strings.Join(out, " ")
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
		// A hello with a task's configuration to a guest booted warm
		// claims it, once.
		claim := !first && a.cfg.Warm && a.setupErr == "" && m.Config != nil && !m.Config.Warm
		if first || claim {
			a.cfg = m.Config
		}
		a.mu.Unlock()
		select {
		case <-a.hello:
		default:
			close(a.hello)
		}
		if first || claim {
			ev := guestproto.Msg{Op: guestproto.EvReady}
			setup := a.setup
			if claim {
				setup = a.claim
			}
			done := make(chan struct{})
			go a.watchStall(done)
			err := setup()
			close(done)
			if err != nil {
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
	case guestproto.OpStats:
		u, err := a.usage(m.Container)
		r := guestproto.Msg{Op: guestproto.EvReply, ID: m.ID, Usage: u}
		if err != nil {
			r.Error, r.Usage = err.Error(), nil
		}
		a.send(r)
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

// usage reads the counters of container's cgroup, or of the task's (all
// containers) for "". A container's memory limit is the task's.
func (a *agent) usage(container string) (*guestproto.Usage, error) {
	dir := taskCgroup
	if container != "" {
		a.mu.Lock()
		c := a.containers[container]
		a.mu.Unlock()
		if c == nil {
			return nil, fmt.Errorf("no container %q in this sandbox", container)
		}
		dir = c.cgroup
	}
	u, err := cgroupstat.V2(dir)
	if err != nil {
		return nil, err
	}
	if u.MemoryLimitBytes == 0 {
		if task, err := cgroupstat.V2(taskCgroup); err == nil {
			u.MemoryLimitBytes = task.MemoryLimitBytes
		}
	}
	return &guestproto.Usage{CPU: u.CPUNanos, CPUUser: u.CPUUserNanos, CPUSystem: u.CPUSystemNanos,
		Memory: u.MemoryBytes, MemoryMax: u.MemoryMaxBytes, Limit: u.MemoryLimitBytes, MemStat: u.MemoryStat}, nil
}
