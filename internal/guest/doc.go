// Package guest is both ends of the micro-VM runtime's control channel: the
// guest agent that runs as PID 1 of each VM, and the host-side monitor that
// holds the channel for one VM. Both are built into the small static
// binary cmd/vessel-guest (CGO_ENABLED=0): as PID 1 it is the agent,
// "vessel-guest monitor <config>" is the monitor, and "vessel-ctr ..." (its
// argv[0]) is a container's main process being set up.
//
// # The agent (PID 1)
//
// It mounts proc, sys, devtmpfs, devpts, /tmp, /run and cgroup2, loads the
// kernel modules of the initramfs in the order of /lib/modules/modules.order
// (virtio_ring, virtio, virtio_mmio, virtio_pci*, virtio_blk, failover,
// net_failover, virtio_net, virtio_console, libcrc32c, erofs, overlay:
// decompressed when the initramfs is built), finds the virtio-serial port
// named vessel.ctl through /sys/class/virtio-ports (no udev, so no
// /dev/virtio-ports link) and waits for the host's hello. The first hello
// carries a Config; the agent then
//
//   - sets the hostname and eth0 (address and default route, netlink),
//   - finds its disks by virtio-blk serial: "rw", the writable ext4 disk
//     the host formatted, and "img0", "img1"...: one read-only erofs (or
//     ext4) root image per distinct image of the task,
//   - makes each container's root an overlay of its image disk under
//     /rw/<name>/{upper,work}, with /sys (read-only, masked), a minimal
//     /dev, /run and the sandbox's hosts, hostname and resolv.conf bound
//     read-only,
//   - makes cgroup /task with the task's CPU quota (MilliCPU of a 100 ms
//     period), memory (memory.max = the task's memory; the VM has 128 MiB
//     more for the kernel and the agent; overcommit is on so that a large
//     allocation fails by OOM kill, 137, as with runc) and pids limit, and
//     /task/<name> per container,
//
// and answers "ready" (or the error). Before all that it moves the
// initramfs's files onto a tmpfs over / (as switch_root does), because
// pivot_root fails in a namespace whose root is the kernel's rootfs.
//
// # Containers are confined as runc confines them
//
// Every process of a container (its main process and each exec) starts as
// the agent's binary "vessel-ctr" in a mount namespace of its own (the main
// process also in its own PID, IPC and UTS namespaces, as PID 1 there), in
// the container's cgroup, and confines itself before exec'ing the command
// (ContainerInit): a fresh /proc with the runtime's masked paths (an empty
// read-only tmpfs or /dev/null over them) and read-only paths, /dev/mqueue,
// the root read-only if asked, pivot_root into the root (the VM's own
// mounts are detached, not merely out of a chroot's reach), the capability
// bounding set, the user's uid, gid and exactly the supplemental groups of
// Security, then exactly Security.Capabilities as effective and permitted
// set (none inheritable or ambient), no_new_privs, and the seccomp filter
// (compiled on the host from the runtime's allow-list) as the last step.
// /dev is a tmpfs of the container's own with null, zero, full, random,
// urandom, tty, a devpts instance with ptmx, shm, mqueue and the fd links
// (no disk of the VM); /sys is read-only with its masked paths. With
// Security.Init the guest binary is the container's PID 1 ("vessel-init":
// runs the command as its child, forwards signals, reaps zombies, exits
// with the command's status). RunAsNonRoot fails the start with the
// kubelet's message when the user resolves to uid 0. /etc/passwd and
// /etc/group are read inside the root (openat2 RESOLVE_IN_ROOT),
// non-blocking, as regular files of at most 4 MiB: a FIFO there cannot
// hang the agent; a numeric uid without an entry gets gid 0, as with runc.
//
// # Protocol
//
// JSON lines of Msg in both directions (see the Op and Ev constants): the
// host sends hello, start, restart (an exited container runs again on the
// same root and writable layer), signal, exec and stdin; the guest sends ready or
// state (to a later hello: every container's state, so that a new monitor
// catches up), reply, started, log (one line of a container's stdout or
// stderr; lines over 16 KiB are split and marked partial), exit, output and
// exec-exit. The guest sends nothing before the first hello: QEMU drops
// what a guest writes while no client holds the socket.
//
// # The monitor (host)
//
// One per VM, started by the runtime in a session of its own so that it
// outlives the agent: it connects to QEMU's socket, sends the hello, writes
// each container's log to <LogDir>/<name>.log in the CRI format (stamped
// with the host's time on arrival, capped at LogMaxBytes by truncation),
// exit statuses to <sandbox>/exits/<name>, started markers and the ready
// file, and serves the runtime's requests on <sandbox>/mon.sock (one per
// connection). It ends when the VM's side of the channel closes.
//
// Everything the guest sends is untrusted. The monitor reads lines of at
// most MaxMsg (1 MiB; a longer one is read to its end without being kept
// and dropped), accepts only the container names of its own configuration
// (files are opened through os.Root of its directories), the streams
// stdout and stderr, and log data without a newline; any other message is
// dropped and logged (the first 20). The sandbox's own containers go on
// being served: a guest that misbehaves harms only itself. The monitor
// also empties the VM's console log when it grows past ConsoleMaxBytes.
// An idle
// monitor is a small Go process (see the runtime's benchmark for its RSS).
//
// This package imports neither runtime nor any other Vessel package, to
// keep the guest binary small.
//
//	// cmd/vessel-guest
//	if os.Getpid() == 1 { guest.Main() }
//	err := guest.RunMonitor(configPath)
package guest
