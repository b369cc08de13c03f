package runc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// Name is the runtime's name.
const Name = runtime.Runc

// Config configures the runc runtime.
type Config struct {
	// StateDir holds one directory per sandbox and runc's own state
	// (<data-dir>/sandboxes/runc). Required.
	StateDir string
	// RuncPath and ConmonPath are the binaries; found in PATH by default.
	RuncPath   string
	ConmonPath string
	// InitPath is the static init run as PID 1 of containers whose
	// Security.Init is set (Debian's tini-static, found by default);
	// without one such containers are refused.
	InitPath string
	// Logger receives warnings (e.g. ephemeral storage without a size
	// limit); slog.Default() by default.
	Logger *slog.Logger
}

// Runtime runs each sandbox's containers with runc, each under its own
// conmon, in a cgroup of the sandbox limited to its provisioned size.
type Runtime struct {
	cfg      Config
	cg       *toolkit.Cgroups
	runcRoot string
	// sb holds the sandboxes' records, locks and exit files, and does what
	// runc and runsc do alike (Wait, List, Signal, Exec, ...).
	sb *toolkit.Sandboxes
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Execer    = (*Runtime)(nil)
	_ runtime.Restarter = (*Runtime)(nil)
	_ runtime.Warmer    = (*Runtime)(nil)
)

// New checks that runc and conmon are there and work, and returns the
// runtime. Errors of kind errdefs.ErrUnavailable say why this host cannot
// run it.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errdefs.InvalidArgument("runc runtime: StateDir is required")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, errdefs.InvalidArgument("runc runtime: StateDir %q: %v", cfg.StateDir, err)
	}
	cfg.StateDir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, b := range []struct {
		path *string
		name string
	}{{&cfg.RuncPath, "runc"}, {&cfg.ConmonPath, "conmon"}} {
		if *b.path == "" {
			*b.path = b.name
		}
		p, err := exec.LookPath(*b.path)
		if err != nil {
			return nil, errdefs.Unavailable("%s not found (install it or set its path): %v", b.name, err)
		}
		*b.path = p
		if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
			return nil, errdefs.Unavailable("%s --version failed: %v: %s", p, err, bytes.TrimSpace(out))
		}
	}
	if os.Geteuid() != 0 {
		return nil, errdefs.Unavailable("the runc runtime needs root (cgroups, mounts)")
	}
	cg, err := toolkit.DetectCgroups()
	if err != nil {
		return nil, errdefs.Unavailable("%v", err)
	}
	r := &Runtime{cfg: cfg, cg: cg, runcRoot: filepath.Join(dir, "runc-root")}
	r.sb = &toolkit.Sandboxes{Name: Name, Store: toolkit.Store{Dir: dir, Reserved: []string{"runc-root"}},
		Log: cfg.Logger, Cgroups: cg, ExitRoot: toolkit.DefaultExitRoot(dir),
		Command: r.command, ExecProcessFile: true, Run: r.runc, OOMKilled: r.oomKilled, Destroy: r.destroy}
	if err := os.MkdirAll(r.runcRoot, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	if out, err := exec.Command(cfg.RuncPath, "--root", r.runcRoot, "list", "-q").CombinedOutput(); err != nil {
		return nil, errdefs.Unavailable("%s list failed: %v: %s", cfg.RuncPath, err, bytes.TrimSpace(out))
	}
	if r.sb.HostNofile, err = toolkit.HostLimits(); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	if cfg.InitPath == "" {
		cfg.InitPath = toolkit.FindInit()
	}
	r.cfg.InitPath, r.sb.InitPath = cfg.InitPath, cfg.InitPath
	return r, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return Name }

// Create implements runtime.Runtime.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Create(ctx, spec, func(rec *toolkit.ConmonRecord) error {
		spec := rec.Spec
		if err := r.cg.Create(spec.ID, setupLimits(spec)); err != nil {
			return fmt.Errorf("runc runtime: sandbox %s: %w", spec.ID, err)
		}
		rec.OOMBase = r.cg.OOMKills(toolkit.SandboxCgroup(spec.ID))
		return r.sb.Prepare(ctx, rec, nil, nil)
	})
}

// IdleWarmMemoryMiB is the host memory an idle warm runc sandbox is
// counted for: no process runs in it; what it holds is the kernel's (its
// cgroups, the loop device, the mounted ext4 file system's inodes), about
// 0.2 MiB, beside about 4.4 MiB of page cache the kernel may reclaim
// (BenchmarkCreateStart's warm-idle-held-KiB and warm-idle-cache-KiB;
// docs/benchmarks.md), rounded up.
const IdleWarmMemoryMiB = 1

// WarmClass implements runtime.Warmer: a warm runc sandbox runs nothing
// until its task's containers, so it serves any size (Claim writes the
// task's limits to its cgroup).
func (r *Runtime) WarmClass() runtime.WarmClass {
	return runtime.WarmClass{IdleMemoryMiB: IdleWarmMemoryMiB}
}

// Warm implements runtime.Warmer: ahead of its task, everything Create
// does that depends neither on the images nor on the containers: the
// sandbox's directory and record, its cgroup vessel/<warm ID> with the
// spec's limits, its ephemeral storage (the ext4 file system mounted) and
// its exit, socket and container directories.
func (r *Runtime) Warm(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Warm(ctx, spec, func(rec *toolkit.ConmonRecord) error {
		spec := rec.Spec
		if err := r.cg.Create(spec.ID, setupLimits(spec)); err != nil {
			return fmt.Errorf("runc runtime: warm sandbox %s: %w", spec.ID, err)
		}
		rec.OOMBase = r.cg.OOMKills(toolkit.SandboxCgroup(spec.ID))
		return r.sb.PrepareSandbox(ctx, rec, nil)
	})
}

// Claim implements runtime.Warmer: the task's limits on the warm
// sandbox's cgroup, then what Create adds for the containers (log
// directory, overlays, bundles). The sandbox keeps its warm ID's
// directory and cgroup; runc's containers are named by the task's ID.
// A primed warm sandbox (Prime) whose containers are exactly the task's
// keeps them, created and waiting for their start, under their warm
// names; one primed for other containers has them deleted first.
func (r *Runtime) Claim(ctx context.Context, warmID string, spec runtime.Spec) error {
	var warm *toolkit.ConmonRecord
	keep := false
	return r.sb.Claim(ctx, warmID, spec, func(w *toolkit.ConmonRecord, spec *runtime.Spec) error {
		warm, keep = w, r.sb.PrimedServes(w, *spec)
		return nil
	}, func(rec *toolkit.ConmonRecord) error {
		home := rec.HomeID()
		if err := r.cg.Create(home, setupLimits(rec.Spec)); err != nil {
			return fmt.Errorf("runc runtime: sandbox %s (warm %s): %w", rec.Spec.ID, home, err)
		}
		rec.OOMBase = r.cg.OOMKills(toolkit.SandboxCgroup(home))
		if keep {
			err := r.sb.AdoptPrimed(rec, warm)
			if err == nil {
				return nil
			}
			r.cfg.Logger.Warn("runc: keeping a primed sandbox's containers failed; they are deleted and the task's made",
				"task", rec.Spec.ID, "warm_sandbox", warmID, "err", err)
		}
		if len(warm.Spec.Containers) > 0 {
			if !keep {
				r.cfg.Logger.Info("runc: the warm sandbox was primed for other containers than the task's; they are deleted first",
					"task", rec.Spec.ID, "warm_sandbox", warmID)
			}
			if err := r.sb.Unprime(rec, warm, func(cid string) error {
				return r.deleteContainer(ctx, rec.Spec.ID, cid)
			}); err != nil {
				return fmt.Errorf("runc runtime: sandbox %s (warm %s): deleting its primed containers: %w", rec.Spec.ID, home, err)
			}
		}
		return r.sb.PrepareContainers(rec, nil)
	})
}

var _ runtime.Primer = (*Runtime)(nil)

// PrimedContainerMemoryMiB is the host memory one primed container is
// counted for: its conmon (≈2 MiB resident) and its runc init waiting
// for the start (≈10.5 MiB resident, ≈3 MiB of it charged to the
// container's cgroup), measured on this project's CI host, rounded up.
const PrimedContainerMemoryMiB = 13

// PrimedMemoryMiB implements runtime.Primer.
func (r *Runtime) PrimedMemoryMiB(spec runtime.Spec) int64 {
	return PrimedContainerMemoryMiB * int64(len(spec.Containers))
}

// Prime implements runtime.Primer: in warm sandbox spec.ID, for each
// container, its bundle and conmon, which runs "runc create": runc init
// has set the container up (namespaces, mounts, the seccomp filter) and
// waits for the start. A Start after the Claim only writes the task's
// CPU quota and lets init run the process.
func (r *Runtime) Prime(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Prime(ctx, spec, func(rec *toolkit.ConmonRecord, name string) (int, error) {
		return r.conmon(rec, name).Create(ctx)
	})
}

// conmon is container name's conmon, running runc with the runtime's
// state root.
func (r *Runtime) conmon(rec *toolkit.ConmonRecord, name string) toolkit.Conmon {
	c := r.sb.Conmon(rec, name)
	c.Path, c.Runtime, c.RuntimeArgs = r.cfg.ConmonPath, r.cfg.RuncPath, []string{"--root=" + r.runcRoot}
	return c
}

// deleteContainer is "runc delete --force" of container cid of sandbox
// id; a container runc no longer knows is no error.
func (r *Runtime) deleteContainer(ctx context.Context, id, cid string) error {
	if out, err := r.runc(ctx, id, "delete", "--force", cid); err != nil && r.sb.State(ctx, id, cid) != "" {
		return fmt.Errorf("runc delete %s: %w: %s", cid, err, out)
	}
	return nil
}

// limits is the cgroup limits of a sandbox of spec's size.
func limits(spec runtime.Spec) toolkit.Limits {
	return toolkit.Limits{MilliCPU: spec.MilliCPU, MemoryBytes: spec.MemoryMiB << 20, Pids: spec.PidsLimit}
}

// setupLimits is limits without the CPU quota, which launch writes once
// runc init has set the container up and before its process runs: at
// 0.25 vCPU the quota would stretch runc init's own work (its Go runtime,
// namespaces, mounts, the seccomp filter's compilation) to 3-4 times its
// length, the platform's set-up time charged to the task.
func setupLimits(spec runtime.Spec) toolkit.Limits {
	l := limits(spec)
	l.MilliCPU = 0
	return l
}

// Start implements runtime.Runtime: it launches conmon, which runs
// "runc create" and stays as the container's monitor, writes the task's
// CPU quota, then starts the container as "runc start" would (start).
func (r *Runtime) Start(ctx context.Context, id, name string) error {
	return r.sb.Start(id, name, func(rec *toolkit.ConmonRecord) error {
		if err := r.launch(ctx, rec, name); err != nil {
			return fmt.Errorf("runc runtime: start %s/%s: %w", id, name, err)
		}
		return nil
	})
}

// Restart implements runtime.Restarter: "runc delete" of the ended
// container (its root file system, an overlay mounted by the sandbox, and
// its writable layer stay), then a new conmon and "runc start" as in Start.
// conmon appends to the container's log.
func (r *Runtime) Restart(ctx context.Context, id, name string) error {
	return r.sb.Restart(id, name, func(rec *toolkit.ConmonRecord) error {
		if err := r.deleteContainer(ctx, id, rec.ContainerID(name)); err != nil {
			return err
		}
		// A primed container's init ran its first start; this one is new.
		delete(rec.Primed, name)
		// An OOM kill of the last run must not mark the next run's 137.
		rec.OOMBase = r.cg.OOMKills(toolkit.SandboxCgroup(rec.HomeID()))
		return nil
	}, func(rec *toolkit.ConmonRecord) error {
		if err := r.launch(ctx, rec, name); err != nil {
			return fmt.Errorf("runc runtime: restart %s/%s: %w", id, name, err)
		}
		return nil
	})
}

func (r *Runtime) launch(ctx context.Context, rec *toolkit.ConmonRecord, name string) error {
	c := r.conmon(rec, name)
	pid, primed := rec.Primed[name]
	if primed && !initAlive(pid) {
		return fmt.Errorf("container %s was created ahead of its task, and its init (PID %d) is gone", c.ID, pid)
	}
	if !primed {
		var err error
		if pid, err = c.Create(ctx); err != nil {
			return err
		}
	}
	kill := func() { r.runc(context.WithoutCancel(ctx), rec.Spec.ID, "kill", c.ID, "KILL") }
	// The container's init waits for the start before it runs the
	// container's process: from here on the sandbox runs at its size.
	if err := r.cg.SetCPU(rec.HomeID(), limits(rec.Spec)); err != nil {
		kill()
		return err
	}
	// runc init reads the container's /etc/passwd and /etc/group, which
	// may be anything (a named pipe behind a volume, a link to
	// /dev/urandom), before it reports to "runc create" (conmon's wait for
	// the PID bounds that) and finishes before the exec the start waits
	// for: both waits are bounded, and a container that does not get
	// there is killed.
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := r.start(sctx, rec.Spec.ID, c.ID, pid); err != nil {
		if sctx.Err() != nil {
			kill()
			return fmt.Errorf("the container did not reach its process within %s (is its /etc/passwd or /etc/group readable?); it was killed", startTimeout)
		}
		return err
	}
	return nil
}

// execFifo is the named pipe runc init of a created container writes to,
// under runc's state directory of the container: opening it for reading
// is what "runc start" does (runc 1.0 and later).
const execFifo = "exec.fifo"

// start lets created container cid, whose init is pid, run its process:
// what "runc start" does for a created container, without running runc
// (one process fewer on every launch, ≈10 ms). It opens the container's
// exec.fifo for reading, which lets runc init (blocked opening it for
// writing) go on; reads the byte init writes just before it executes the
// container's process; and removes the fifo, after which runc reports the
// container running. While it waits it checks, as runc does, that init
// is alive. Without a fifo (another runc's layout) it runs "runc start".
func (r *Runtime) start(ctx context.Context, id, cid string, pid int) error {
	path := filepath.Join(r.runcRoot, cid, execFifo)
	if _, err := os.Stat(path); err != nil {
		if out, err := r.runc(ctx, id, "start", cid); err != nil {
			return fmt.Errorf("runc start: %w: %s", err, out)
		}
		return nil
	}
	opened := make(chan *os.File, 1)
	openErr := make(chan error, 1)
	go func() {
		// Blocks until init opens its end.
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			openErr <- err
			return
		}
		opened <- f
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case f := <-opened:
			defer f.Close()
			b := make([]byte, 1)
			if n, err := f.Read(b); n != 1 || b[0] != '0' {
				return fmt.Errorf("runc start: container %s: its init gave no start byte (%q, %v): it ended before its process ran", cid, b[:n], err)
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("runc start: %w", err)
			}
			return nil
		case err := <-openErr:
			return fmt.Errorf("runc start: %w", err)
		case <-tick.C:
			if !initAlive(pid) {
				unblockFifo(path, opened)
				return fmt.Errorf("runc start: container %s: its init (PID %d) ended before its process ran", cid, pid)
			}
		case <-ctx.Done():
			unblockFifo(path, opened)
			return ctx.Err()
		}
	}
}

// unblockFifo ends a blocked open of path for reading (start's, given up)
// by opening the other end, and closes what the open returns.
func unblockFifo(path string, opened <-chan *os.File) {
	if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	select {
	case f := <-opened:
		f.Close()
	case <-time.After(time.Second):
	}
}

// initAlive reports whether process pid exists and is not a zombie.
func initAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z'
}

// startTimeout bounds the start: the last steps of runc init, which take
// milliseconds.
const startTimeout = 30 * time.Second

// command returns a runc command with the runtime's state root; runc
// needs no sandbox ID (id) in its global flags.
func (r *Runtime) command(ctx context.Context, id string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, r.cfg.RuncPath, append([]string{"--root", r.runcRoot}, args...)...)
}

// runc runs a runc command with the runtime's state root and returns its
// combined output.
func (r *Runtime) runc(ctx context.Context, id string, args ...string) ([]byte, error) {
	out, err := r.command(ctx, id, args...).CombinedOutput()
	return bytes.TrimSpace(out), err
}

// oomKilled reports whether a container that ended with 137 was
// OOM-killed. On cgroup v1 the kernel counts an OOM kill in the victim's
// cgroup only (the container's); on v2 in it and its parents.
func (r *Runtime) oomKilled(rec *toolkit.ConmonRecord, name string) bool {
	return r.cg.OOMKills(toolkit.ContainerCgroup(rec.HomeID(), name)) > 0 ||
		r.cg.OOMKills(toolkit.SandboxCgroup(rec.HomeID())) > rec.OOMBase
}

// Wait implements runtime.Runtime. It polls the container's exit file, which
// conmon writes when the container ends, every 50 ms.
func (r *Runtime) Wait(ctx context.Context, id, name string) (runtime.ExitStatus, error) {
	return r.sb.Wait(ctx, id, name)
}

// Signal implements runtime.Runtime with "runc kill".
func (r *Runtime) Signal(ctx context.Context, id, name string, sig syscall.Signal) error {
	return r.sb.Signal(ctx, id, name, sig)
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error { return r.sb.Delete(ctx, id) }

// destroy kills what runs in the sandbox and removes everything it holds:
// containers, conmons, mounts, loop device, cgroups and its directory. It
// works on a sandbox in any state, also one whose Create failed half-way.
func (r *Runtime) destroy(ctx context.Context, rec *toolkit.ConmonRecord) error {
	id, names := rec.Spec.ID, rec.Names()
	for _, n := range names {
		r.runc(ctx, id, "kill", "--all", rec.ContainerID(n), "KILL")
	}
	for _, n := range names {
		r.sb.WaitConmon(id, n, "its container was killed")
	}
	var errs []error
	for _, n := range names {
		if err := r.deleteContainer(ctx, id, rec.ContainerID(n)); err != nil {
			errs = append(errs, err)
		}
	}
	return r.sb.TearDown(rec, names, errs)
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) { return r.sb.List(ctx) }

// Exec implements runtime.Execer with "runc exec": the process gets the
// container's user, capabilities, limits and seccomp profile, the
// container's environment plus p.Env. It is a child of the agent (not of
// conmon), so it ends if the agent does. TTYs are not supported yet.
func (r *Runtime) Exec(ctx context.Context, id, name string, p runtime.ExecProcess) (int, error) {
	return r.sb.Exec(ctx, id, name, p)
}

// Leftovers lists what of sandbox id is still on the host: its directory,
// mounts, loop devices, cgroups, runc state, and processes (conmons and
// containers) that mention it. After Delete it must be empty. Tests and the
// agent's self-checks use it.
func (r *Runtime) Leftovers(id string) []string {
	var state []string
	// A claimed primed sandbox's containers have their warm names.
	home := r.sb.Home(id)
	if entries, _ := os.ReadDir(r.runcRoot); len(entries) > 0 {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), id+"-") || strings.HasPrefix(e.Name(), home+"-") {
				state = append(state, "runc state "+filepath.Join(r.runcRoot, e.Name()))
			}
		}
	}
	dir := r.sb.SandboxDir(id)
	return r.sb.Leftovers(id, state, func(cmdline string) bool {
		return strings.Contains(cmdline, dir+"/") || strings.Contains(cmdline, " "+id+"-")
	})
}

var _ runtime.Statser = (*Runtime)(nil)

// Stats implements runtime.Statser from the cgroups of the sandbox and of
// each container (cpuacct and memory on cgroup v1).
func (r *Runtime) Stats(ctx context.Context, id, container string) (runtime.Usage, bool, error) {
	u, err := r.cg.SandboxUsage(r.sb.Home(id), container)
	return u, false, err
}
