// Package gvisor is the gVisor back end of runtime.Runtime: each sandbox is
// one gVisor sandbox (runsc: a user-space kernel, the sentry, with its
// gofers) whose netstack takes over the task's network namespace, limited
// as a whole to the task's provisioned size. Every container of the task is
// a sub-container of that one sandbox, under a conmon of its own that
// outlives the agent.
//
// It owns, on the host:
//
//	<StateDir>/runsc-root/                runsc's state (--root) for all sandboxes:
//	                                      <container>_sandbox:<id>.state/.lock, runsc-<id>.sock
//	<StateDir>/<id>/sandbox.json          the record: spec, labels, started containers,
//	                                      OOM-kill baseline (written atomically, first)
//	<StateDir>/<id>/rw.img, rw/           the ephemeral storage, as runc's (sparse ext4, loop)
//	<StateDir>/<id>/pause/                the root container's bundle: a read-only rootfs
//	                                      holding only /pause (see pause.go)
//	<StateDir>/<id>/containers/<name>/    a sub-container's bundle: config.json, rootfs/
//	                                      (overlay), runtime and monitor scripts, conmon files
//	/run/vessel/exits/<hash>/<id>/<id>-<name>
//	                                      the exit code, written by conmon, off the data
//	                                      disk so that it survives a full one (ExitRoot;
//	                                      <hash> of StateDir); persist/<name>/ beside it;
//	                                      <StateDir>/<id>/exits/ for older sandboxes
//	<StateDir>/<id>/rw/runsc.log          runsc's log (--log: every command and the sandbox's
//	                                      processes), on the ephemeral storage, capped
//	<StateDir>/<id>/etc/, logs/           as runc's when Spec.EtcDir / Spec.LogDir are empty
//	cgroup vessel/<id>                    the task's limits, written by Vessel
//	cgroup vessel/<id>/.sandbox           the sandbox's processes (sentry, gofers, systrap
//	                                      stubs), made and filled by runsc from the root spec
//	cgroup vessel/<id>/<name>             made by runsc for each sub-container (empty on the host)
//
// The OCI bundles, the overlay root file systems, the ephemeral storage,
// the cgroups and conmon are the runc back end's (runc.OCISpec,
// runc.Conmon, runc.Cgroups, ...), and so is the conmon-backed core:
// runc.Sandboxes keeps the records, locks and exit files and does Create's,
// Start's and Restart's frames, Wait, List, Signal, Exec and Delete with runsc as
// the OCI runtime. This package adds what differs: the two cgroups, the
// pause root container and its boot, the sub-containers' bundles
// (subContainer: annotations, pids, runtime and monitor scripts), the
// OOM rule, destroy's order and killCgroup, and runsc's state in
// Leftovers.
//
// # How a sandbox runs
//
// Create prepares storage, bundles and cgroups as runc does, then boots
// the sandbox: "runsc run --detach" of the root container, whose process is
// a pause program (a static ELF of 129 bytes generated in Go, for amd64
// and arm64: pause(2)/ppoll(2) in a loop) on a read-only root file system of its
// own, annotated io.kubernetes.cri.container-type=sandbox. The root
// container joins Spec.NetNSPath (with --network=sandbox gVisor's netstack
// takes over the veth there) and cgroup vessel/<id>/.sandbox with the
// task's memory limit, CPU quota and pids limit in linux.resources, from
// which runsc also sizes the sentry (total memory, CPU count).
//
// Start runs conmon with the container's runtime script as its OCI runtime.
// runsc does not fit conmon as is: its pid file holds the sandbox's PID
// (no child of conmon, and it outlives the container), and a
// sub-container's stdio is taken at "runsc start", not at "runsc create".
// So the script runs "runsc create" (annotated container-type=container,
// sandbox-id=<id>) and "runsc start" with conmon's stdio, then leaves a
// monitor shell script and hands conmon the monitor's PID. The monitor
// runs "runsc wait" and exits with the container's code (128+signal when
// signalled); conmon (a subreaper) reaps it and writes the exit file.
// Wait, adoption after an agent restart, List, logs (conmon's k8s-file,
// CRI format) and Leftovers then work as in the runc back end (the same
// runc.Sandboxes code). Signal is
// "runsc kill", Exec "runsc exec" (with a TTY, on a host pty of the
// agent's, which runsc sees on its stdin and hands to the sandbox). Delete runs "runsc delete
// --force" on every sub-container and then on the root container (which
// takes the sentry and gofers with it), SIGKILLs whatever is still in the
// sandbox's cgroups, kills the monitors, waits for the conmons, unmounts,
// and removes storage, cgroups and the directory.
//
// OOM: the host's OOM killer ends the whole sandbox when it outgrows its
// memory cgroup; the monitors' "runsc wait" then fails and they report
// 137, and OOMKilled is set when the sandbox's cgroups (vessel/<id> and
// .sandbox, where cgroup v1 counts the kill) recorded an OOM kill since
// Create.
//
// # Choices
//
//   - runsc flags: --platform=systrap (Config.Platform; never kvm unless
//     asked), --network=sandbox, --oci-seccomp (runsc otherwise ignores the
//     bundle's seccomp section; with it the sentry applies the seccomp
//     allow-list to the container's processes: Seccomp: 2 inside),
//     --gofer-network-namespace=new (the default shares one namespace
//     bind-mounted at <root>/null-netns, which outlives every sandbox),
//     --overlay2=none (root file system writes reach the overlay's upper
//     directory on the host through the gofer, rather than a sentry-side
//     upper layer discarded with the container: Restart keeps the
//     writable layer, as runc's does),
//     --log on the sandbox's ephemeral storage (rw/runsc.log): what the
//     sentry logs between two runsc commands is bounded by the task's
//     storage, and the log is emptied beyond 1 MiB before each command.
//     No --debug-log (it makes a file per command: the monitors' waits,
//     each Signal) and never --debug, --strace, --pcap-log, --profile*
//     or --trace; --host-fifo and --host-uds stay none. Root file system
//     writes go to the overlay's upper directory on the same storage
//     (--overlay2=none); the sentry's memory is charged to the task's
//     memory cgroup.
//   - Security: the bundles are runc's (runc.OCISpec), so capabilities,
//     the seccomp allow-list, no_new_privs, the read-only root,
//     supplemental groups, runAsNonRoot and the init (tini, bound at
//     /sbin/vessel-init) are the same; the runtimetest security cases
//     check each inside the sandbox. Differences: CAP_NET_RAW is
//     withheld (below), and with a read-only root an empty read-only
//     tmpfs goes on /tmp, because runsc otherwise mounts a writable tmpfs
//     there when the image's /tmp is empty. The sentry reads the image's
//     /etc/passwd through its own VFS: the checks of the runc back end
//     (regular file, 4 MiB) apply at Create as well.
//   - The sandbox is booted at Create, not at the first Start: Create then
//     reports a sandbox that cannot boot, and Start only adds a
//     sub-container. The pause program is generated rather than taken
//     from an image, so no pause image or build step is needed.
//   - The pids limit: gVisor's own threads (sentry, gofers, one systrap
//     stub per address space) count in the host's pids cgroup, and a
//     sentry that cannot make a thread takes the whole sandbox down. So
//     the host's limit is PidsLimit+256, a guard, and PidsLimit itself is
//     the containers' RLIMIT_NPROC, which the sentry enforces per user of
//     its own kernel, so within this sandbox only (runc's bundles have no
//     RLIMIT_NPROC: on the host it is one budget per uid).
//   - The CPU quota's CFS period is 250 ms, not runc's 100 ms. The sentry
//     counts CPU time in 10 ms ticks and charges a stale tick to whatever
//     runs when a throttled sandbox resumes: with 100 ms, a busy loop in
//     0.25 vCPU showed 31–49 % of a CPU in its /proc while the host's
//     cpuacct showed 25 %; with 250 ms it shows 23–29 %. Vessel makes
//     vessel/<id>/.sandbox itself, period first, before runsc writes the
//     quota there (TestLimitsBindTheSandbox checks the host's view).
//   - CAP_NET_RAW is dropped by runsc (no raw sockets without --net-raw):
//     the containers get runc's capability set without it.
//
// # Weak points
//
//   - The sandbox's CPU quota also throttles its boot: Create+Start takes
//     ≈340 ms at 0.25 vCPU and ≈230 ms at 2 vCPU against ≈105 ms for a bare
//     "runsc run --detach" (BenchmarkCreateStart on a 2-core VM). An idle
//     sandbox costs ≈94 MiB RSS / ≈45 MiB PSS on the host (sentry, gofer,
//     stubs; much of the RSS is runsc's text, shared between sandboxes),
//     plus ≈4 MiB RSS for conmon and the monitor.
//   - A 0.25 vCPU sandbox may stall up to ≈190 ms when throttled (the
//     250 ms period, above), where runc's stall at most 75 ms.
//   - The memory limit binds the sentry and gofers too: their own ≈45 MiB
//     (PSS) come out of the task's MemoryMiB, where Fargate does not
//     charge a task for its VM.
//   - RLIMIT_NPROC counts per user, so PidsLimit binds each user of the
//     sandbox separately; the host's PidsLimit+256 binds them together.
//   - The monitor tells "not started" and "sandbox gone" apart by runsc's
//     messages (runsc is pinned: scripts/build-runsc).
//   - When the OOM killer ends the sandbox, every container reports 137;
//     a container that exits by itself meanwhile may be reported as
//     OOM-killed too.
//   - An exec'd process is a child of "runsc exec", itself a child of the
//     agent.
//
// This package imports runtime, errdefs and runc; it must not import the
// agent, the server or network (tests use network to wire sandboxes).
//
//	rt, err := gvisor.New(gvisor.Config{StateDir: filepath.Join(dataDir, "sandboxes", "gvisor"),
//		RunscPath: runscPath})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
package gvisor
