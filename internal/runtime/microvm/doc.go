// Package microvm is the micro-VM back end of runtime.Runtime: each sandbox
// runs in a QEMU "microvm" machine of its own, with its own kernel (Debian's
// cloud kernel, scripts/build-guest-kernel) and the small static guest agent
// (internal/guest, built as cmd/vessel-guest) as PID 1 — the Fargate /
// Firecracker model. It uses KVM where KVM works and falls back to TCG
// emulation (correct, about 10× slower to boot) where it doesn't.
//
// It owns, on the host:
//
//	<StateDir>/cache/initramfs-<hash>.cpio  /init (the guest binary) + modules, by content hash
//	<StateDir>/cache/images/<hash>.erofs    flattened root images, by layer list
//	<StateDir>/<id>/sandbox.json            the record: spec, disks, eth0's state, started
//	<StateDir>/<id>/rw.img                  sparse ext4 of EphemeralStorageGiB (20 default)
//	<StateDir>/<id>/qemu.pid, console.log   QEMU (daemonized) and the guest's console
//	<StateDir>/<id>/ctl.sock                QEMU's end of the control channel (virtio-serial)
//	<StateDir>/<id>/monitor.{json,pid,log}  the VM's monitor
//	<StateDir>/<id>/mon.sock                the monitor's socket for Start, Signal, Exec
//	<StateDir>/<id>/ready, started/, exits/ written by the monitor
//	cgroup vessel-microvm/<id>              QEMU's and the monitor's limits (v1: cpu, memory, pids; or v2)
//	br0, tap0 in Spec.NetNSPath             the guest's link to the subnet
//
// Logs go to <LogDir>/<name>.log in the CRI format; Delete never touches
// LogDir, the cache, or the network namespace itself.
//
// # How a sandbox runs
//
// New probes KVM by booting the guest kernel under KVM with no initramfs and
// waiting at most 3 s for its first console line (here a KVM guest hangs:
// the probe kills QEMU and logs a warning that VMs run under TCG), builds
// the initramfs, and boots one probe VM to the guest agent; both probes run
// once per process. Create formats the writable disk, builds (or reuses)
// one erofs root image per distinct layer list, takes eth0's address for
// the guest, starts QEMU daemonized through a shell that first writes itself
// into the sandbox's cgroups (and nsenter into the network namespace), then
// starts the monitor the same way (in the same cgroups), which sends the
// guest its configuration; Create
// returns when the guest has mounted everything and answered "ready"
// (≈2.5 s under TCG here). Start, Signal and Exec are requests to the
// monitor, relayed to the guest. Wait polls <sandbox>/exits/<name> every
// 50 ms and, about once a second, checks that QEMU still runs. The monitor
// and QEMU outlive the agent: a new Runtime on the same StateDir finds the
// sandboxes in their records, and Wait, Signal and Exec work through the
// monitor again. Delete kills QEMU and the monitor (SIGKILL: nothing in the
// VM outlives it), gives eth0 back its address, MAC and route, removes
// br0, the cgroups and the sandbox directory. Leftovers lists whatever of a
// sandbox is still on the host.
//
// QEMU: -M microvm,acpi=on (acpi=off loses the virtio-mmio devices),
// isa-serial=on for the console, -nodefaults, -cpu max (host under KVM),
// -accel tcg,tb-size=64 or kvm, an ELF vmlinux booted through PVH, and
// "console=ttyS0 quiet panic=-1 pci=off tsc_early_khz=<host TSC>" (without
// tsc_early_khz about one boot in five hangs calibrating the TSC). Devices
// are virtio-mmio: virtio-blk "rw" (the writable disk) and "img0", "img1"...
// (read-only root images, shared by all VMs that use the image),
// virtio-net on tap0, and a virtio-serial port "vessel.ctl" on a unix
// socket (the host has no vhost-vsock).
//
// The VM is hostile. QEMU opens its files as root, then drops to the
// system user Config.QEMUUser (-runas; vessel-qemu, made with useradd
// --system when missing: no capabilities, no_new_privs) and runs under its
// own seccomp filter (-sandbox on,obsolete=deny,resourcecontrol=deny;
// elevateprivileges and spawn cannot be denied because QEMU 7.2 drops
// privileges and daemonizes after loading the filter). QEMU and the
// monitor are charged to the sandbox's cgroup; the console log is emptied
// by the monitor past Config.ConsoleMaxBytes (1 MiB). The monitor accepts
// only the sandbox's container names and bounded messages (package
// guest). Each container in the guest gets what runc gives it: its
// capabilities, no_new_privs, the seccomp allow-list of package seccomp
// compiled here to BPF (compileSeccomp; x86_64 only, i386 calls get the
// default action, x32 calls ENOSYS), pivot_root, a minimal /dev, masked
// /proc and /sys paths, and the rest of runtime.Security.
//
// # Choices
//
//   - Sizing: vCPUs = ceil(MilliCPU/1000). Memory: the VM gets the task's
//     memory plus 128 MiB for its kernel and agent; the containers are held
//     to the task's memory by a cgroup inside the guest (so a 64 MiB task
//     still boots, and OOMKilled comes from that cgroup's memory.events).
//     QEMU's host cgroup allows the VM's memory plus 256 MiB. Fractional
//     vCPU: under KVM the host quota is MilliCPU; under TCG a vCPU costs
//     more than a host CPU, so the host quota is whole vCPUs and the
//     fraction is enforced by cpu.max inside the guest (the suite's 0.25
//     vCPU busy loop measures ≈22 %). The pids limit is also the guest's
//     cgroup.
//   - Root file systems: one erofs image per image (layer list), made with
//     mkfs.erofs from the layers merged by a read-only overlay mount on the
//     host (the layer dirs carry overlayfs whiteouts — 0/0 character
//     devices and trusted.overlay.opaque — since the image cache unpacks
//     for overlayfs, so the kernel applies them; a single layer is read as
//     it is). Containers of one image share its disk; each has its own
//     overlay upper on the writable disk. OCI ".wh." files, which the image
//     cache has already converted, are not handled again here.
//   - The writable disk is formatted on the host (mkfs.ext4 without a
//     journal: ≈20 ms for 20 GiB, sparse), not by the guest.
//   - Network: QEMU runs in Spec.NetNSPath. eth0's IPv4 address and default
//     route move to the guest: eth0 is flushed, gets a random MAC and
//     becomes a port of br0 with QEMU's tap0 (created by QEMU, gone with
//     it); the guest's NIC takes eth0's old MAC, so the subnet's ARP caches
//     stay right. Delete restores eth0. While a VM runs, the namespace's
//     eth0 has no address: a check of the namespace that expects one (the
//     network manager's reconciliation) must know this runtime.
//   - Volumes (ContainerSpec.Mounts): the host directories are copied into
//     the guest's configuration like the /etc files (at most 16 MiB of
//     files: config maps, secrets, tokens), made under /rw/.volumes in the
//     guest (a tmpfs of the same size when the host's is a tmpfs: a memory
//     emptyDir) and bind-mounted into the containers, destinations resolved
//     inside each container's root. A source below another becomes a
//     sub-path of its volume, so containers share it; a Mount.SubPath is
//     passed on and the guest opens it inside its copy of the volume
//     without following any link (fsutil.OpenBeneath) and binds the
//     descriptor, at boot, before any container runs. Group and setgid
//     bits (a task's fsGroup) are kept. Writes stay in the VM, on its
//     writable disk of EphemeralStorageGiB (or the tmpfs): they never
//     reach the host's directory, which is never copied back.
//   - Control channel: virtio-serial, JSON lines (internal/guestproto). The
//     monitor (internal/runtime/microvm/monitor) is the guest binary in
//     "monitor" mode (a small static Go process, ≈4 MiB RSS idle), so the
//     host needs no other helper binary.
//     Log lines are stamped with the host's time when they reach the
//     monitor. If a monitor dies, its VM keeps running but its logs stop
//     and nothing restarts it yet; a new monitor would catch up on
//     exits through the guest's "state" answer.
//   - A container's main process is PID 1 of its own PID namespace inside
//     the VM; exec'd processes run in its root and cgroup but not its PID
//     namespace. No seccomp profile or capability drop inside the VM: the
//     VM is the isolation boundary. RLIMIT_NOFILE is set with prlimit just
//     after start. An exec with a TTY gets a pseudo-terminal of the guest
//     agent's, sized and resized by OpResize messages.
//
// This package imports runtime, errdefs, guest and runc (for runc's host
// helpers: cgroup layout and writes, PID files, atomic writes, the ext4
// image of the writable disk); it must not import the agent, the server or
// network (tests use network).
//
//	rt, err := microvm.New(microvm.Config{StateDir: filepath.Join(dataDir, "sandboxes", "microvm"),
//		KernelPath: ".cache/guest-kernel/<version>/vmlinux", GuestBinary: "bin/vessel-guest"})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
package microvm
