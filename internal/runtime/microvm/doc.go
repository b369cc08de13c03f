// Package microvm is the micro-VM back end of runtime.Runtime: each sandbox
// runs in a QEMU "microvm" machine of its own, with its own kernel
// (scripts/build-guest-kernel) and the static guest agent
// (cmd/vessel-guest) as PID 1, under KVM where KVM works and TCG
// emulation elsewhere. The VM is hostile: QEMU runs as an unprivileged
// user under its own seccomp filter, in the sandbox's cgroup
// vessel-microvm/<id> and network namespace (eth0's address moves to the
// guest through br0 and tap0, and back at Delete).
//
// Create builds the VM's disks (a writable ext4 disk, one read-only erofs
// root image per image, cached), starts QEMU and the VM's monitor
// (package monitor: the guest binary in "monitor" mode, which outlives the
// agent) and returns once the guest has set the sandbox up. Start, Signal
// and Exec are requests to the monitor, in the protocol of guestproto;
// the guest confines each container as runc does on the host
// (runtime.Security, the seccomp allow-list compiled to BPF here). The sandboxes' records, locks, spec defaults and exit polling
// are the toolkit's (toolkit.Store, toolkit.WaitExit); the exit files are
// the monitor's.
//
// Warm VMs (runtime.Warmer, warm.go): Warm boots a VM of the warm class
// (2 vCPU / 4 GiB) with its network, writable disk and empty image slots
// to its guest agent; Claim writes the task's images into the slots,
// commits a record under the task's ID that names the VM's warm ID (one
// rename), and restarts the monitor with the task's configuration, which
// the guest takes as its claim.
//
//	rt, err := microvm.New(microvm.Config{StateDir: filepath.Join(dataDir, "sandboxes", "microvm"),
//		KernelPath: ".cache/guest-kernel/<version>/vmlinux", GuestBinary: "bin/vessel-guest"})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
//
// This package imports runtime, runtime/toolkit, runtime/seccomp,
// runtime/microvm/monitor, guestproto and errdefs; it must not import
// internal/guest, task, another back end, the agent, the server or network
// (tests use runc and network).
package microvm
