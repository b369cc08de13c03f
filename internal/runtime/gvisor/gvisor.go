package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runc"
)

// Name is the runtime's name.
const Name = "gvisor"

// Defaults of the provisioned sandbox beyond its size, as the runc back
// end's.
const (
	DefaultPidsLimit           = runc.DefaultPidsLimit
	DefaultEphemeralStorageGiB = runc.DefaultEphemeralStorageGiB
	DefaultLogMaxBytes         = runc.DefaultLogMaxBytes
	DefaultPlatform            = "systrap"
	pollInterval               = 50 * time.Millisecond
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
	// Logger receives warnings; slog.Default() by default.
	Logger *slog.Logger
}

// Runtime runs each sandbox as one gVisor sandbox (one runsc-sandbox
// process, the user-space kernel) whose root container is a pause process;
// each of the task's containers is a sub-container under a conmon of its
// own.
type Runtime struct {
	cfg                   Config
	log                   *slog.Logger
	cg                    *runc.Cgroups
	runscRoot             string
	hostNofile, hostNproc uint64

	mu    sync.Mutex
	locks map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Execer  = (*Runtime)(nil)
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
	cg, err := runc.DetectCgroups()
	if err != nil {
		return nil, errdefs.Unavailable("%v", err)
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger, cg: cg, runscRoot: filepath.Join(dir, "runsc-root"),
		locks: map[string]*idLock{}}
	if err := os.MkdirAll(r.runscRoot, 0o700); err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	if err := r.probe(); err != nil {
		return nil, err
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	r.hostNofile = rl.Max
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	r.hostNproc = rl.Max
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
		for _, m := range runc.MountsUnder(tmp) {
			runc.Unmount(m)
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
			tail += runc.ReadTail(l)
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

// lock serialises Create, Start and Delete of one sandbox.
func (r *Runtime) lock(id string) func() {
	r.mu.Lock()
	l := r.locks[id]
	if l == nil {
		l = &idLock{}
		r.locks[id] = l
	}
	l.refs++
	r.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		r.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(r.locks, id)
		}
		r.mu.Unlock()
	}
}

// record is a sandbox's file, <sandbox>/sandbox.json.
type record struct {
	Spec      runtime.Spec    `json:"spec"`
	CreatedAt time.Time       `json:"createdAt"`
	Ready     bool            `json:"ready"` // Create finished
	Storage   string          `json:"storage,omitempty"`
	OOMBase   int64           `json:"oomBase"` // OOM kills counted in the sandbox's cgroups at Create
	Started   map[string]bool `json:"started,omitempty"`
}

func (rec *record) container(name string) bool {
	for _, c := range rec.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.cfg.StateDir, id) }
func (r *Runtime) bundleDir(id, name string) string {
	return filepath.Join(r.sandboxDir(id), "containers", name)
}
func (r *Runtime) pauseDir(id string) string { return filepath.Join(r.sandboxDir(id), "pause") }
func (r *Runtime) exitFile(id, name string) string {
	return filepath.Join(r.sandboxDir(id), "exits", containerID(id, name))
}
func (r *Runtime) logPath(rec *record, name string) string {
	dir := rec.Spec.LogDir
	if dir == "" {
		dir = filepath.Join(r.sandboxDir(rec.Spec.ID), "logs")
	}
	return filepath.Join(dir, name+".log")
}

// containerID is a task container's ID for runsc and conmon; the root
// (pause) container's is the sandbox ID itself.
func containerID(id, name string) string { return id + "-" + name }

// globalFlags are runsc's flags for every command about sandbox id.
func (r *Runtime) globalFlags(id string) []string {
	sb := r.sandboxDir(id)
	return []string{
		"--root=" + r.runscRoot,
		"--platform=" + r.cfg.Platform,
		"--network=sandbox",
		"--oci-seccomp",
		// The gofers get a new empty network namespace each, instead of
		// one shared namespace bind-mounted into the state root.
		"--gofer-network-namespace=new",
		"--log=" + filepath.Join(sb, "runsc.log"),
		"--debug-log=" + filepath.Join(sb, "runsc-debug") + "/",
	}
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
	cmd := exec.CommandContext(ctx, r.cfg.RunscPath, append(r.globalFlags(id), args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return bytes.TrimSpace(out), err
}

func (r *Runtime) save(rec *record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(r.sandboxDir(rec.Spec.ID), "sandbox.json"), data, 0o600)
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (r *Runtime) load(id string) (*record, error) {
	if runc.ValidName(id) != nil {
		return nil, errdefs.NotFound("sandbox %s not found", id)
	}
	data, err := os.ReadFile(filepath.Join(r.sandboxDir(id), "sandbox.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.NotFound("sandbox %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	rec := &record{}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("gvisor runtime: sandbox %s: %w", id, err)
	}
	if rec.Started == nil {
		rec.Started = map[string]bool{}
	}
	return rec, nil
}

func (r *Runtime) loadContainer(id, name string) (*record, error) {
	rec, err := r.load(id)
	if err != nil {
		return nil, err
	}
	if !rec.container(name) {
		return nil, errdefs.NotFound("container %q not found in sandbox %s", name, id)
	}
	return rec, nil
}

// Create implements runtime.Runtime: it makes the sandbox's cgroup,
// storage and bundles, and boots the gVisor sandbox with its pause root
// container, so that Start only adds a sub-container.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (err error) {
	if err := runc.ValidName(spec.ID); err == nil {
		if _, err := os.Stat(r.sandboxDir(spec.ID)); err == nil {
			return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
		}
	}
	if err := runc.CheckSpec(&spec); err != nil {
		return err
	}
	if spec.PidsLimit == 0 {
		spec.PidsLimit = DefaultPidsLimit
	}
	if spec.EphemeralStorageGiB == 0 {
		spec.EphemeralStorageGiB = DefaultEphemeralStorageGiB
	}
	if spec.LogMaxBytes == 0 {
		spec.LogMaxBytes = DefaultLogMaxBytes
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.ID
	}
	unlock := r.lock(spec.ID)
	defer unlock()
	dir := r.sandboxDir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
		}
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	rec := &record{Spec: spec, CreatedAt: time.Now().UTC(), Started: map[string]bool{}}
	// The record comes first, so that Delete can clean up after a Create
	// that failed or crashed half-way.
	if err := r.save(rec); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	defer func() {
		if err != nil {
			if derr := r.destroy(context.WithoutCancel(ctx), rec); derr != nil {
				r.log.Warn("gvisor: cleanup after a failed Create", "task", spec.ID, "err", derr)
			}
		}
	}()
	// The task's cgroup and, with the same limits, the one runsc puts the
	// sandbox in: made here so that its CFS period is set before runsc
	// writes the quota (it writes the quota first, which the kernel
	// refuses above the parent's share with the default period).
	l := runc.Limits{MilliCPU: spec.MilliCPU, MemoryBytes: spec.MemoryMiB << 20,
		Pids: spec.PidsLimit + hostPidsOverhead, CPUPeriodMicros: cpuPeriodMicros}
	for _, cg := range []string{spec.ID, filepath.Join(spec.ID, pauseCgroup)} {
		if err := r.cg.Create(cg, l); err != nil {
			return fmt.Errorf("gvisor runtime: sandbox %s: %w", spec.ID, err)
		}
	}
	rec.OOMBase = r.oomKills(spec.ID)
	if rec.Storage, err = runc.SetupStorage(ctx, r.log, dir, spec.EphemeralStorageGiB); err != nil {
		return fmt.Errorf("gvisor runtime: sandbox %s: %w", spec.ID, err)
	}
	for _, sub := range []string{"exits", "sockets", "containers", "runsc-debug"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("gvisor runtime: %w", err)
		}
	}
	logDir := spec.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("gvisor runtime: log directory: %w", err)
	}
	etcDir := spec.EtcDir
	if etcDir == "" {
		etcDir = filepath.Join(dir, "etc")
		if err := runc.WriteEtc(etcDir, spec.Hostname); err != nil {
			return fmt.Errorf("gvisor runtime: %w", err)
		}
	}
	for _, c := range spec.Containers {
		if err := r.prepareContainer(spec, c, etcDir); err != nil {
			return err
		}
	}
	if err := r.bootSandbox(ctx, spec); err != nil {
		return fmt.Errorf("gvisor runtime: sandbox %s: %w", spec.ID, err)
	}
	rec.Ready = true
	if err := r.save(rec); err != nil {
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	return nil
}

// prepareContainer mounts the container's root file system and writes its
// bundle: runc's, marked as a sub-container of the sandbox.
func (r *Runtime) prepareContainer(spec runtime.Spec, c runtime.ContainerSpec, etcDir string) error {
	b := r.bundleDir(spec.ID, c.Name)
	rootfs := filepath.Join(b, "rootfs")
	rw := filepath.Join(r.sandboxDir(spec.ID), "rw", c.Name)
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{rootfs, upper, work, filepath.Join(b, "persist")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("gvisor runtime: %w", err)
		}
	}
	if err := runc.MountOverlay(rootfs, c.Layers, upper, work); err != nil {
		if errdefs.IsInvalidArgument(err) {
			return errdefs.InvalidArgument("sandbox %s: container %q: %v", spec.ID, c.Name, err)
		}
		return fmt.Errorf("gvisor runtime: container %q: %w", c.Name, err)
	}
	user, err := runc.ResolveUser(rootfs, c.User)
	if err != nil {
		return err
	}
	s := runc.OCISpec(c, runc.BundleParams{ID: spec.ID, Name: c.Name, Rootfs: rootfs, Hostname: spec.Hostname,
		NetNSPath: spec.NetNSPath, EtcDir: etcDir, HostNofile: r.hostNofile, HostNproc: r.hostNproc, User: user})
	pl := uint64(spec.PidsLimit)
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: spec.PidsLimit}
	for i, rl := range s.Process.Rlimits {
		if rl.Type == "RLIMIT_NPROC" {
			s.Process.Rlimits[i].Soft, s.Process.Rlimits[i].Hard = min(rl.Soft, pl), min(rl.Hard, pl)
		}
	}
	s.Annotations = map[string]string{
		annotationContainerType: containerTypeContainer,
		annotationSandboxID:     spec.ID,
	}
	if err := writeSpec(b, s); err != nil {
		return err
	}
	cid, flags := containerID(spec.ID, c.Name), r.globalFlags(spec.ID)
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

// The annotations by which runsc puts several containers in one sandbox
// (those of containerd's CRI plugin).
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

func writeSpec(bundle string, s *specs.Spec) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	return nil
}

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
	s := runc.OCISpec(runtime.ContainerSpec{Args: []string{"/pause"}},
		runc.BundleParams{ID: spec.ID, Name: pauseCgroup, Rootfs: rootfs, Hostname: spec.Hostname,
			NetNSPath: spec.NetNSPath, EtcDir: filepath.Join(r.sandboxDir(spec.ID), "etc"),
			HostNofile: r.hostNofile, HostNproc: r.hostNproc})
	s.Root.Readonly = true
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/etc/") {
			mounts = append(mounts, m)
		}
	}
	s.Mounts = mounts
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	quota, period := spec.MilliCPU*cpuPeriodMicros/1000, uint64(cpuPeriodMicros)
	mem, pids := spec.MemoryMiB<<20, spec.PidsLimit+hostPidsOverhead
	s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &mem}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: pids}
	s.Annotations = map[string]string{
		annotationContainerType: containerTypeSandbox,
		annotationSandboxID:     spec.ID,
	}
	if err := writeSpec(b, s); err != nil {
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
		return fmt.Errorf("runsc run: %w: %s %s", err, runc.ReadTail(out.Name()), runc.ReadTail(filepath.Join(r.sandboxDir(spec.ID), "runsc.log")))
	}
	return nil
}

// oomKills counts the OOM kills in the sandbox's cgroups: its own and
// the one of its processes (on cgroup v1 the kernel counts a kill in the
// victim's cgroup only).
func (r *Runtime) oomKills(id string) int64 {
	return r.cg.OOMKills(runc.SandboxCgroup(id)) + r.cg.OOMKills(runc.ContainerCgroup(id, pauseCgroup))
}

// Start implements runtime.Runtime: conmon runs the container's runtime
// script, which adds the container to the sandbox ("runsc create" and
// "runsc start" with conmon's stdio) and leaves a monitor for conmon to
// wait on.
func (r *Runtime) Start(ctx context.Context, id, name string) error {
	unlock := r.lock(id)
	defer unlock()
	rec, err := r.loadContainer(id, name)
	if err != nil {
		return err
	}
	if !rec.Ready {
		return errdefs.Conflict("sandbox %s is not fully created", id)
	}
	if rec.Started[name] {
		return errdefs.Conflict("container %q of sandbox %s was already started", name, id)
	}
	rec.Started[name] = true
	if err := r.save(rec); err != nil {
		return fmt.Errorf("gvisor runtime: %w", err)
	}
	cid := containerID(id, name)
	c := runc.Conmon{
		Path: r.cfg.ConmonPath, Runtime: filepath.Join(r.bundleDir(id, name), "runtime"),
		ID: cid, Name: name, Bundle: r.bundleDir(id, name),
		LogPath: r.logPath(rec, name), LogMaxBytes: rec.Spec.LogMaxBytes,
		ExitDir: filepath.Join(r.sandboxDir(id), "exits"), SocketDir: filepath.Join(r.sandboxDir(id), "sockets"),
	}
	if _, err := c.Create(ctx); err != nil {
		return fmt.Errorf("gvisor runtime: start %s/%s: %w %s", id, name, err, runc.ReadTail(filepath.Join(r.sandboxDir(id), "runsc.log")))
	}
	return nil
}

// exitStatus reads a container's exit file; ok is false while it runs.
func (r *Runtime) exitStatus(rec *record, name string) (st runtime.ExitStatus, ok bool, err error) {
	path := r.exitFile(rec.Spec.ID, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("gvisor runtime: %w", err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return st, false, fmt.Errorf("gvisor runtime: exit file %s holds %q", path, data)
	}
	st.Code = code
	if fi, err := os.Stat(path); err == nil {
		st.ExitedAt = fi.ModTime().UTC()
	}
	if code == 137 {
		// The host's OOM killer ends the whole sandbox; its containers'
		// monitors then report 137.
		st.OOMKilled = r.oomKills(rec.Spec.ID) > rec.OOMBase
	}
	return st, true, nil
}

// conmonAlive reports whether the container's conmon still runs.
func (r *Runtime) conmonAlive(id, name string) bool {
	pid := runc.ReadPid(filepath.Join(r.bundleDir(id, name), "conmon.pid"))
	return pid > 0 && runc.ProcessAlive(pid, "conmon")
}

// Wait implements runtime.Runtime. It polls the container's exit file,
// which conmon writes when the container's monitor ends, every 50 ms.
func (r *Runtime) Wait(ctx context.Context, id, name string) (runtime.ExitStatus, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for n := 0; ; n++ {
		rec, err := r.loadContainer(id, name)
		if err != nil {
			return runtime.ExitStatus{}, err
		}
		st, ok, err := r.exitStatus(rec, name)
		if err != nil || ok {
			return st, err
		}
		if rec.Started[name] && n%20 == 19 && !r.conmonAlive(id, name) {
			if st, ok, err := r.exitStatus(rec, name); err != nil || ok {
				return st, err
			}
			if _, err := os.Stat(filepath.Join(r.bundleDir(id, name), "conmon.pid")); err == nil {
				return runtime.ExitStatus{}, errdefs.Unavailable("container %q of sandbox %s lost its monitor (conmon) without an exit code", name, id)
			}
		}
		select {
		case <-ctx.Done():
			return runtime.ExitStatus{}, ctx.Err()
		case <-ticker.C:
		}
	}
}

// Signal implements runtime.Runtime with "runsc kill".
func (r *Runtime) Signal(ctx context.Context, id, name string, sig syscall.Signal) error {
	rec, err := r.loadContainer(id, name)
	if err != nil {
		return err
	}
	if !rec.Started[name] {
		return nil
	}
	if _, ok, _ := r.exitStatus(rec, name); ok {
		return nil
	}
	out, err := r.runsc(ctx, id, "kill", containerID(id, name), strconv.Itoa(int(sig)))
	if err != nil {
		if _, ok, _ := r.exitStatus(rec, name); ok {
			return nil
		}
		if st := r.state(ctx, id, containerID(id, name)); st == "stopped" || st == "" {
			return nil
		}
		return fmt.Errorf("gvisor runtime: kill %s/%s: %w: %s", id, name, err, out)
	}
	return nil
}

// state returns runsc's status of a container ("created", "running",
// "stopped") or "" when runsc does not know it.
func (r *Runtime) state(ctx context.Context, id, cid string) string {
	out, err := r.runsc(ctx, id, "state", cid)
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(out, &st) != nil {
		return ""
	}
	return st.Status
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	unlock := r.lock(id)
	defer unlock()
	rec, err := r.load(id)
	if err != nil {
		return err
	}
	return r.destroy(ctx, rec)
}

// destroy kills the sandbox and removes everything it holds: runsc state,
// conmons and monitors, mounts, loop device, cgroups and its directory. It
// works on a sandbox in any state, also one whose Create failed half-way.
func (r *Runtime) destroy(ctx context.Context, rec *record) error {
	id, dir := rec.Spec.ID, r.sandboxDir(rec.Spec.ID)
	var names []string
	for _, c := range rec.Spec.Containers {
		names = append(names, c.Name)
	}
	var errs []error
	// Sub-containers first, then the root container, which takes the
	// sandbox (sentry, gofers) with it.
	for _, cid := range append(containerIDs(id, names), id) {
		if out, err := r.runsc(ctx, id, "delete", "--force", cid); err != nil && r.state(ctx, id, cid) != "" {
			errs = append(errs, fmt.Errorf("runsc delete %s: %w: %s", cid, err, out))
		}
	}
	// Whatever still runs in the sandbox's cgroups (a sandbox runsc lost
	// track of, systrap stubs, gofers) is killed.
	if err := r.killCgroup(id); err != nil {
		errs = append(errs, err)
	}
	// The monitors end once the sandbox is gone; their conmons then exit.
	for _, n := range names {
		b := r.bundleDir(id, n)
		mon := runc.ReadPid(filepath.Join(b, "pidfile"))
		if mon > 0 && runc.ProcessAlive(mon, "monitor") {
			unix.Kill(mon, unix.SIGKILL)
		}
		pid := runc.ReadPid(filepath.Join(b, "conmon.pid"))
		for deadline := time.Now().Add(10 * time.Second); pid > 0 && runc.ProcessAlive(pid, "conmon"); {
			if time.Now().After(deadline) {
				r.log.Warn("gvisor: conmon did not exit after its sandbox was destroyed; killing it", "task", id, "container", n, "pid", pid)
				unix.Kill(pid, unix.SIGKILL)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, n := range names {
		if err := runc.Unmount(filepath.Join(r.bundleDir(id, n), "rootfs")); err != nil {
			errs = append(errs, err)
		}
	}
	if err := runc.TeardownStorage(dir); err != nil {
		errs = append(errs, err)
	}
	if err := r.cg.Remove(id, append(names, pauseCgroup)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if left := runc.MountsUnder(dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("still mounted: %s", strings.Join(left, ", ")))
		} else if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gvisor runtime: delete %s: %w", id, err)
	}
	return nil
}

// killCgroup kills every process in the sandbox's cgroups and waits (5 s
// at most) until they are gone.
func (r *Runtime) killCgroup(id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		for _, h := range r.cg.Hierarchies() {
			filepath.WalkDir(filepath.Join(h, runc.SandboxCgroup(id)), func(path string, d os.DirEntry, err error) error {
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

func containerIDs(id string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = containerID(id, n)
	}
	return out
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) {
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("gvisor runtime: %w", err)
	}
	out := []runtime.SandboxInfo{}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "runsc-root" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		rec, err := r.load(e.Name())
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		info := runtime.SandboxInfo{ID: rec.Spec.ID, Labels: map[string]string{}}
		for k, v := range rec.Spec.Labels {
			info.Labels[k] = v
		}
		for _, c := range rec.Spec.Containers {
			cs := runtime.ContainerState{Name: c.Name, Started: rec.Started[c.Name]}
			if st, ok, err := r.exitStatus(rec, c.Name); err == nil && ok {
				cs.Exit = &st
			}
			info.Containers = append(info.Containers, cs)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Exec implements runtime.Execer with "runsc exec": the process runs in
// the container (its root, user, capabilities, environment plus p.Env),
// inside the sandbox. It is a child of the agent (not of conmon), so it
// ends if the agent does. TTYs are not supported yet.
func (r *Runtime) Exec(ctx context.Context, id, name string, p runtime.ExecProcess) (int, error) {
	if p.TTY {
		return -1, errdefs.InvalidArgument("exec with a TTY is not supported by the gvisor runtime yet; run without one")
	}
	if len(p.Args) == 0 {
		return -1, errdefs.InvalidArgument("exec needs a command to run")
	}
	rec, err := r.loadContainer(id, name)
	if err != nil {
		return -1, err
	}
	if !rec.Started[name] {
		return -1, errdefs.Conflict("container %q of sandbox %s has not been started", name, id)
	}
	if _, ok, _ := r.exitStatus(rec, name); ok {
		return -1, errdefs.Conflict("container %q of sandbox %s has exited", name, id)
	}
	args := append(r.globalFlags(id), "exec")
	for _, e := range p.Env {
		args = append(args, "--env", e)
	}
	args = append(args, containerID(id, name))
	args = append(args, p.Args...)
	cmd := exec.CommandContext(ctx, r.cfg.RunscPath, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Stdin, p.Stdout, p.Stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("gvisor runtime: exec in %s/%s: %w", id, name, err)
	}
	return 0, nil
}
