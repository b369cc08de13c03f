package toolkit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/pty"
	"vessel.dev/vessel/internal/runtime"
)

// Exec implements runtime.Execer with the OCI runtime's "exec": the
// process gets the container's environment plus p.Env. It is a child of
// the agent (not of conmon), so it ends if the agent does. With p.TTY the
// OCI runtime runs on a pseudo-terminal of Exec's (its controlling
// terminal, so that a resize reaches it as SIGWINCH): runc relays it to a
// terminal of the container's, sized before the process runs from the
// process.json; runsc gives it to the process.
func (s *Sandboxes) Exec(ctx context.Context, id, name string, p runtime.ExecProcess) (int, error) {
	if len(p.Args) == 0 {
		return -1, errdefs.InvalidArgument("exec needs a command to run")
	}
	rec, err := s.LoadContainer(id, name)
	if err != nil {
		return -1, err
	}
	if !rec.Started[name] {
		return -1, errdefs.Conflict("container %q of sandbox %s has not been started", name, id)
	}
	if _, ok, _ := s.ExitStatus(rec, name); ok {
		return -1, errdefs.Conflict("container %q of sandbox %s has exited", name, id)
	}
	var size *runtime.TerminalSize
	if p.TTY {
		select {
		case sz, ok := <-p.Resize:
			if ok {
				size = &sz
			}
		default:
		}
	}
	args := []string{"exec"}
	if s.ExecProcessFile {
		file, err := s.writeExecProcess(id, name, p, size)
		if err != nil {
			return -1, err
		}
		defer os.Remove(file)
		args = append(args, "--process", file, rec.ContainerID(name))
	} else {
		for _, e := range p.Env {
			args = append(args, "--env", e)
		}
		args = append(args, rec.ContainerID(name))
		args = append(args, p.Args...)
	}
	cmd := s.Command(ctx, id, args...)
	cmd.WaitDelay = 5 * time.Second
	var output sync.WaitGroup
	var ptmx *os.File
	if p.TTY {
		var tty *os.File
		if ptmx, tty, err = pty.Open(); err != nil {
			return -1, s.errorf("exec in %s/%s: %w", id, name, err)
		}
		defer ptmx.Close()
		defer tty.Close()
		if size != nil {
			pty.SetSize(ptmx, size.Width, size.Height)
		}
		if s.ExecProcessFile {
			// runc relays this terminal to one of the container's: raw
			// from the start, as runc only makes it so once the process
			// runs, and the process's first output would get a second \r.
			// (runsc hands it to the process as its own terminal.)
			pty.SetRaw(tty)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			return -1, s.errorf("exec in %s/%s: %w", id, name, err)
		}
		tty.Close()
		out := p.Stdout
		if out == nil {
			out = io.Discard
		}
		output.Add(1)
		go func() {
			defer output.Done()
			io.Copy(out, pty.Reader(ptmx))
		}()
		if p.Stdin != nil {
			go io.Copy(ptmx, p.Stdin)
		}
		if p.Resize != nil {
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case sz, ok := <-p.Resize:
						if !ok {
							return
						}
						pty.SetSize(ptmx, sz.Width, sz.Height)
					case <-stop:
						return
					}
				}
			}()
		}
	} else {
		cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
		if p.Stdin != nil {
			// A pipe of Exec's own, so that Wait does not wait for the end
			// of p.Stdin, which may never come.
			r, w, err := os.Pipe()
			if err != nil {
				return -1, s.errorf("exec in %s/%s: %w", id, name, err)
			}
			defer w.Close()
			cmd.Stdin = r
			go func() {
				io.Copy(w, p.Stdin)
				w.Close()
			}()
			defer r.Close()
		}
		if err := cmd.Start(); err != nil {
			return -1, s.errorf("exec in %s/%s: %w", id, name, err)
		}
		if r, ok := cmd.Stdin.(*os.File); ok {
			r.Close()
		}
	}
	err = cmd.Wait()
	if ptmx != nil {
		// The output ends once the OCI runtime (the terminal's last
		// holder) is gone; a background process that kept it is cut off.
		done := make(chan struct{})
		go func() { output.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			ptmx.Close()
			<-done
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
		// The command ended well; something it left behind held on to its
		// output.
		return cmd.ProcessState.ExitCode(), nil
	}
	if err != nil {
		return -1, s.errorf("exec in %s/%s: %w", id, name, err)
	}
	return 0, nil
}

// writeExecProcess writes the process.json of an exec in container name of
// sandbox id, next to its bundle's config.json, and returns its path: the
// container's process (user, cwd, capabilities, limits...) with p's args,
// its env added, and p's terminal of the given size.
func (s *Sandboxes) writeExecProcess(id, name string, p runtime.ExecProcess, size *runtime.TerminalSize) (string, error) {
	bundle := s.BundleDir(id, name)
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", s.errorf("exec in %s/%s: %w", id, name, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil || spec.Process == nil {
		return "", s.errorf("exec in %s/%s: the bundle's config.json has no process: %v", id, name, err)
	}
	proc := *spec.Process
	proc.Args = p.Args
	proc.Env = append(append([]string(nil), proc.Env...), p.Env...)
	proc.Terminal = p.TTY
	proc.ConsoleSize = nil
	if size != nil && size.Width > 0 && size.Height > 0 {
		proc.ConsoleSize = &specs.Box{Width: uint(size.Width), Height: uint(size.Height)}
	}
	f, err := os.CreateTemp(bundle, "exec-*.json")
	if err != nil {
		return "", s.errorf("exec in %s/%s: %w", id, name, err)
	}
	defer f.Close()
	if err := json.NewEncoder(f).Encode(proc); err != nil {
		os.Remove(f.Name())
		return "", s.errorf("exec in %s/%s: %w", id, name, err)
	}
	return f.Name(), nil
}
