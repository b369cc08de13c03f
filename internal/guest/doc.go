// Package guest is the micro-VM's guest agent: PID 1 of each VM, built into
// the small static binary cmd/vessel-guest (CGO_ENABLED=0). It boots the VM
// from the initramfs, waits for the host's hello on the control channel
// (internal/guestproto), sets the sandbox up from the Config it carries
// (a warm one only its network and writable disk, the rest from the hello
// of the task that claims it), and runs, signals and execs in the containers as the host asks,
// reporting their logs and exits. Every process of a container is
// confined as runc confines it (namespaces, pivot_root, masked /proc and
// /sys, a minimal /dev, capabilities, no_new_privs, seccomp last).
//
// One file per concern:
//
//	agent_linux.go     Main, the agent's state, paths inside the guest
//	boot_linux.go      PID 1's start: off the initramfs, mounts, modules, the port
//	protocol_linux.go  the control channel: hello, requests, replies, sends
//	setup_linux.go     the sandbox: hostname, eth0, disks, cgroups, container roots
//	volumes_linux.go   the sandbox's volumes and the containers' mounts of them
//	process_linux.go   a container's main process: spawn, start, restart, signal, logs, reaping
//	exec_linux.go      an exec: pipes or a terminal, its output and exit
//	user_linux.go      the user and groups, from the image's /etc/passwd and /etc/group
//	confine_linux.go   vessel-ctr: how a container's process confines itself before exec
//	init_linux.go      vessel-init: a container's init (Security.Init)
//	roles.go           argv[0] of the binary's other roles
//
// Usage (cmd/vessel-guest; the same binary is the host-side monitor with
// "monitor <config>", internal/runtime/microvm/monitor):
//
//	switch {
//	case os.Args[0] == guest.InitArg:
//		os.Exit(guest.InitMain(os.Args))
//	case os.Args[0] == guest.ContainerInitArg:
//		err := guest.ContainerInit(os.Args) // returns only on error
//	case os.Getpid() == 1:
//		guest.Main() // never returns; powers the VM off on a fatal error
//	}
//
// This package imports only guestproto, fsutil and pty of Vessel; never the
// host's side (the runtime, the monitor), which imports guestproto, not
// this package.
package guest
