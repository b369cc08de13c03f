package runc

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

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// Name is the runtime's name.
const Name = "runc"

// Defaults of the provisioned sandbox beyond its size.
const (
	DefaultPidsLimit           = 1024
	DefaultEphemeralStorageGiB = 20
	DefaultLogMaxBytes         = 10 << 20
	cpuPeriodMicros            = 100_000
	// pollInterval is how often Wait looks for a container's exit file.
	pollInterval = 50 * time.Millisecond
)

// Config configures the runc runtime.
type Config struct {
	// StateDir holds one directory per sandbox and runc's own state
	// (<data-dir>/sandboxes/runc). Required.
	StateDir string
	// RuncPath and ConmonPath are the binaries; found in PATH by default.
	RuncPath   string
	ConmonPath string
	// Logger receives warnings (e.g. ephemeral storage without a size
	// limit); slog.Default() by default.
	Logger *slog.Logger
}

// Runtime runs each sandbox's containers with runc, each under its own
// conmon, in a cgroup of the sandbox limited to its provisioned size.
type Runtime struct {
	cfg      Config
	log      *slog.Logger
	cg       *cgroups
	runcRoot string
	// hostNofile and hostNproc are the agent's hard limits, which a
	// container's cannot exceed (root lacks CAP_SYS_RESOURCE in some hosts).
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
	r := &Runtime{cfg: cfg, log: cfg.Logger, cg: cg, runcRoot: filepath.Join(dir, "runc-root"),
		locks: map[string]*idLock{}}
	if err := os.MkdirAll(r.runcRoot, 0o700); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	if out, err := exec.Command(cfg.RuncPath, "--root", r.runcRoot, "list", "-q").CombinedOutput(); err != nil {
		return nil, errdefs.Unavailable("%s list failed: %v: %s", cfg.RuncPath, err, bytes.TrimSpace(out))
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	r.hostNofile = rl.Max
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	r.hostNproc = rl.Max
	return r, nil
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
	OOMBase   int64           `json:"oomBase"` // the sandbox cgroup's oom_kill count at Create
	Started   map[string]bool `json:"started,omitempty"`
}

func (rec *record) container(name string) (runtime.ContainerSpec, bool) {
	for _, c := range rec.Spec.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return runtime.ContainerSpec{}, false
}

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.cfg.StateDir, id) }
func (r *Runtime) bundleDir(id, name string) string {
	return filepath.Join(r.sandboxDir(id), "containers", name)
}
func (r *Runtime) exitFile(id, name string) string {
	return filepath.Join(r.sandboxDir(id), "exits", runcID(id, name))
}
func (r *Runtime) logPath(rec *record, name string) string {
	dir := rec.Spec.LogDir
	if dir == "" {
		dir = filepath.Join(r.sandboxDir(rec.Spec.ID), "logs")
	}
	return filepath.Join(dir, name+".log")
}

// runcID is the container's ID for runc and conmon.
func runcID(id, name string) string { return id + "-" + name }

func (r *Runtime) save(rec *record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(r.sandboxDir(rec.Spec.ID), "sandbox.json")
	f, err := os.CreateTemp(filepath.Dir(path), ".sandbox-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
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
	if validName(id) != nil {
		return nil, errdefs.NotFound("sandbox %s not found", id)
	}
	data, err := os.ReadFile(filepath.Join(r.sandboxDir(id), "sandbox.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.NotFound("sandbox %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	rec := &record{}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("runc runtime: sandbox %s: %w", id, err)
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
	if _, ok := rec.container(name); !ok {
		return nil, errdefs.NotFound("container %q not found in sandbox %s", name, id)
	}
	return rec, nil
}

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
	}
	return nil
}

// Create implements runtime.Runtime.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (err error) {
	if err := validName(spec.ID); err == nil {
		if _, err := os.Stat(r.sandboxDir(spec.ID)); err == nil {
			return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
		}
	}
	if err := checkSpec(&spec); err != nil {
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
		return fmt.Errorf("runc runtime: %w", err)
	}
	rec := &record{Spec: spec, CreatedAt: time.Now().UTC(), Started: map[string]bool{}}
	// The record comes first, so that Delete can clean up after a Create
	// that failed or crashed half-way.
	if err := r.save(rec); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("runc runtime: %w", err)
	}
	defer func() {
		if err != nil {
			if derr := r.destroy(context.WithoutCancel(ctx), rec); derr != nil {
				r.log.Warn("runc: cleanup after a failed Create", "task", spec.ID, "err", derr)
			}
		}
	}()
	if err := r.cg.create(spec.ID, limits{milliCPU: spec.MilliCPU, memory: spec.MemoryMiB << 20,
		pids: spec.PidsLimit, cpuPeriod: cpuPeriodMicros}); err != nil {
		return fmt.Errorf("runc runtime: sandbox %s: %w", spec.ID, err)
	}
	rec.OOMBase = r.cg.oomKills(taskPath(spec.ID))
	if rec.Storage, err = SetupStorage(ctx, r.log, dir, spec.EphemeralStorageGiB); err != nil {
		return fmt.Errorf("runc runtime: sandbox %s: %w", spec.ID, err)
	}
	for _, sub := range []string{"exits", "sockets", "containers"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("runc runtime: %w", err)
		}
	}
	logDir := spec.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("runc runtime: log directory: %w", err)
	}
	etcDir := spec.EtcDir
	if etcDir == "" {
		etcDir = filepath.Join(dir, "etc")
		if err := writeEtc(etcDir, spec.Hostname); err != nil {
			return fmt.Errorf("runc runtime: %w", err)
		}
	}
	for _, c := range spec.Containers {
		if err := r.prepareContainer(spec, c, etcDir); err != nil {
			return err
		}
	}
	rec.Ready = true
	if err := r.save(rec); err != nil {
		return fmt.Errorf("runc runtime: %w", err)
	}
	return nil
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

// prepareContainer mounts the container's root file system and writes its
// bundle.
func (r *Runtime) prepareContainer(spec runtime.Spec, c runtime.ContainerSpec, etcDir string) error {
	b := r.bundleDir(spec.ID, c.Name)
	rootfs := filepath.Join(b, "rootfs")
	rw := filepath.Join(r.sandboxDir(spec.ID), "rw", c.Name)
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{rootfs, upper, work, filepath.Join(b, "persist")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("runc runtime: %w", err)
		}
	}
	if err := mountOverlay(rootfs, c.Layers, upper, work); err != nil {
		if errdefs.IsInvalidArgument(err) {
			return errdefs.InvalidArgument("sandbox %s: container %q: %v", spec.ID, c.Name, err)
		}
		return fmt.Errorf("runc runtime: container %q: %w", c.Name, err)
	}
	user, err := resolveUser(rootfs, c.User)
	if err != nil {
		return err
	}
	s := ociSpec(c, bundleParams{id: spec.ID, name: c.Name, rootfs: rootfs, hostname: spec.Hostname,
		netnsPath: spec.NetNSPath, etcDir: etcDir, hostNofile: r.hostNofile, hostNproc: r.hostNproc, user: user})
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("runc runtime: %w", err)
	}
	return nil
}

// Start implements runtime.Runtime: it launches conmon, which runs
// "runc create" and stays as the container's monitor, then "runc start".
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
		return fmt.Errorf("runc runtime: %w", err)
	}
	if err := r.launch(ctx, rec, name); err != nil {
		return fmt.Errorf("runc runtime: start %s/%s: %w", id, name, err)
	}
	return nil
}

func (r *Runtime) launch(ctx context.Context, rec *record, name string) error {
	id := rec.Spec.ID
	rid := runcID(id, name)
	c := Conmon{
		Path: r.cfg.ConmonPath, Runtime: r.cfg.RuncPath, RuntimeArgs: []string{"--root=" + r.runcRoot},
		ID: rid, Name: name, Bundle: r.bundleDir(id, name),
		LogPath: r.logPath(rec, name), LogMaxBytes: rec.Spec.LogMaxBytes,
		ExitDir: filepath.Join(r.sandboxDir(id), "exits"), SocketDir: filepath.Join(r.sandboxDir(id), "sockets"),
	}
	if _, err := c.Create(ctx); err != nil {
		return err
	}
	if out, err := r.runc(ctx, "start", rid); err != nil {
		return fmt.Errorf("runc start: %w: %s", err, out)
	}
	return nil
}

func readTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(bytes.TrimSpace(data))
}

// runc runs a runc command with the runtime's state root and returns its
// combined output.
func (r *Runtime) runc(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.cfg.RuncPath, append([]string{"--root", r.runcRoot}, args...)...)
	out, err := cmd.CombinedOutput()
	return bytes.TrimSpace(out), err
}

// runcState returns runc's status of a container ("created", "running",
// "stopped", ...) or "" when runc does not know it.
func (r *Runtime) runcState(ctx context.Context, rid string) string {
	out, err := r.runc(ctx, "state", rid)
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

// exitStatus reads a container's exit file; ok is false while it runs.
func (r *Runtime) exitStatus(rec *record, name string) (st runtime.ExitStatus, ok bool, err error) {
	path := r.exitFile(rec.Spec.ID, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("runc runtime: %w", err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return st, false, fmt.Errorf("runc runtime: exit file %s holds %q", path, data)
	}
	st.Code = code
	if fi, err := os.Stat(path); err == nil {
		st.ExitedAt = fi.ModTime().UTC()
	}
	if code == 137 {
		// On cgroup v1 the kernel counts an OOM kill in the victim's
		// cgroup only (the container's); on v2 in it and its parents.
		st.OOMKilled = r.cg.oomKills(containerPath(rec.Spec.ID, name)) > 0 ||
			r.cg.oomKills(taskPath(rec.Spec.ID)) > rec.OOMBase
	}
	return st, true, nil
}

// conmonAlive reports whether the container's conmon still runs.
func (r *Runtime) conmonAlive(id, name string) bool {
	pid := readPid(filepath.Join(r.bundleDir(id, name), "conmon.pid"))
	return pid > 0 && processAlive(pid, "conmon")
}

func readPid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// processAlive reports whether pid runs (not a zombie) with the given
// command name, which guards against a reused PID.
func processAlive(pid int, comm string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 >= len(s) {
		return false
	}
	return s[open+1:close] == comm && s[close+2] != 'Z' && s[close+2] != 'X'
}

// Wait implements runtime.Runtime. It polls the container's exit file, which
// conmon writes when the container ends, every 50 ms.
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
		// About every second, make sure a started container still has its
		// monitor: without it no exit code would ever come.
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

// Signal implements runtime.Runtime.
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
	rid := runcID(id, name)
	out, err := r.runc(ctx, "kill", rid, strconv.Itoa(int(sig)))
	if err != nil {
		if _, ok, _ := r.exitStatus(rec, name); ok {
			return nil
		}
		if st := r.runcState(ctx, rid); st == "stopped" || st == "" {
			return nil
		}
		return fmt.Errorf("runc runtime: kill %s/%s: %w: %s", id, name, err, out)
	}
	return nil
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

// destroy kills what runs in the sandbox and removes everything it holds:
// containers, conmons, mounts, loop device, cgroups and its directory. It
// works on a sandbox in any state, also one whose Create failed half-way.
func (r *Runtime) destroy(ctx context.Context, rec *record) error {
	id, dir := rec.Spec.ID, r.sandboxDir(rec.Spec.ID)
	var names []string
	for _, c := range rec.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, n := range names {
		r.runc(ctx, "kill", "--all", runcID(id, n), "KILL")
	}
	for _, n := range names {
		pid := readPid(filepath.Join(r.bundleDir(id, n), "conmon.pid"))
		for deadline := time.Now().Add(10 * time.Second); pid > 0 && processAlive(pid, "conmon"); {
			if time.Now().After(deadline) {
				r.log.Warn("runc: conmon did not exit after its container was killed; killing it", "task", id, "container", n, "pid", pid)
				unix.Kill(pid, unix.SIGKILL)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var errs []error
	for _, n := range names {
		rid := runcID(id, n)
		if out, err := r.runc(ctx, "delete", "--force", rid); err != nil && r.runcState(ctx, rid) != "" {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", rid, err, out))
		}
	}
	for _, n := range names {
		if err := unmount(filepath.Join(r.bundleDir(id, n), "rootfs")); err != nil {
			errs = append(errs, err)
		}
	}
	if err := TeardownStorage(dir); err != nil {
		errs = append(errs, err)
	}
	if err := r.cg.remove(id, names); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if left := mountsUnder(dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("still mounted: %s", strings.Join(left, ", ")))
		} else if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("runc runtime: delete %s: %w", id, err)
	}
	return nil
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) {
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("runc runtime: %w", err)
	}
	out := []runtime.SandboxInfo{}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "runc-root" {
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

// Exec implements runtime.Execer with "runc exec": the process gets the
// container's user, capabilities, limits and seccomp profile, the
// container's environment plus p.Env. It is a child of the agent (not of
// conmon), so it ends if the agent does. TTYs are not supported yet.
func (r *Runtime) Exec(ctx context.Context, id, name string, p runtime.ExecProcess) (int, error) {
	if p.TTY {
		return -1, errdefs.InvalidArgument("exec with a TTY is not supported by the runc runtime yet; run without one")
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
	args := []string{"--root", r.runcRoot, "exec"}
	for _, e := range p.Env {
		args = append(args, "--env", e)
	}
	args = append(args, runcID(id, name))
	args = append(args, p.Args...)
	cmd := exec.CommandContext(ctx, r.cfg.RuncPath, args...)
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
		return -1, fmt.Errorf("runc runtime: exec in %s/%s: %w", id, name, err)
	}
	return 0, nil
}
