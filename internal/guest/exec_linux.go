package guest

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/pty"
)

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
