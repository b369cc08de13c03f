// Package pty opens pseudo-terminals for execs with a TTY: the runc and
// gVisor runtimes give one to the OCI runtime's "exec --tty" on the host,
// the micro-VM guest agent to the command inside the VM.
//
// It owns nothing but the few ioctls involved and imports nothing of
// Vessel's. Usage:
//
//	ptmx, tty, err := pty.Open()
//	pty.SetSize(ptmx, 80, 24)
//	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
//	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
//	cmd.Start(); tty.Close()
//	io.Copy(out, pty.Reader(ptmx)) // until the last holder of tty is gone
package pty
