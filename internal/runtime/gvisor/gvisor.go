package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// Name is the runtime's name.
const Name = runtime.GVisor

const (
	// DefaultPlatform is runsc's platform unless Config says otherwise.
	DefaultPlatform = "systrap"
	// probeTimeout bounds New's trial sandbox.
	probeTimeout = 30 * time.Second
)

// hostPidsOverhead is what the host's pids limit of a sandbox adds to the
// task's PidsLimit for gVisor's own threads (sentry, gofers, systrap).
const hostPidsOverhead = 256

// cpuPeriodMicros is the CFS period of the sandbox's CPU quota. The sentry
// counts its tasks' CPU time in 10 ms ticks, and a throttled sandbox
// resumes with a stale tick charged to what runs; a period longer than
// runc's 100 ms keeps that error small.
const cpuPeriodMicros = 250_000

// pauseCgroup is the child cgroup of the sandbox's where runsc puts the
// sandbox's processes (sentry, gofers, systrap stubs). It cannot clash with
// a container's name, which never starts with a dot.
const pauseCgroup = ".sandbox"

// Config configures the gvisor runtime.
type Config struct {
	// StateDir holds one directory per sandbox and runsc's own state
	// (<data-dir>/sandboxes/gvisor). Required.
	StateDir string
	// RunscPath is the runsc binary. Required: the agent passes the one
	// scripts/build-runsc built (Debian's is too old for prepared network
	// namespaces on kernels 6.11 and newer).
	RunscPath string
	// ConmonPath is conmon; found in PATH by default.
	ConmonPath string
	// Platform is runsc's platform: "systrap" by default; "ptrace", or
	// "kvm" where asked and /dev/kvm exists.
	Platform string
	// InitPath is the static init run as PID 1 of containers whose
	// Security.Init is set (Debian's tini-static, found by default);
	// without one such containers are refused.
	InitPath string
	// Logger receives warnings; slog.Default() by default.
	Logger *slog.Logger
	// WarmMilliCPU and WarmMemoryMiB are the size warm sandboxes boot
	// with, the largest a task claiming one may have (WarmClass);
	// DefaultWarmMilliCPU and DefaultWarmMemoryMiB by default.
	WarmMilliCPU  int64
	WarmMemoryMiB int64
}

// The default warm class: the sentry sizes its CPUs and memory from the
// sandbox's cgroup when it boots, so a warm sandbox boots at the largest
// size it serves and Claim lowers the host's limits to the task's. 4 vCPU
// / 8 GiB serves most Fargate sizes (those up to it); a larger task
// starts cold. Its containers see the class's CPUs and memory (as in a
// container that reads the host's) while the host holds them to the
// task's.
const (
	DefaultWarmMilliCPU  = 4000
	DefaultWarmMemoryMiB = 8192
)

// IdleWarmMemoryMiB is the host memory an idle warm gVisor sandbox is
// counted for: its booted sentry, gofer and stubs, about 42 MiB PSS (64
// MiB RSS, the runsc binary's pages shared between sandboxes; its memory
// cgroup is charged about 17 MiB), rounded up (BenchmarkCreateStart's
// warm-idle rows; docs/benchmarks.md).
const IdleWarmMemoryMiB = 48

// Runtime runs each sandbox as one gVisor sandbox (one runsc-sandbox
// process, the user-space kernel) whose root container is a pause process;
// each of the task's containers is a sub-container under a conmon of its
// own.
type Runtime struct {
	cfg       Config
	log       *slog.Logger
	cg        *toolkit.Cgroups
	runscRoot string
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

// New checks that runsc and conmon are there and that runsc can start a
// sandbox on this host, and returns the runtime. Errors of kind
// errdefs.ErrUnavailable say why this host cannot run it.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errdefs.InvalidArgument("gvisor runtime: StateDir is required")
	}
	if cfg.RunscPath == "" {
		return nil, errdefs.InvalidArgument("gvisor runtime: RunscPath is required (the runsc that scripts/build-runsc prints)")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, errdefs.InvalidArgument("gvisor runtime: StateDir %q: %v", cfg.StateDir, err)
	}
	cfg.StateDir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WarmMilliCPU == 0 {
		cfg.WarmMilliCPU = DefaultWarmMilliCPU
	}
	if cfg.WarmMemoryMiB == 0 {
		cfg.WarmMemoryMiB = DefaultWarmMemoryMiB
	}
	if cfg.WarmMilliCPU < 0 || cfg.WarmMemoryMiB < 0 {
		return nil, errdefs.InvalidArgument("gvisor runtime: the warm class's size must be positive, got %d milli-CPU and %d MiB",
			cfg.WarmMilliCPU, cfg.WarmMemoryMiB)
	}
	switch cfg.Platform {
	case "":
		cfg.Platform = DefaultPlatform
	case "systrap", "ptrace", "kvm":
	default:
		return nil, errdefs.InvalidArgument("gvisor runtime: platform %q is not known; use systrap (default), ptrace or kvm", cfg.Platform)
	}
	if cfg.ConmonPath == "" {
		cfg.ConmonPath = "conmon"
	}
	for _, b := range []struct {
		path *string
		name string
	}{{&cfg.RunscPath, "runsc"}, {&cfg.ConmonPath, "conmon"}} {
		p, err := exec.LookPath(*b.path)
		if err != nil {
			return nil, errdefs.Unavailable("%s not found (install it or set its path): %v", b.name, err)
		}
		if p, err = filepath.Abs(p); err != nil {
			return nil, errdefs.Unavailable("%s: %v", b.name, err)
		}
		*b.path = p
		if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
			return nil, errdefs.Unavailable("%s --version failed: %v: %s", p, err, bytes.TrimSpace(out))
		}
	}
	if _, ok := pauseELF(); !ok {
		return nil, errdefs.Unavailable("the gvisor runtime has no pause program for this architecture")
	}
	if os.Geteuid() != 0 {
		return nil, errdefs.Unavailable("the gvisor runtime needs root (cgroups, mounts, namespaces)")
	}
	cg, err := toolkit.DetectCgroups()
	if err != nil {
		return nil, errdefs.Unavailable("%v", err)
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger, cg: cg, runscRoot: filepath.Join(dir, "runsc-root")}
	r.sb = &toolkit.Sandboxes{Name: Name, Store: toolkit.Store{Dir: dir, Reserved: []string{"runsc-root"}},
		Log: cfg.Logger, Cgroups: cg, ExitRoot: toolkit.DefaultExitRoot(dir),
		Command: r.command, Run: r.runsc, OOMKilled: r.oomKilled, Destroy: r.destroy,
		// runsc takes an ID that no container has for a unique prefix of
		// one, and one that is a prefix of several for ambiguous: a signal
		// to container app's ID, once app was deleted, reached apple.
		IDEnd: idEnd}
	if err := os.MkdirAll(r.runscRoot, 0o700); err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	if err := r.probe(); err != nil {
		return nil, err
	}
	if r.sb.HostNofile, err = toolkit.HostLimits(); err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	if cfg.InitPath == "" {
		cfg.InitPath = toolkit.FindInit()
	}
	r.cfg.InitPath, r.sb.InitPath = cfg.InitPath, cfg.InitPath
	return r, nil
}

// probe runs "runsc do true" (a whole sandbox: sentry, gofer, platform) in
// a scratch state directory, so that a runsc that cannot run here (no
// systrap support, seccomp refused, ...) is reported at New.
func (r *Runtime) probe() error {
	tmp, err := os.MkdirTemp(r.cfg.StateDir, ".probe-")
	if err != nil {
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	defer func() {
		for _, m := range toolkit.MountsUnder(tmp) {
			toolkit.Unmount(m)
		}
		os.RemoveAll(tmp)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.cfg.RunscPath, "--root="+filepath.Join(tmp, "root"),
		"--platform="+r.cfg.Platform, "--network=none", "--ignore-cgroups", "--gofer-network-namespace=new",
		"--debug-log="+filepath.Join(tmp, "log")+"/", "do", "/bin/true")
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		logs, _ := filepath.Glob(filepath.Join(tmp, "log", "*"))
		var tail string
		for _, l := range logs {
			tail += toolkit.ReadTail(l)
		}
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return errdefs.Unavailable("runsc cannot start a sandbox on this host (%s do /bin/true: %v: %s) %s",
			r.cfg.RunscPath, err, bytes.TrimSpace(out), tail)
	}
	return nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return Name }

func (r *Runtime) sandboxDir(id string) string { return r.sb.SandboxDir(id) }
func (r *Runtime) pauseDir(id string) string   { return filepath.Join(r.sandboxDir(id), "pause") }

// idEnd ends every sub-container's ID for runsc and conmon
// (ConmonRecord.ContainerID, toolkit.Sandboxes.IDEnd): no sandbox ID or
// container name holds a '+' (runtime.CheckName). The root (pause)
// container's ID is the sandbox's home ID itself.
const idEnd = "+"

// globalFlags are runsc's flags for every command about sandbox id.
func (r *Runtime) globalFlags(id string) []string {
	return []string{
		"--root=" + r.runscRoot,
		"--platform=" + r.cfg.Platform,
		"--network=sandbox",
		"--oci-seccomp",
		// The gofers get a new empty network namespace each, instead of
		// one shared namespace bind-mounted into the state root.
		"--gofer-network-namespace=new",
		// Root file system writes go through the gofer to the overlay's
		// upper directory on the host (the default, root:self, keeps them
		// in a file the sentry discards with the container), so that a
		// restarted container keeps its writable layer, as with toolkit.
		"--overlay2=none",
		// One log for every runsc command and the sandbox's own processes
		// (no --debug-log: it makes a file per command), capped (logPath).
		"--log=" + r.logPath(id),
	}
}

// maxLogBytes caps a sandbox's runsc log: a larger one is emptied before
// the next runsc command.
const maxLogBytes = 1 << 20

// logPath is sandbox id's runsc log. It lives on the sandbox's ephemeral
// storage (rw/, the loop-mounted file system sized to the task), so
// that what the sentry logs on a container's behalf between two runsc
// commands is bounded by the task's storage, not the host's disk; before
// the storage exists, in the sandbox's directory.
func (r *Runtime) logPath(id string) string {
	sb := r.sandboxDir(id)
	if fi, err := os.Stat(filepath.Join(sb, "rw")); err == nil && fi.IsDir() {
		return filepath.Join(sb, "rw", "runsc.log")
	}
	return filepath.Join(sb, "runsc.log")
}

// capLog empties sandbox id's runsc log when it has grown beyond
// maxLogBytes (runsc appends to it, O_APPEND, so writers carry on at
// its new end).
func (r *Runtime) capLog(id string) {
	p := r.logPath(id)
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > maxLogBytes {
		if err := os.Truncate(p, 0); err != nil {
			r.log.Warn("gvisor: cannot cap the sandbox's runsc log", "task", id, "err", err)
		}
	}
}

// command returns a runsc command about sandbox id, with its global flags.
func (r *Runtime) command(ctx context.Context, id string, args ...string) *exec.Cmd {
	r.capLog(id)
	return exec.CommandContext(ctx, r.cfg.RunscPath, append(r.globalFlags(id), args...)...)
}

// runsc runs a runsc command about sandbox id and returns its combined
// output. The output goes through a file, not a pipe: "runsc start" leaves
// a gofer behind that inherits its descriptors.
func (r *Runtime) runsc(ctx context.Context, id string, args ...string) ([]byte, error) {
	f, err := os.CreateTemp("", "vessel-runsc-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	defer f.Close()
	cmd := r.command(ctx, id, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return bytes.TrimSpace(out), err
}

// Create implements runtime.Runtime: it makes the sandbox's cgroup,
// storage and bundles, and boots the gVisor sandbox with its pause root
// container, so that Start only adds a sub-container.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Create(ctx, spec, func(rec *toolkit.ConmonRecord) error {
		spec := rec.Spec
		// The task's cgroup and, with the same limits, the one runsc puts
		// the sandbox in: made here so that its CFS period is set before
		// runsc writes the quota (it writes the quota first, which the
		// kernel refuses above the parent's share with the default period).
		if err := r.setLimits(spec.ID, spec, bootMilliCPU(spec)); err != nil {
			return fmt.Errorf("gvisor runtime: sandbox %s: %w", spec.ID, err)
		}
		rec.OOMBase = r.oomKills(spec.ID)
		if err := r.sb.Prepare(ctx, rec, nil, r.subContainer); err != nil {
			return err
		}
		if err := r.bootSandbox(ctx, spec); err != nil {
			return fmt.Errorf("gvisor runtime: sandbox %s: %w", spec.ID, err)
		}
		return nil
	})
}

// setLimits writes spec's memory and pids limits and a CPU quota of
// milliCPU to the cgroups of the sandbox whose home is home:
// vessel/<home> and vessel/<home>/.sandbox, where runsc puts the
// sandbox's processes, in that order when they are made, the other way
// when they are lowered (a claim: a child's CPU quota may not exceed its
// parent's).
func (r *Runtime) setLimits(home string, spec runtime.Spec, milliCPU int64) error {
	l := toolkit.Limits{MilliCPU: milliCPU, MemoryBytes: spec.MemoryMiB << 20,
		Pids: spec.PidsLimit + hostPidsOverhead, CPUPeriodMicros: cpuPeriodMicros}
	for _, cg := range r.limitOrder(home) {
		if err := r.cg.Create(cg, l); err != nil {
			return err
		}
	}
	return nil
}

// limitOrder is the sandbox's two cgroups in the order setLimits writes
// them: the parent first while the child is not made yet, else the child
// first.
func (r *Runtime) limitOrder(home string) []string {
	cgs := []string{home, filepath.Join(home, pauseCgroup)}
	if len(r.cg.Leftovers(cgs[1])) > 0 {
		cgs[0], cgs[1] = cgs[1], cgs[0]
	}
	return cgs
}

// bootMilliCPU is the CPU quota a sandbox has until its first container
// runs: the task's, but at least one vCPU. The sentry counts its CPUs
// from the quota at its boot, rounded up, so a task of up to one vCPU
// sees one CPU either way; below one vCPU the quota would stretch the
// boot and the container's set-up (gVisor's own work, not the task's) to
// several times their length. lowerCPU sets the task's quota once the
// first container runs.
func bootMilliCPU(spec runtime.Spec) int64 { return max(spec.MilliCPU, 1000) }

// lowerCPU writes the task's CPU quota to the sandbox's cgroups, the
// child first (it may not exceed its parent's).
func (r *Runtime) lowerCPU(rec *toolkit.ConmonRecord) error {
	l := toolkit.Limits{MilliCPU: rec.Spec.MilliCPU, CPUPeriodMicros: cpuPeriodMicros}
	home := rec.HomeID()
	for _, cg := range []string{filepath.Join(home, pauseCgroup), home} {
		if err := r.cg.SetCPU(cg, l); err != nil {
			return fmt.Errorf("gvisor runtime: sandbox %s: %w", rec.Spec.ID, err)
		}
	}
	return nil
}

// WarmClass implements runtime.Warmer: the size warm sandboxes boot with
// (Config's WarmMilliCPU and WarmMemoryMiB).
func (r *Runtime) WarmClass() runtime.WarmClass {
	return runtime.WarmClass{MilliCPU: r.cfg.WarmMilliCPU, MemoryMiB: r.cfg.WarmMemoryMiB, IdleMemoryMiB: IdleWarmMemoryMiB}
}

var _ runtime.SizedWarmer = (*Runtime)(nil)

// SizedWarmClass implements runtime.SizedWarmer: a warm sandbox booted at
// the given size serves tasks up to it, and holds IdleWarmMemoryMiB idle
// whatever its size (its sentry takes host memory as its containers
// touch it).
func (r *Runtime) SizedWarmClass(milliCPU, memoryMiB int64) (runtime.WarmClass, error) {
	if milliCPU <= 0 || memoryMiB <= 0 {
		return runtime.WarmClass{}, errdefs.InvalidArgument("gvisor runtime: a warm class needs a positive size, not %d milli-CPU and %d MiB", milliCPU, memoryMiB)
	}
	return runtime.WarmClass{MilliCPU: milliCPU, MemoryMiB: memoryMiB, IdleMemoryMiB: IdleWarmMemoryMiB}, nil
}

// Warm implements runtime.Warmer: ahead of its task, the sandbox's
// cgroups at spec's size (the warm class's), its ephemeral storage, and
// the gVisor sandbox booted with its pause root container in spec's
// network namespace, with spec's hostname. A warm sandbox's gVisor
// sandbox and root container keep its warm ID for their whole life.
func (r *Runtime) Warm(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Warm(ctx, spec, func(rec *toolkit.ConmonRecord) error {
		spec := rec.Spec
		if err := r.setLimits(spec.ID, spec, spec.MilliCPU); err != nil {
			return fmt.Errorf("gvisor runtime: warm sandbox %s: %w", spec.ID, err)
		}
		rec.OOMBase = r.oomKills(spec.ID)
		if err := r.sb.PrepareSandbox(ctx, rec, nil); err != nil {
			return err
		}
		if err := r.bootSandbox(ctx, spec); err != nil {
			return fmt.Errorf("gvisor runtime: warm sandbox %s: %w", spec.ID, err)
		}
		return nil
	})
}

// Claim implements runtime.Warmer: the task's size on the sandbox's host
// cgroups (the sandbox cannot exceed them, though its sentry was sized
// for the size the sandbox booted at), the task's hostname (setHostname), then the
// containers' bundles, as sub-containers of the booted sandbox, which
// Start adds. A task larger than the size the sandbox booted at (the warm
// class's, or its sized pool's) is refused with errdefs.ErrConflict; a
// task without a hostname takes the warm one.
func (r *Runtime) Claim(ctx context.Context, warmID string, spec runtime.Spec) error {
	var warmHostname string
	return r.sb.Claim(ctx, warmID, spec, func(warm *toolkit.ConmonRecord, spec *runtime.Spec) error {
		// The size it booted at (WarmClass's, or a sized pool's).
		if ws := warm.Spec; spec.MilliCPU > ws.MilliCPU || spec.MemoryMiB > ws.MemoryMiB {
			return errdefs.Conflict("warm gVisor sandbox %s serves at most %d milli-CPU and %d MiB; the task asks for %d and %d",
				warmID, ws.MilliCPU, ws.MemoryMiB, spec.MilliCPU, spec.MemoryMiB)
		}
		warmHostname = warm.Spec.Hostname
		if spec.Hostname == "" {
			spec.Hostname = warmHostname
		}
		if spec.Hostname != warmHostname {
			if _, err := os.Stat(filepath.Join(r.pauseDir(warmID), "rootfs", sethostnameProgram)); err != nil {
				return errdefs.Conflict("warm gVisor sandbox %s booted with hostname %q and has no program to change it (an older agent made it); the task asks for %q",
					warmID, warmHostname, spec.Hostname)
			}
		}
		return nil
	}, func(rec *toolkit.ConmonRecord) error {
		home := rec.HomeID()
		if err := r.setLimits(home, rec.Spec, bootMilliCPU(rec.Spec)); err != nil {
			return fmt.Errorf("gvisor runtime: sandbox %s (warm %s): %w", rec.Spec.ID, home, err)
		}
		rec.OOMBase = r.oomKills(home)
		if rec.Spec.Hostname != warmHostname {
			if err := r.setHostname(ctx, home, rec.Spec.Hostname); err != nil {
				return fmt.Errorf("gvisor runtime: sandbox %s (warm %s): %w", rec.Spec.ID, home, err)
			}
		}
		return r.sb.PrepareContainers(rec, r.subContainer)
	})
}

// sethostnameProgram is the hostname setter's name (sethostnameELF) in
// the root container's file system.
const sethostnameProgram = "sethostname"

// setHostname gives booted sandbox id the hostname name. runsc has no
// UTS namespace per sub-container: every container of a sandbox has the
// root container's hostname, set when the sandbox boots. A claim
// therefore runs the hostname setter in the root (pause) container, with
// CAP_SYS_ADMIN in the sandbox's own kernel only, before the task's
// containers exist; they all see the new name, as a pod's containers
// share its hostname.
func (r *Runtime) setHostname(ctx context.Context, id, name string) error {
	out, err := r.runsc(ctx, id, "exec", "--cap", "CAP_SYS_ADMIN", id, "/"+sethostnameProgram, name)
	if err != nil {
		return fmt.Errorf("setting hostname %q in the sandbox: %w: %s", name, err, out)
	}
	return nil
}

// subContainer turns a container's bundle (runc's) into one of a
// sub-container of the sandbox: its pids limit and RLIMIT_NPROC, the
// annotations that put it in the sandbox, and the runtime and monitor
// scripts conmon runs (script.go).
func (r *Runtime) subContainer(rec *toolkit.ConmonRecord, c runtime.ContainerSpec, b string, s *specs.Spec) error {
	spec := rec.Spec
	// The sentry counts RLIMIT_NPROC per user of its own kernel, so within
	// this sandbox only: the task's pids limit.
	pl := uint64(spec.PidsLimit)
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: spec.PidsLimit}
	s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: pl, Hard: pl})
	if c.Security.ReadOnlyRootfs {
		if err := readOnlyTmp(c, filepath.Join(b, "rootfs"), s); err != nil {
			return err
		}
	}
	s.Annotations = map[string]string{
		annotationContainerType: containerTypeContainer,
		// The sandbox's own ID: a claimed warm sandbox's is its warm ID.
		annotationSandboxID: r.sb.Home(spec.ID),
	}
	cid, flags := rec.ContainerID(c.Name), r.globalFlags(spec.ID)
	for name, script := range map[string]string{
		"runtime": runtimeScript(r.cfg.RunscPath, flags, b, cid),
		"monitor": monitorScript(r.cfg.RunscPath, flags, cid),
	} {
		if err := os.WriteFile(filepath.Join(b, name), []byte(script), 0o700); err != nil {
			return fmt.Errorf("gvisor runtime: %w", err)
		}
	}
	return nil
}

// readOnlyTmp keeps /tmp read-only in a container with a read-only root:
// runsc mounts a writable tmpfs of its own at /tmp when the image's is
// empty or missing and the spec mounts nothing there, so an empty
// read-only tmpfs goes there first (before any volume under /tmp). An
// image's /tmp with files is left to the read-only root.
func readOnlyTmp(c runtime.ContainerSpec, rootfs string, s *specs.Spec) error {
	for _, m := range c.Mounts {
		if m.Destination == "/tmp" {
			return nil
		}
	}
	empty, err := emptyOrMissing(rootfs, "tmp")
	if err != nil {
		return fmt.Errorf("gvisor runtime: container %q: %w", c.Name, err)
	}
	if !empty {
		return nil
	}
	at := 0
	for i, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/etc/") {
			at = i + 1
		}
	}
	tmp := specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
		Options: []string{"ro", "nosuid", "nodev", "noexec", "mode=1777", "size=4k"}}
	s.Mounts = append(s.Mounts[:at], append([]specs.Mount{tmp}, s.Mounts[at:]...)...)
	return nil
}

// emptyOrMissing reports whether the directory name in rootfs (resolved
// inside it) is missing or has no entries.
func emptyOrMissing(rootfs, name string) (bool, error) {
	dirfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == unix.ENOENT {
		return true, nil
	}
	if err == unix.ENOTDIR {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("/%s in the image: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0, nil
}

// The annotations by which runsc puts several containers in one sandbox
// (those of containerd's CRI plugin).
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// bootSandbox starts the gVisor sandbox: its root container runs the pause
// program from a read-only root file system of its own, joins the task's
// network namespace (the sentry's netstack takes over its interface) and
// the cgroup vessel/<id>/.sandbox, which runsc fills with the task's
// limits (the sentry sizes its memory and CPUs from them).
func (r *Runtime) bootSandbox(ctx context.Context, spec runtime.Spec) error {
	b := r.pauseDir(spec.ID)
	rootfs := filepath.Join(b, "rootfs")
	for _, d := range []string{"proc", "dev", "sys", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	elf, _ := pauseELF()
	if err := os.WriteFile(filepath.Join(rootfs, "pause"), elf, 0o755); err != nil {
		return err
	}
	if elf, ok := sethostnameELF(); ok {
		if err := os.WriteFile(filepath.Join(rootfs, sethostnameProgram), elf, 0o755); err != nil {
			return err
		}
	}
	s, err := toolkit.OCISpec(runtime.ContainerSpec{Args: []string{"/pause"},
		Security: runtime.Security{Capabilities: []string{}, ReadOnlyRootfs: true}},
		toolkit.BundleParams{ID: spec.ID, Name: pauseCgroup, Rootfs: rootfs, Hostname: spec.Hostname,
			NetNSPath: spec.NetNSPath, EtcDir: filepath.Join(r.sandboxDir(spec.ID), "etc"),
			HostNofile: r.sb.HostNofile})
	if err != nil {
		return err
	}
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/etc/") {
			mounts = append(mounts, m)
		}
	}
	s.Mounts = mounts
	// The one call the claim's hostname setter makes, which the default
	// allow-list grants with CAP_SYS_ADMIN only (the setter gets that
	// capability, the pause program never has it).
	s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls,
		specs.LinuxSyscall{Names: []string{"sethostname"}, Action: specs.ActAllow})
	quota, period := bootMilliCPU(spec)*cpuPeriodMicros/1000, uint64(cpuPeriodMicros)
	mem, pids := spec.MemoryMiB<<20, spec.PidsLimit+hostPidsOverhead
	s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &mem}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: pids}
	s.Annotations = map[string]string{
		annotationContainerType: containerTypeSandbox,
		annotationSandboxID:     spec.ID,
	}
	if err := r.sb.WriteSpec(b, s); err != nil {
		return err
	}
	// "runsc run --detach" is create and start in one process. The sandbox
	// keeps the descriptors it gets: no pipes.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	out, err := os.Create(filepath.Join(b, "runsc.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, r.cfg.RunscPath, append(r.globalFlags(spec.ID),
		"run", "--detach", "--bundle", b, "--pid-file", filepath.Join(b, "pidfile"), spec.ID)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc run: %w: %s %s", err, toolkit.ReadTail(out.Name()), toolkit.ReadTail(r.logPath(spec.ID)))
	}
	return nil
}

// oomKills counts the OOM kills in the sandbox's cgroups: its own and
// the one of its processes (on cgroup v1 the kernel counts a kill in the
// victim's cgroup only).
func (r *Runtime) oomKills(id string) int64 {
	return r.cg.OOMKills(toolkit.SandboxCgroup(id)) + r.cg.OOMKills(toolkit.ContainerCgroup(id, pauseCgroup))
}

// oomKilled reports whether a container that ended with 137 was
// OOM-killed: the host's OOM killer ends the whole sandbox; its
// containers' monitors then report 137.
func (r *Runtime) oomKilled(rec *toolkit.ConmonRecord, name string) bool {
	return r.oomKills(rec.HomeID()) > rec.OOMBase
}

// Start implements runtime.Runtime: conmon runs the container's runtime
// script, which adds the container to the sandbox ("runsc run --detach"
// with conmon's stdio) and leaves a monitor for conmon to wait on.
func (r *Runtime) Start(ctx context.Context, id, name string) error {
	return r.sb.Start(id, name, func(rec *toolkit.ConmonRecord) error {
		c := r.sb.Conmon(rec, name)
		c.Path, c.Runtime = r.cfg.ConmonPath, filepath.Join(c.Bundle, "runtime")
		if _, err := c.Create(ctx); err != nil {
			return fmt.Errorf("gvisor runtime: start %s/%s: %w %s", id, name, err, toolkit.ReadTail(r.logPath(id)))
		}
		return r.lowerCPU(rec)
	})
}

// Restart implements runtime.Restarter: "runsc delete" of the ended
// sub-container, then a new conmon that adds it to the sandbox again, as
// Start does (same bundle, same overlay root with its writable layer).
func (r *Runtime) Restart(ctx context.Context, id, name string) error {
	return r.sb.Restart(id, name, func(rec *toolkit.ConmonRecord) error {
		cid := rec.ContainerID(name)
		if out, err := r.runsc(ctx, id, "delete", "--force", cid); err != nil && r.sb.State(ctx, id, cid) != "" {
			return fmt.Errorf("runsc delete: %w: %s", err, out)
		}
		return nil
	}, func(rec *toolkit.ConmonRecord) error {
		c := r.sb.Conmon(rec, name)
		c.Path, c.Runtime = r.cfg.ConmonPath, filepath.Join(c.Bundle, "runtime")
		if _, err := c.Create(ctx); err != nil {
			return fmt.Errorf("gvisor runtime: restart %s/%s: %w %s", id, name, err, toolkit.ReadTail(r.logPath(id)))
		}
		return r.lowerCPU(rec)
	})
}

// Wait implements runtime.Runtime. It polls the container's exit file,
// which conmon writes when the container's monitor ends, every 50 ms.
func (r *Runtime) Wait(ctx context.Context, id, name string) (runtime.ExitStatus, error) {
	return r.sb.Wait(ctx, id, name)
}

// Signal implements runtime.Runtime with "runsc kill".
func (r *Runtime) Signal(ctx context.Context, id, name string, sig syscall.Signal) error {
	return r.sb.Signal(ctx, id, name, sig)
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error { return r.sb.Delete(ctx, id) }

// destroy kills the sandbox and removes everything it holds: runsc state,
// conmons and monitors, mounts, loop device, cgroups and its directory. It
// works on a sandbox in any state, also one whose Create failed half-way.
func (r *Runtime) destroy(ctx context.Context, rec *toolkit.ConmonRecord) error {
	id, home, names := rec.Spec.ID, rec.HomeID(), rec.Names()
	var errs []error
	// Sub-containers first, then the root container (named by the
	// sandbox's home: a claimed warm sandbox's warm ID), which takes the
	// sandbox (sentry, gofers) with it.
	cids := make([]string, 0, len(names)+1)
	for _, n := range names {
		cids = append(cids, rec.ContainerID(n))
	}
	for _, cid := range append(cids, home) {
		if out, err := r.runsc(ctx, id, "delete", "--force", cid); err != nil && r.sb.State(ctx, id, cid) != "" {
			errs = append(errs, fmt.Errorf("runsc delete %s: %w: %s", cid, err, out))
		}
	}
	// Whatever still runs in the sandbox's cgroups (a sandbox runsc lost
	// track of, systrap stubs, gofers) is killed.
	if err := r.killCgroup(home); err != nil {
		errs = append(errs, err)
	}
	// The monitors end once the sandbox is gone; their conmons then exit.
	for _, n := range names {
		mon := toolkit.ReadPid(filepath.Join(r.sb.BundleDir(id, n), "pidfile"))
		if mon > 0 && toolkit.ProcessAlive(mon, "monitor") {
			unix.Kill(mon, unix.SIGKILL)
		}
		r.sb.WaitConmon(id, n, "its sandbox was destroyed")
	}
	return r.sb.TearDown(rec, append(names, pauseCgroup), errs)
}

// killCgroup kills every process in the sandbox's cgroups and waits (5 s
// at most) until they are gone.
func (r *Runtime) killCgroup(id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		for _, h := range r.cg.Hierarchies() {
			filepath.WalkDir(filepath.Join(h, toolkit.SandboxCgroup(id)), func(path string, d os.DirEntry, err error) error {
				if err == nil && d.Name() == "cgroup.procs" {
					data, _ := os.ReadFile(path)
					for _, f := range strings.Fields(string(data)) {
						if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
							pids = append(pids, pid)
						}
					}
				}
				return nil
			})
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of sandbox %s survive SIGKILL", pids, id)
		}
		r.log.Debug("gvisor: killing what runsc left in the sandbox's cgroups", "task", id, "pids", pids)
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) { return r.sb.List(ctx) }

// Exec implements runtime.Execer with "runsc exec": the process runs in
// the container (its root, user, capabilities, environment plus p.Env),
// inside the sandbox. It is a child of the agent (not of conmon), so it
// ends if the agent does. TTYs are not supported yet.
func (r *Runtime) Exec(ctx context.Context, id, name string, p runtime.ExecProcess) (int, error) {
	return r.sb.Exec(ctx, id, name, p)
}

var _ runtime.Statser = (*Runtime)(nil)

// Stats implements runtime.Statser. The whole sandbox's usage comes from
// its cgroup on the host. The sentry runs every container of the sandbox,
// so the host cannot tell them apart: a container's comes from gVisor's
// own kernel ("runsc events --stats"), its CPU time its processes' alone;
// should runsc not answer, the sandbox's is given with whole set.
func (r *Runtime) Stats(ctx context.Context, id, container string) (runtime.Usage, bool, error) {
	u, err := r.cg.SandboxUsage(r.sb.Home(id), "")
	if err != nil || container == "" {
		return u, false, err
	}
	rec, err := r.sb.LoadContainer(id, container)
	if err != nil {
		return u, false, err
	}
	out, err := r.runsc(ctx, id, "events", "--stats", rec.ContainerID(container))
	if err != nil {
		r.sb.Log.Debug("gvisor runtime: runsc events gave no container stats; the sandbox's are given", "task", id, "container", container, "err", err, "output", string(out))
		return u, true, nil
	}
	cu, err := parseEventStats(out)
	if err != nil {
		r.sb.Log.Debug("gvisor runtime: runsc events' stats are unreadable; the sandbox's are given", "task", id, "container", container, "err", err)
		return u, true, nil
	}
	if cu.MemoryLimitBytes == 0 {
		cu.MemoryLimitBytes = u.MemoryLimitBytes
	}
	return cu, false, nil
}

// tail is the end of a command's output, for an error message.
func tail(out []byte) string {
	if len(out) > 500 {
		out = out[len(out)-500:]
	}
	return string(bytes.TrimSpace(out))
}

// parseEventStats reads the JSON event "runsc events --stats" prints (the
// shape of runc's events: data.cpu.usage in ns, data.memory in bytes).
func parseEventStats(out []byte) (runtime.Usage, error) {
	var ev struct {
		Type string `json:"type"`
		Data *struct {
			CPU struct {
				Usage struct {
					Total  int64 `json:"total"`
					Kernel int64 `json:"kernel"`
					User   int64 `json:"user"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Limit int64 `json:"limit"`
					Usage int64 `json:"usage"`
					Max   int64 `json:"max"`
				} `json:"usage"`
				Raw map[string]int64 `json:"raw"`
			} `json:"memory"`
		} `json:"data"`
	}
	// The event is the last line that is JSON.
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &ev); err != nil {
		return runtime.Usage{}, fmt.Errorf("runsc events: %w: %s", err, tail(out))
	}
	if ev.Type != "stats" || ev.Data == nil {
		return runtime.Usage{}, fmt.Errorf("runsc events printed no stats: %s", tail(out))
	}
	d := ev.Data
	return runtime.Usage{CPUNanos: d.CPU.Usage.Total, CPUUserNanos: d.CPU.Usage.User, CPUSystemNanos: d.CPU.Usage.Kernel,
		MemoryBytes: d.Memory.Usage.Usage, MemoryMaxBytes: d.Memory.Usage.Max, MemoryLimitBytes: d.Memory.Usage.Limit,
		MemoryStat: d.Memory.Raw}, nil
}
