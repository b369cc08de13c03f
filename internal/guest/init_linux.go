package guest

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// InitMain is a container's init (argv: vessel-init path args...): it
// runs the command as its child, forwards every signal it gets to it,
// reaps every process that ends below it and exits with the command's
// status (128+signal for a signalled one), as tini does.
func InitMain(argv []string) int {
	if len(argv) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vessel-init path args...")
		return 2
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	pid, err := syscall.ForkExec(argv[1], argv[2:], &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vessel-init: exec %s: %v\n", argv[1], err)
		return 127
	}
	for sig := range sigs {
		s := sig.(syscall.Signal)
		if s != syscall.SIGCHLD {
			// SIGURG is also the Go runtime's own preemption signal:
			// passed on, it is harmless to a program.
			if s != syscall.SIGURG {
				syscall.Kill(pid, s)
			}
			continue
		}
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if got <= 0 || err != nil {
				break
			}
			if got == pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 0
}
