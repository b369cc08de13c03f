// Package runc is the runc back end of runtime.Runtime: each container of a
// sandbox runs with runc, under a conmon of its own that outlives the agent,
// inside a cgroup of the sandbox limited to the task's provisioned size.
//
// It owns, on the host:
//
//	<StateDir>/runc-root/                 runc's state (--root) for all containers
//	<StateDir>/<id>/sandbox.json          the record: spec, labels, started containers,
//	                                      OOM-kill baseline (written atomically, first)
//	<StateDir>/<id>/rw.img                sparse ext4 file of EphemeralStorageGiB (20 default)
//	<StateDir>/.ext4-pool/<N>g-*.img      formatted images kept ready (4 per size)
//	<StateDir>/<id>/rw/                   ... loop-mounted here; <name>/upper, <name>/work
//	<StateDir>/<id>/containers/<name>/    the OCI bundle: config.json, rootfs/ (overlay),
//	                                      pidfile, conmon.pid, conmon.err,
//	                                      subpaths/<i>: mount i's sub-path, bound at each
//	                                      start (the spec's bind source; subpath.go)
//	/run/vessel/exits/<hash>/<id>/<id>-<name>
//	                                      the exit code, written by conmon, off the data
//	                                      disk so that it survives a full one (ExitRoot;
//	                                      <hash> of StateDir); persist/<name>/ beside it;
//	                                      <StateDir>/<id>/exits/ for older sandboxes
//	<StateDir>/<id>/sockets/              conmon's attach sockets (unused)
//	<StateDir>/<id>/etc/                  hosts, hostname, resolv.conf when Spec.EtcDir is empty
//	<StateDir>/<id>/logs/                 container logs when Spec.LogDir is empty
//	cgroup vessel/<id>                    the sandbox's limits (v1: cpu, cpuacct, memory,
//	                                      pids; v2: /sys/fs/cgroup/vessel/<id>)
//	cgroup vessel/<id>/<name>             each container's, made by runc under it
//
// Logs go to <LogDir>/<name>.log in the CRI format (conmon's k8s-file
// driver, capped at LogMaxBytes, 10 MiB by default); Delete never touches
// LogDir. The shared parent cgroup "vessel" is left in place.
//
// # How a container runs
//
// Start launches conmon with a sync pipe (_OCI_SYNCPIPE): conmon forks its
// monitor and exits, the monitor runs "runc create" and reports the
// container's PID (or runc's error) on the pipe, then Start runs "runc
// start". The runc container ID is <id>-<name>. conmon writes the exit code
// (128+signal for a signalled process) to <id>-<name> in the exit directory when the
// container ends; Wait polls that file every 50 ms (simpler than inotify and
// cheap at the scale of one host) and, about once a second, checks that
// conmon still lives. OOMKilled is code 137 with an OOM kill counted in the
// container's memory cgroup (v1 memory.oom_control, v2 memory.events) or
// more than at Create in the sandbox's. Signal is "runc kill"; Exec is "runc
// exec" (the process inherits the container's user, capabilities, limits
// and seccomp profile; the process is a process.json made from the
// container's, so that a TTY is sized before the command runs; runc runs on
// a host pty of the agent's and relays it). Delete kills
// everything ("runc kill --all", then "runc delete --force"), waits for the
// conmons, unmounts the overlays and the loop file system (the loop device
// is set to clear itself), removes the cgroups from every hierarchy, and
// removes the directory only when nothing is mounted under it any more.
// Leftovers lists whatever of a sandbox is still on the host.
//
// An idle conmon uses about 2 MiB of resident memory. Create+Start of a
// one-container sandbox takes about 3× a bare "runc run -d" of a similar
// bundle (≈60 ms against ≈20 ms on a 2-core VM; BenchmarkCreateStart).
//
// # Choices
//
//   - Cgroups are written by hand: the sandbox's limits are a handful of
//     files (v1 cpu.cfs_quota_us/cfs_period_us, memory.limit_in_bytes and
//     memory.memsw.limit_in_bytes where swap is accounted, pids.max; v2
//     cpu.max, memory.max, memory.swap.max=0, pids.max), which does not
//     justify a cgroups library and its dependencies. runc makes and fills
//     the containers' cgroups under the sandbox's, so the sandbox's limits
//     bind all its containers together. The CPU quota is MilliCPU/1000 of a
//     100 ms period; pids default to 1024 per sandbox.
//   - Ephemeral storage is an ext4 file system in a sparse file (no
//     journal, lazy inode tables: mkfs takes ≈20 ms for 20 GiB), mounted
//     with mount(8) -o loop. If that fails (no loop devices, no
//     mkfs.ext4), the sandbox gets a plain directory with no size limit and
//     a warning is logged.
//   - Security follows runtime.Security: the capabilities it lists
//     (bounding, effective, permitted; nil is the default set of container
//     runtimes, 14 capabilities), no new privileges, the seccomp
//     allow-list of package seccomp (moby's default profile for those
//     capabilities: what it does not list fails with EPERM), runtime's
//     masked and read-only /proc and /sys paths, new pid, ipc, uts, mount
//     and cgroup namespaces, the network namespace of Spec.NetNSPath (or a
//     new one with loopback only), /sys read-only; the root read-only with
//     ReadOnlyRootfs (volumes, /etc files, /dev and /dev/shm keep their
//     own modes); SupplementalGroups as additional gids.
//   - RunAsNonRoot is checked at Start against the bundle's uid (the user
//     as Create resolved it in the image): uid 0 fails with the kubelet's
//     "container has runAsNonRoot and image will run as root".
//   - Users: a name is looked up in the image's /etc/passwd and
//     /etc/group, opened inside the root file system (O_PATH with
//     RESOLVE_IN_ROOT, then reopened O_NONBLOCK) only when they are
//     regular files of at most 4 MiB; any other file there fails Create,
//     since runc init reads both whatever the user and a named pipe would
//     hang it. A numeric uid the image does not define gets gid 0. A runc
//     init that never reports (say /etc/passwd behind a volume, or a link
//     to /dev/urandom) fails Start after conmon's 30 s wait; "runc start"
//     is bounded alike.
//   - RLIMIT_NOFILE: soft 1024, hard 65535 as Fargate, clamped to the
//     agent's own hard limit (root may lack CAP_SYS_RESOURCE). No
//     RLIMIT_NPROC: the kernel counts it per uid across the host, so it
//     would be one budget shared by every task of a uid; the sandbox's
//     pids cgroup bounds each task.
//   - A container's main process is PID 1 of its namespace, as on Fargate
//     without initProcessEnabled: it ends on SIGTERM only if it handles it.
//     With Security.Init, Debian's tini-static (Config.InitPath) is bound
//     read-only at /sbin/vessel-init and runs as PID 1 ("-s --" then the
//     container's args): it forwards signals to the app and reaps
//     orphans. Exec'd processes do not go through it.
//
// # Shared with other OCI runtimes
//
// The host-side building blocks are exported for back ends that run the
// same bundles with another OCI runtime (gvisor): OCISpec and BundleParams,
// ResolveUser, CheckUserFiles, FindInit, CheckSpec, ValidName, WriteEtc, MountOverlay,
// SetupStorage/TeardownStorage, Cgroups (DetectCgroups, Create, OOMKills,
// Remove, Leftovers), Conmon (one container's conmon and the runtime's
// create behind it) and small process helpers (shared.go, conmon.go).
// The microvm back end uses the lower-level ones for a cgroup of its own
// (Cgroups' Controller and Hierarchies, WriteCgroupFile, RemoveCgroupDir),
// its spec's defaults (FillDefaults), its PID files (ReadPid,
// ProcessRunning), its record (WriteFileAtomic) and its writable disk
// (MakeExt4Image).
//
// Sandboxes (sandboxes.go) is the conmon-backed core both back ends run
// on: the sandboxes' directories and records (Record, sandbox.json written
// atomically), the per-sandbox lock, Create's and Start's frames, Prepare
// (storage, directories, /etc, root file systems and bundles), Wait, List,
// Signal, Exec and Delete, exit-status reading, and the common end of a
// destroy (WaitConmon, TearDown) and of Leftovers. A back end fills in its
// OCI runtime's commands (Command, Run), its setup (the callback of
// Create: cgroups, OOM baseline, and for gvisor the root container), its
// Destroy and its OOM rule (OOMKilled), and its Runtime's methods delegate
// to it. Runtime here is the thin runc one: cgroup vessel/<id> with its
// containers' under it, conmon running runc, "runc start", "runc kill
// --all" and "runc delete" in destroy, runc's state in Leftovers.
//
// This package imports runtime, runtime/seccomp and errdefs; it must not import the agent,
// the server or network (tests use network to wire two sandboxes).
//
//	rt, err := runc.New(runc.Config{StateDir: filepath.Join(dataDir, "sandboxes", "runc")})
//	err = rt.Create(ctx, runtime.Spec{ID: taskID, MilliCPU: 250, MemoryMiB: 512,
//		NetNSPath: a.NetNSPath, EtcDir: a.EtcDir, LogDir: logDir,
//		Containers: []runtime.ContainerSpec{{Name: "app", Layers: layers, Args: args}}})
//	err = rt.Start(ctx, taskID, "app")
//	st, err := rt.Wait(ctx, taskID, "app")
//	err = rt.Delete(ctx, taskID)
package runc
