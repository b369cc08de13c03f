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
//     /rw/<name>/{upper,work}, with /proc, /sys (read-only), /dev, /run and
//     the sandbox's hosts, hostname and resolv.conf bound read-only,
//   - makes cgroup /task with the task's CPU quota (MilliCPU of a 100 ms
//     period), memory (memory.max = the task's memory; the VM has 128 MiB
//     more for the kernel and the agent; overcommit is on so that a large
//     allocation fails by OOM kill, 137, as with runc) and pids limit, and
//     /task/<name> per container,
//
// and answers "ready" (or the error). A container's main process starts in
// a new PID and mount namespace (it is PID 1 there, as with runc) in its
// cgroup (clone3 with CLONE_INTO_CGROUP), chrooted to its root, as its
// user; exec'd processes run chrooted in the same cgroup but outside the
// PID namespace (they see the VM's process list). When a main process
// ends, whatever it left in its cgroup is killed (cgroup.kill), its output
// is drained, and the exit is reported: the code, 128+signal for a
// signalled process, OOMKilled from the cgroup's memory.events. The agent
// reaps every process (one wait4(-1) loop; starting a process and
// registering it happen under one lock so that no status is lost).
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
// connection). It ends when the VM's side of the channel closes. An idle
// monitor is a small Go process (see the runtime's benchmark for its RSS).
//
// This package imports neither runtime nor any other Vessel package, to
// keep the guest binary small.
//
//	// cmd/vessel-guest
//	if os.Getpid() == 1 { guest.Main() }
//	err := guest.RunMonitor(configPath)
package guest
