package k8senv

import "syscall"

// procAttr makes a child die with the test binary, even when go test's
// -timeout kills it before t.Cleanup runs, and puts it in its own process
// group so that a script and the compilers it runs are stopped together.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
