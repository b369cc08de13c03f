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
)

// Name is the runtime's name.
const Name = runtime.Runc

// Defaults of the provisioned sandbox beyond its size.
const (
	DefaultPidsLimit           = 1024
	DefaultEphemeralStorageGiB = 20
	DefaultLogMaxBytes         = 10 << 20
	cpuPeriodMicros            = 100_000
)

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
	cg       *cgroups
	runcRoot string
	// sb holds the sandboxes' records, locks and exit files, and does what
	// runc and runsc do alike (Wait, List, Signal, Exec, ...).
	sb *Sandboxes
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Execer    = (*Runtime)(nil)
	_ runtime.Restarter = (*Runtime)(nil)
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
	cg, err := detectCgroups()
	if err != nil {
		return nil, errdefs.Unavailable("%v", err)
	}
	r := &Runtime{cfg: cfg, cg: cg, runcRoot: filepath.Join(dir, "runc-root")}
	r.sb = &Sandboxes{Name: Name, StateDir: dir, RuntimeRoot: "runc-root", Log: cfg.Logger, Cgroups: &Cgroups{cg},
		ExitRoot: DefaultExitRoot(dir),
		Command:  r.command, ExecProcessFile: true, Run: r.runc, OOMKilled: r.oomKilled, Destroy: r.destroy}
	if err := os.MkdirAll(r.runcRoot, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	if out, err := exec.Command(cfg.RuncPath, "--root", r.runcRoot, "list", "-q").CombinedOutput(); err != nil {
		return nil, errdefs.Unavailable("%s list failed: %v: %s", cfg.RuncPath, err, bytes.TrimSpace(out))
	}
	if r.sb.HostNofile, err = HostLimits(); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	if cfg.InitPath == "" {
		cfg.InitPath = findInit()
	}
	r.cfg.InitPath, r.sb.InitPath = cfg.InitPath, cfg.InitPath
	return r, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return Name }

func checkSpec(spec *runtime.Spec) error {
	if err := validName(spec.ID); err != nil {
		return errdefs.InvalidArgument("sandbox ID %q is not valid: %v", spec.ID, err)
	}
	if len(spec.Containers) == 0 {
		return errdefs.InvalidArgument("sandbox %s has no containers", spec.ID)
	}
	if spec.MilliCPU <= 0 || spec.MemoryMiB <= 0 {
		return errdefs.InvalidArgument("sandbox %s: MilliCPU and MemoryMiB must be positive (the provisioned size), got %d and %d",
			spec.ID, spec.MilliCPU, spec.MemoryMiB)
	}
	seen := map[string]bool{}
	for _, c := range spec.Containers {
		if err := validName(c.Name); err != nil {
			return errdefs.InvalidArgument("sandbox %s: container name %q is not valid: %v", spec.ID, c.Name, err)
		}
		if seen[c.Name] {
			return errdefs.InvalidArgument("sandbox %s: container name %q is used twice", spec.ID, c.Name)
		}
		seen[c.Name] = true
		if len(c.Args) == 0 {
			return errdefs.InvalidArgument("sandbox %s: container %q has no arguments to run", spec.ID, c.Name)
		}
		if len(c.Layers) == 0 {
			return errdefs.InvalidArgument("sandbox %s: container %q has no image layers", spec.ID, c.Name)
		}
		for _, l := range c.Layers {
			if !filepath.IsAbs(l) || strings.ContainsAny(l, ":,") {
				return errdefs.InvalidArgument("sandbox %s: layer %q of container %q must be an absolute path without ':' or ','",
					spec.ID, l, c.Name)
			}
		}
		if err := runtime.CheckMounts(spec.ID, c); err != nil {
			return err
		}
	}
	return nil
}

// Create implements runtime.Runtime.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	return r.sb.Create(ctx, spec, func(rec *Record) error {
		spec := rec.Spec
		if err := r.cg.create(spec.ID, limits{milliCPU: spec.MilliCPU, memory: spec.MemoryMiB << 20,
			pids: spec.PidsLimit, cpuPeriod: cpuPeriodMicros}); err != nil {
			return fmt.Errorf("runc runtime: sandbox %s: %w", spec.ID, err)
		}
		rec.OOMBase = r.cg.oomKills(taskPath(spec.ID))
		return r.sb.Prepare(ctx, rec, nil, nil)
	})
}

func writeEtc(dir, hostname string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n",
		"hostname":    hostname + "\n",
		"resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Start implements runtime.Runtime: it launches conmon, which runs
// "runc create" and stays as the container's monitor, then "runc start".
func (r *Runtime) Start(ctx context.Context, id, name string) error {
	return r.sb.Start(id, name, func(rec *Record) error {
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
	return r.sb.Restart(id, name, func(rec *Record) error {
		if out, err := r.runc(ctx, id, "delete", "--force", ContainerID(id, name)); err != nil && r.sb.State(ctx, id, ContainerID(id, name)) != "" {
			return fmt.Errorf("runc delete: %w: %s", err, out)
		}
		// An OOM kill of the last run must not mark the next run's 137.
		rec.OOMBase = r.cg.oomKills(taskPath(id))
		return nil
	}, func(rec *Record) error {
		if err := r.launch(ctx, rec, name); err != nil {
			return fmt.Errorf("runc runtime: restart %s/%s: %w", id, name, err)
		}
		return nil
	})
}

func (r *Runtime) launch(ctx context.Context, rec *Record, name string) error {
	c := r.sb.Conmon(rec, name)
	c.Path, c.Runtime, c.RuntimeArgs = r.cfg.ConmonPath, r.cfg.RuncPath, []string{"--root=" + r.runcRoot}
	if _, err := c.Create(ctx); err != nil {
		return err
	}
	// runc init reads the container's /etc/passwd and /etc/group, which
	// may be anything (a named pipe behind a volume, a link to
	// /dev/urandom), before it reports to "runc create" (conmon's wait for
	// the PID bounds that) and finishes before the exec "runc start" waits
	// for: both waits are bounded, and a container that does not get there
	// is killed.
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if out, err := r.runc(sctx, rec.Spec.ID, "start", c.ID); err != nil {
		if sctx.Err() != nil {
			r.runc(context.WithoutCancel(ctx), rec.Spec.ID, "kill", c.ID, "KILL")
			return fmt.Errorf("the container did not reach its process within %s (is its /etc/passwd or /etc/group readable?); it was killed", startTimeout)
		}
		return fmt.Errorf("runc start: %w: %s", err, out)
	}
	return nil
}

// startTimeout bounds "runc start": the last steps of runc init, which
// take milliseconds.
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
func (r *Runtime) oomKilled(rec *Record, name string) bool {
	return r.cg.oomKills(containerPath(rec.Spec.ID, name)) > 0 ||
		r.cg.oomKills(taskPath(rec.Spec.ID)) > rec.OOMBase
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
func (r *Runtime) destroy(ctx context.Context, rec *Record) error {
	id, names := rec.Spec.ID, rec.Names()
	for _, n := range names {
		r.runc(ctx, id, "kill", "--all", ContainerID(id, n), "KILL")
	}
	for _, n := range names {
		r.sb.WaitConmon(id, n, "its container was killed")
	}
	var errs []error
	for _, n := range names {
		rid := ContainerID(id, n)
		if out, err := r.runc(ctx, id, "delete", "--force", rid); err != nil && r.sb.State(ctx, id, rid) != "" {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", rid, err, out))
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
