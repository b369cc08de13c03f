package toolkit

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
)

// Sandboxes is the conmon-backed core of a back end that runs each
// container of a sandbox under a conmon of its own with an OCI runtime
// (runc, or runsc in the gvisor back end). It owns the sandboxes'
// directories under Store.Dir and what is the same in both back ends:
//
//	<Dir>/<id>/sandbox.json          the ConmonRecord, written atomically
//	<Dir>/<id>/containers/<name>/    the bundle, with conmon's conmon.pid
//	<ExitRoot>/<id>/<id>-<name>      the exit code conmon writes
//	<Dir>/<id>/sockets/, logs/, etc/ conmon's sockets, default logs and /etc
//
// and on top of them Create's frame, Wait, List, Delete, Signal, Exec and
// the common part of Delete and Leftovers. The back end fills in what
// differs (its OCI runtime's commands, how a sandbox is set up, destroyed
// and found OOM-killed) in the fields below, before the first call; they
// are not changed after. A Sandboxes is safe for concurrent use.
type Sandboxes struct {
	// Name is the back end's name ("runc", "gvisor"): errors start with
	// "<Name> runtime:", log messages with "<Name>:".
	Name string
	// Store holds the records and the per-sandbox locks; its Reserved
	// names the OCI runtime's own state directory in Dir.
	Store
	Log *slog.Logger
	// HostNofile is the agent's hard RLIMIT_NOFILE (HostLimits), which
	// bounds the containers'.
	HostNofile uint64
	// ExitRoot holds each sandbox's exit codes, in ExitRoot/<id>: a
	// directory off the data disk (a tmpfs, DefaultExitRoot), so that a
	// container that exits while that disk is full keeps its code. Empty:
	// in the sandbox's directory.
	ExitRoot string
	// IDEnd ends the container IDs of the sandboxes made from now on
	// (ConmonRecord.IDEnd), for an OCI runtime that takes an ID no
	// container has for a unique prefix of one (runsc): with an end that
	// no sandbox ID or container name holds, no container's ID is a
	// prefix of another's, as <id>-app is of <id>-apple.
	IDEnd string
	// InitPath is the static init bound into containers whose
	// Security.Init is set (FindInit); without it such containers are
	// refused at Create.
	InitPath string
	// Cgroups holds the sandboxes' cgroups; TearDown removes them.
	Cgroups *Cgroups
	// Command returns the OCI runtime's command about sandbox id, its
	// global flags first, then args (Exec runs "exec" with it).
	Command func(ctx context.Context, id string, args ...string) *exec.Cmd
	// ExecProcessFile makes Exec describe the process in a process.json
	// ("exec --process": the container's process with the exec's args,
	// env, terminal and console size) rather than in flags, for an OCI
	// runtime that sizes the terminal it makes from it before the process
	// runs (runc). Without it, "exec" gets flags and a terminal as its
	// stdin, which runsc hands to the process as it is.
	ExecProcessFile bool
	// Run runs an OCI runtime command about sandbox id and returns its
	// combined output, trimmed (Signal's "kill", State's "state").
	Run func(ctx context.Context, id string, args ...string) ([]byte, error)
	// OOMKilled reports whether container name, which ended with code 137,
	// was killed by the OOM killer.
	OOMKilled func(rec *ConmonRecord, name string) bool
	// Destroy kills what runs in the sandbox and removes everything it
	// holds, usually ending with TearDown. It must work on a sandbox in any
	// state, also one whose Create failed half-way, and is called with the
	// sandbox's lock held.
	Destroy func(ctx context.Context, rec *ConmonRecord) error
}

// ConmonRecord is the record of a conmon-backed sandbox.
type ConmonRecord struct {
	Record
	Storage string `json:"storage,omitempty"` // setupStorage's "loop" or "dir"
	OOMBase int64  `json:"oomBase"`           // OOM kills counted in the sandbox's cgroup(s) at Create
	// Launching marks the containers whose start began and has not
	// finished: set with Started, cleared once conmon runs the container.
	Launching map[string]bool `json:"launching,omitempty"`
	// ExitDir is where conmon writes the containers' exit codes (and its
	// persist directories); empty for sandboxes made before it was kept
	// off the data disk: their SandboxDir's exits.
	ExitDir string `json:"exitDir,omitempty"`
	// Primed holds the init PID of each container created ahead of its
	// task (Prime): its conmon runs, and its init waits for the first
	// start, which uses it (a restart launches anew and drops it).
	Primed map[string]int `json:"primed,omitempty"`
	// PrimedEtc is the digest of the /etc files the primed containers
	// bound when they were created.
	PrimedEtc string `json:"primedEtc,omitempty"`
	// PrimedAs names the OCI runtime's containers (<PrimedAs>-<name>)
	// when it is not Spec.ID: a claimed primed sandbox's containers keep
	// the names they were created under, its warm ID's.
	PrimedAs string `json:"primedAs,omitempty"`
	// IDEnd ends each of the OCI runtime's container IDs: Sandboxes.IDEnd
	// when the sandbox was made (empty in sandboxes made before it was).
	IDEnd string `json:"idEnd,omitempty"`
}

// ContainerID is a container's ID for the OCI runtime and conmon, but
// for the record's IDEnd (ConmonRecord.ContainerID).
func ContainerID(id, name string) string { return id + "-" + name }

// ContainerID is container name's ID for the OCI runtime and conmon:
// <PrimedAs or Spec.ID>-<name><IDEnd>.
func (rec *ConmonRecord) ContainerID(name string) string {
	return ContainerID(cmp.Or(rec.PrimedAs, rec.Spec.ID), name) + rec.IDEnd
}

// BundleDir is the OCI bundle directory of container name.
func (s *Sandboxes) BundleDir(id, name string) string {
	return filepath.Join(s.SandboxDir(id), "containers", name)
}

func (s *Sandboxes) exitFile(rec *ConmonRecord, name string) string {
	return filepath.Join(s.exitDir(rec), rec.ContainerID(name))
}

// exitRootOf is sandbox id's directory under ExitRoot, or "".
func (s *Sandboxes) exitRootOf(id string) string {
	if s.ExitRoot == "" {
		return ""
	}
	return filepath.Join(s.ExitRoot, id)
}

func (s *Sandboxes) exitDir(rec *ConmonRecord) string {
	if rec.ExitDir != "" {
		return rec.ExitDir
	}
	return filepath.Join(s.SandboxDir(rec.Spec.ID), "exits")
}

// DefaultExitRoot is the ExitRoot of the back end whose state directory is
// stateDir: /run/vessel/exits/<hash of stateDir>, off the data disk (a
// tmpfs on most hosts, which lives exactly as long as sandboxes: a reboot
// ends both), or "" when /run is missing.
func DefaultExitRoot(stateDir string) string {
	if fi, err := os.Stat("/run"); err != nil || !fi.IsDir() {
		return ""
	}
	h := sha256.Sum256([]byte(stateDir))
	return filepath.Join("/run", "vessel", "exits", hex.EncodeToString(h[:])[:12])
}

// LogPath is where container name's log goes: <LogDir>/<name>.log, or the
// sandbox's logs/ when the spec has no LogDir.
func (s *Sandboxes) LogPath(rec *ConmonRecord, name string) string {
	dir := rec.Spec.LogDir
	if dir == "" {
		dir = filepath.Join(s.SandboxDir(rec.Spec.ID), "logs")
	}
	return filepath.Join(dir, name+".log")
}

// Conmon returns container name's conmon, with the sandbox's bundle, log,
// exit and socket paths filled in; the caller sets Path, Runtime and
// RuntimeArgs.
func (s *Sandboxes) Conmon(rec *ConmonRecord, name string) Conmon {
	id := rec.Spec.ID
	return Conmon{
		ID: rec.ContainerID(name), Name: name, Bundle: s.BundleDir(id, name),
		LogPath: s.LogPath(rec, name), LogMaxBytes: rec.Spec.LogMaxBytes,
		ExitDir: s.exitDir(rec), SocketDir: filepath.Join(s.SandboxDir(id), "sockets"),
		PersistDir: filepath.Join(s.exitDir(rec), "persist", name),
	}
}

// errorf formats an error of the back end: "<Name> runtime: ...".
func (s *Sandboxes) errorf(format string, args ...any) error {
	return fmt.Errorf(s.Name+" runtime: "+format, args...)
}

// Save writes the sandbox's record atomically.
func (s *Sandboxes) Save(rec *ConmonRecord) error { return s.Store.Save(rec) }

// Load reads sandbox id's record; an error of kind errdefs.ErrNotFound
// when there is none. The record is the caller's.
func (s *Sandboxes) Load(id string) (*ConmonRecord, error) { return s.LoadContainer(id, "") }

// LoadContainer is Load, with an error of kind errdefs.ErrNotFound also
// when the sandbox has no container name (unless name is "").
func (s *Sandboxes) LoadContainer(id, name string) (*ConmonRecord, error) {
	rec := &ConmonRecord{}
	var err error
	if name == "" {
		err = s.Store.Load(id, rec)
	} else {
		err = s.Store.LoadContainer(id, name, rec)
	}
	if errdefs.IsNotFound(err) {
		return nil, err
	}
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	return rec, nil
}

// Create is the frame of runtime.Runtime's Create: it checks the spec,
// fills its defaults, makes the sandbox's directory and writes its record
// first (so that Delete can clean up after a Create that failed or crashed
// half-way), then calls setup with the sandbox's lock held, and marks the
// record ready. When setup fails, Destroy cleans up.
func (s *Sandboxes) Create(ctx context.Context, spec runtime.Spec, setup func(rec *ConmonRecord) error) (err error) {
	return s.create(ctx, spec, false, setup)
}

// Warm is the frame of runtime.Warmer's Warm: Create's, for a spec
// without containers, whose record is marked warm (List reports it so).
// setup makes what the back end does ahead (PrepareSandbox, its cgroup,
// a booted sandbox).
func (s *Sandboxes) Warm(ctx context.Context, spec runtime.Spec, setup func(rec *ConmonRecord) error) error {
	if len(spec.Containers) > 0 {
		return errdefs.InvalidArgument("warm sandbox %s has %d containers; a warm sandbox has none (Claim adds them)",
			spec.ID, len(spec.Containers))
	}
	spec.LogDir = ""
	return s.create(ctx, spec, true, setup)
}

// validateWarm checks a warm sandbox's spec: Validate's rules on the ID
// and the size (a warm sandbox has no containers).
func validateWarm(spec runtime.Spec) error {
	if err := runtime.CheckName(spec.ID); err != nil {
		return errdefs.InvalidArgument("warm sandbox ID %q is not valid: %v", spec.ID, err)
	}
	if spec.MilliCPU <= 0 || spec.MemoryMiB <= 0 {
		return errdefs.InvalidArgument("warm sandbox %s: MilliCPU and MemoryMiB must be positive (its class's size), got %d and %d",
			spec.ID, spec.MilliCPU, spec.MemoryMiB)
	}
	return nil
}

func (s *Sandboxes) create(ctx context.Context, spec runtime.Spec, warm bool, setup func(rec *ConmonRecord) error) (err error) {
	if s.Exists(spec.ID) {
		return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
	}
	if warm {
		if err := validateWarm(spec); err != nil {
			return err
		}
	} else if err := spec.Validate(); err != nil {
		return err
	}
	FillDefaults(&spec)
	if spec.Hostname == "" {
		spec.Hostname = spec.ID
	}
	unlock := s.Lock(spec.ID)
	defer unlock()
	rec := &ConmonRecord{Record: Record{Spec: spec, CreatedAt: time.Now().UTC(), Started: map[string]bool{}, Warm: warm}, IDEnd: s.IDEnd}
	if err := s.Make(rec); err != nil {
		if errdefs.IsAlreadyExists(err) || errdefs.IsInvalidArgument(err) {
			return err
		}
		return s.errorf("%w", err)
	}
	defer func() {
		if err != nil {
			if derr := s.Destroy(context.WithoutCancel(ctx), rec); derr != nil {
				s.Log.Warn(s.Name+": cleanup after a failed Create", "task", spec.ID, "err", derr)
			}
		}
	}()
	if err := setup(rec); err != nil {
		return err
	}
	rec.Ready = true
	if err := s.Save(rec); err != nil {
		return s.errorf("%w", err)
	}
	return nil
}

// Claim is the frame of runtime.Warmer's Claim. With the locks of both
// IDs held, it checks what the contract refuses: warmID missing or not
// warm (errdefs.ErrNotFound), spec.ID existing (ErrAlreadyExists), a
// different network namespace or more ephemeral storage than the warm
// sandbox has (ErrConflict), and what serve refuses (the back end's own
// conflicts; serve may complete spec, as its hostname, from the warm
// record), all before anything changes. Then the warm sandbox becomes the
// task's, not ready (Store.Claim, the commit), setup adds the task's
// limits and containers, and the record is marked ready. When setup
// fails, Destroy removes the sandbox under both IDs.
func (s *Sandboxes) Claim(ctx context.Context, warmID string, spec runtime.Spec,
	serve func(warm *ConmonRecord, spec *runtime.Spec) error, setup func(rec *ConmonRecord) error) (err error) {
	if err := spec.Validate(); err != nil {
		return err
	}
	if spec.ID == warmID {
		return errdefs.AlreadyExists("sandbox %s already exists (a task cannot take its warm sandbox's ID)", spec.ID)
	}
	FillDefaults(&spec)
	first, second := warmID, spec.ID
	if second < first {
		first, second = second, first
	}
	defer s.Lock(first)()
	defer s.Lock(second)()
	warm, err := s.Load(warmID)
	if errdefs.IsNotFound(err) || (err == nil && !warm.Warm) {
		return errdefs.NotFound("no warm sandbox %s (never made, deleted or already claimed)", warmID)
	}
	if err != nil {
		return err
	}
	if s.Exists(spec.ID) {
		return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
	}
	if spec.NetNSPath != warm.Spec.NetNSPath {
		return errdefs.Conflict("warm sandbox %s is in network namespace %q, not %q: claim it with the namespace it was warmed in",
			warmID, warm.Spec.NetNSPath, spec.NetNSPath)
	}
	if spec.EphemeralStorageGiB > warm.Spec.EphemeralStorageGiB {
		return errdefs.Conflict("warm sandbox %s has %d GiB of ephemeral storage, the task asks for %d GiB",
			warmID, warm.Spec.EphemeralStorageGiB, spec.EphemeralStorageGiB)
	}
	if serve != nil {
		if err := serve(warm, &spec); err != nil {
			return err
		}
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.ID
	}
	rec := &ConmonRecord{Record: Record{Spec: spec, CreatedAt: time.Now().UTC(), Started: map[string]bool{}, Home: warmID},
		Storage: warm.Storage, OOMBase: warm.OOMBase, ExitDir: warm.ExitDir, IDEnd: s.IDEnd}
	if err := s.Store.Claim(warmID, rec); err != nil {
		if errdefs.IsAlreadyExists(err) || errdefs.IsInvalidArgument(err) {
			return err
		}
		return s.errorf("claim of warm sandbox %s: %w", warmID, err)
	}
	defer func() {
		if err != nil {
			if derr := s.Destroy(context.WithoutCancel(ctx), rec); derr != nil {
				s.Log.Warn(s.Name+": cleanup after a failed Claim", "task", spec.ID, "warm", warmID, "err", derr)
			}
		}
	}()
	if err := setup(rec); err != nil {
		return err
	}
	rec.Ready = true
	if err := s.Save(rec); err != nil {
		return s.errorf("%w", err)
	}
	return nil
}

// Prepare sets up what the sandbox's containers run on: PrepareSandbox,
// then PrepareContainers.
func (s *Sandboxes) Prepare(ctx context.Context, rec *ConmonRecord, extraDirs []string,
	adjust func(rec *ConmonRecord, c runtime.ContainerSpec, bundle string, oci *specs.Spec) error) (err error) {
	if err := s.PrepareSandbox(ctx, rec, extraDirs); err != nil {
		return err
	}
	return s.PrepareContainers(rec, adjust)
}

// PrepareSandbox sets up what depends neither on the images nor on the
// containers (what a warm sandbox holds ahead): the ephemeral storage
// (rec.Storage), and the directories exits, sockets, containers and
// extraDirs.
func (s *Sandboxes) PrepareSandbox(ctx context.Context, rec *ConmonRecord, extraDirs []string) (err error) {
	spec := rec.Spec
	dir := s.SandboxDir(spec.ID)
	if rec.Storage, err = setupStorage(ctx, s.Log, dir, spec.EphemeralStorageGiB); err != nil {
		return s.errorf("sandbox %s: %w", spec.ID, err)
	}
	for _, sub := range append([]string{"exits", "sockets", "containers"}, extraDirs...) {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return s.errorf("%w", err)
		}
	}
	if s.ExitRoot != "" {
		rec.ExitDir = filepath.Join(s.ExitRoot, spec.ID)
		if err := os.MkdirAll(rec.ExitDir, 0o700); err != nil {
			return s.errorf("exit directory: %w", err)
		}
	}
	return nil
}

// PrepareContainers sets up the rest, once PrepareSandbox has: the log
// directory; hosts, hostname and resolv.conf in etc/ when the spec has
// no EtcDir; and for each container its root file system (the image's
// layers under upper and work in rw/<name>) and its bundle, whose OCI
// spec (OCISpec's) adjust may change before it is written; adjust may be
// nil.
func (s *Sandboxes) PrepareContainers(rec *ConmonRecord,
	adjust func(rec *ConmonRecord, c runtime.ContainerSpec, bundle string, oci *specs.Spec) error) error {
	spec := rec.Spec
	dir := s.SandboxDir(spec.ID)
	logDir := spec.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return s.errorf("log directory: %w", err)
	}
	etcDir := spec.EtcDir
	if etcDir == "" {
		etcDir = filepath.Join(dir, "etc")
		if err := writeEtc(etcDir, spec.Hostname); err != nil {
			return s.errorf("%w", err)
		}
	}
	for _, c := range spec.Containers {
		b, oci, err := s.prepareContainer(rec, c, etcDir)
		if err != nil {
			return err
		}
		if adjust != nil {
			if err := adjust(rec, c, b, oci); err != nil {
				return err
			}
		}
		if err := s.WriteSpec(b, oci); err != nil {
			return err
		}
	}
	return nil
}

// prepareContainer makes container c's bundle directory, mounts its root
// file system and resolves its user in the image; it returns the bundle
// directory and the container's OCI spec.
func (s *Sandboxes) prepareContainer(rec *ConmonRecord, c runtime.ContainerSpec, etcDir string) (string, *specs.Spec, error) {
	spec := rec.Spec
	b := s.BundleDir(spec.ID, c.Name)
	rootfs := filepath.Join(b, "rootfs")
	rw := filepath.Join(s.SandboxDir(spec.ID), "rw", c.Name)
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{rootfs, upper, work, filepath.Join(b, "persist")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", nil, s.errorf("%w", err)
		}
	}
	if err := mountOverlay(rootfs, c.Layers, upper, work); err != nil {
		if errdefs.IsInvalidArgument(err) {
			return "", nil, errdefs.InvalidArgument("sandbox %s: container %q: %v", spec.ID, c.Name, err)
		}
		return "", nil, s.errorf("container %q: %w", c.Name, err)
	}
	// The OCI runtime reads the image's /etc/passwd and /etc/group when it
	// starts the container, whatever its user: a named pipe there would
	// hang it.
	if err := checkUserFiles(rootfs); err != nil {
		return "", nil, containerError(spec.ID, c.Name, err)
	}
	user, err := resolveUser(rootfs, c.User)
	if err != nil {
		return "", nil, containerError(spec.ID, c.Name, err)
	}
	oci, err := OCISpec(c, BundleParams{ID: spec.ID, Home: rec.HomeID(), Name: c.Name, Rootfs: rootfs, Hostname: spec.Hostname,
		NetNSPath: spec.NetNSPath, EtcDir: etcDir, HostNofile: s.HostNofile, User: user, InitPath: s.InitPath})
	if err != nil {
		return "", nil, containerError(spec.ID, c.Name, err)
	}
	return b, oci, nil
}

// containerError puts the sandbox and container before an error, keeping
// its kind.
func containerError(id, name string, err error) error {
	return fmt.Errorf("sandbox %s: container %q: %w", id, name, err)
}

// WriteSpec writes an OCI spec to <bundle>/config.json.
func (s *Sandboxes) WriteSpec(bundle string, spec *specs.Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return s.errorf("%w", err)
	}
	return nil
}

// Start is the frame of runtime.Runtime's Start: with the sandbox's lock
// held, it checks that the sandbox is ready and the container not started
// yet, and records it as started before launch runs.
func (s *Sandboxes) Start(id, name string, launch func(rec *ConmonRecord) error) error {
	unlock := s.Lock(id)
	defer unlock()
	rec, err := s.LoadContainer(id, name)
	if err != nil {
		return err
	}
	if !rec.Ready {
		return errdefs.Conflict("sandbox %s is not fully created", id)
	}
	if rec.Started[name] {
		return runtime.AlreadyStarted(id, name)
	}
	if err := s.checkNonRoot(rec, name); err != nil {
		return err
	}
	if err := s.bindSubPaths(rec, name); err != nil {
		return s.errorf("start %s/%s: %w", id, name, err)
	}
	rec.Started[name] = true
	// Launching until launch returns: an agent that dies in between
	// leaves it, and Wait then knows the container never ran.
	if rec.Launching == nil {
		rec.Launching = map[string]bool{}
	}
	rec.Launching[name] = true
	if err := s.Save(rec); err != nil {
		return s.errorf("%w", err)
	}
	if err := launch(rec); err != nil {
		return err
	}
	if rec, err = s.LoadContainer(id, name); err == nil {
		delete(rec.Launching, name)
		err = s.Save(rec)
	}
	if err != nil && s.Log != nil {
		// The container runs; only a later loss of its conmon would be
		// misread as an interrupted start.
		s.Log.Warn(s.Name+": recording a container's start", "sandbox", id, "container", name, "err", err)
	}
	return nil
}

// checkNonRoot refuses container name when it has RunAsNonRoot and its
// bundle runs it as uid 0 (its user as Create resolved it in the image),
// with the kubelet's message.
func (s *Sandboxes) checkNonRoot(rec *ConmonRecord, name string) error {
	c, _ := rec.Container(name)
	if !c.Security.RunAsNonRoot {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(s.BundleDir(rec.Spec.ID, name), "config.json"))
	if err != nil {
		return s.errorf("%w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil || spec.Process == nil {
		return s.errorf("container %q of sandbox %s: the bundle's config.json has no process: %v", name, rec.Spec.ID, err)
	}
	if spec.Process.User.UID == 0 {
		return errdefs.InvalidArgument("container %q of sandbox %s (user %q): container has runAsNonRoot and image will run as root",
			name, rec.Spec.ID, c.User)
	}
	return nil
}

// Restart is the frame of runtime.Restarter's Restart: with the sandbox's
// lock held, it checks that the container was started and has exited,
// waits for its conmon to go, calls clean (which removes the ended
// container from the OCI runtime's state), removes the exit file, counts
// the restart in the record and calls launch. When clean or launch fails,
// the exit file is put back, so that the container still shows as exited.
func (s *Sandboxes) Restart(id, name string, clean, launch func(rec *ConmonRecord) error) error {
	unlock := s.Lock(id)
	defer unlock()
	rec, err := s.LoadContainer(id, name)
	if err != nil {
		return err
	}
	if !rec.Started[name] {
		return runtime.NeverStarted(id, name)
	}
	if _, ok, err := s.ExitStatus(rec, name); err != nil {
		return err
	} else if !ok {
		return runtime.StillRuns(id, name)
	}
	s.WaitConmon(id, name, "its container exited")
	if err := clean(rec); err != nil {
		return s.errorf("restart %s/%s: %w", id, name, err)
	}
	if err := s.bindSubPaths(rec, name); err != nil {
		return s.errorf("restart %s/%s: %w", id, name, err)
	}
	putBack, err := SetAsideExit(s.exitFile(rec, name))
	if err != nil {
		return s.errorf("%w", err)
	}
	rec.CountRestart(name)
	if err := s.Save(rec); err != nil {
		return putBack(s.errorf("%w", err))
	}
	if err := launch(rec); err != nil {
		return putBack(err)
	}
	return nil
}

// ExitStatus reads a container's exit file; ok is false while it runs.
// OOMKilled decides about a code of 137.
func (s *Sandboxes) ExitStatus(rec *ConmonRecord, name string) (st runtime.ExitStatus, ok bool, err error) {
	path := s.exitFile(rec, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, s.errorf("%w", err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return st, false, s.errorf("exit file %s holds %q", path, data)
	}
	st.Code = code
	if fi, err := os.Stat(path); err == nil {
		st.ExitedAt = fi.ModTime().UTC()
	}
	if code == 137 {
		st.OOMKilled = s.OOMKilled(rec, name)
	}
	return st, true, nil
}

// conmonAlive reports whether the container's conmon still runs.
func (s *Sandboxes) conmonAlive(id, name string) bool {
	pid := ReadPid(filepath.Join(s.BundleDir(id, name), "conmon.pid"))
	return pid > 0 && ProcessAlive(pid, "conmon")
}

// Wait implements runtime.Runtime's Wait. It polls the container's exit
// file, which conmon writes when the container (or its monitor) ends,
// every 50 ms.
func (s *Sandboxes) Wait(ctx context.Context, id, name string) (runtime.ExitStatus, error) {
	rec, err := s.LoadContainer(id, name)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	// A poll looks at the exit file alone; the record is read again about
	// every second (for lost) and once the exit is there. Reading it at
	// every poll cost each running container a JSON decode 20 times a
	// second, CPU taken from the launches beside it.
	exit := s.exitFile(rec, name)
	return WaitExit(ctx, func() (runtime.ExitStatus, bool, error) {
		if _, err := os.Stat(exit); errors.Is(err, os.ErrNotExist) {
			return runtime.ExitStatus{}, false, nil
		}
		var err error
		if rec, err = s.LoadContainer(id, name); err != nil {
			return runtime.ExitStatus{}, false, err
		}
		return s.ExitStatus(rec, name)
	}, func() error {
		var err error
		if rec, err = s.LoadContainer(id, name); err != nil {
			return err
		}
		// A started container must still have its monitor: without it no
		// exit code would ever come.
		if !rec.Started[name] || s.conmonAlive(id, name) {
			return nil
		}
		if rec.Launching[name] {
			return fmt.Errorf("%w: %w", errdefs.Unavailable(
				"container %q of sandbox %s never ran: its start was interrupted and its monitor (conmon) is gone", name, id),
				runtime.ErrStartInterrupted)
		}
		if _, err := os.Stat(filepath.Join(s.BundleDir(id, name), "conmon.pid")); err == nil {
			return errdefs.Unavailable("container %q of sandbox %s lost its monitor (conmon) without an exit code", name, id)
		}
		return nil
	})
}

// State returns the OCI runtime's status of container cid of sandbox id
// ("created", "running", "stopped", ...) or "" when the runtime does not
// know it.
func (s *Sandboxes) State(ctx context.Context, id, cid string) string {
	out, err := s.Run(ctx, id, "state", cid)
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

// Signal implements runtime.Runtime's Signal with the OCI runtime's
// "kill": nothing for a container not started or already ended.
func (s *Sandboxes) Signal(ctx context.Context, id, name string, sig syscall.Signal) error {
	rec, err := s.LoadContainer(id, name)
	if err != nil {
		return err
	}
	if !rec.Started[name] {
		return nil
	}
	if _, ok, _ := s.ExitStatus(rec, name); ok {
		return nil
	}
	cid := rec.ContainerID(name)
	out, err := s.Run(ctx, id, "kill", cid, strconv.Itoa(int(sig)))
	if err != nil {
		if _, ok, _ := s.ExitStatus(rec, name); ok {
			return nil
		}
		if st := s.State(ctx, id, cid); st == "stopped" || st == "" {
			return nil
		}
		return s.errorf("kill %s/%s: %w: %s", id, name, err, out)
	}
	return nil
}

// Delete implements runtime.Runtime's Delete: Destroy with the sandbox's
// lock held.
func (s *Sandboxes) Delete(ctx context.Context, id string) error {
	unlock := s.Lock(id)
	defer unlock()
	rec, err := s.Load(id)
	if err != nil {
		return err
	}
	return s.Destroy(ctx, rec)
}

// WaitConmon waits (10 s at most) for container name's conmon to exit once
// what it watches is gone, and SIGKILLs it after that, logging that it did
// not exit after what happened ("its container was killed").
func (s *Sandboxes) WaitConmon(id, name, after string) {
	pid := ReadPid(filepath.Join(s.BundleDir(id, name), "conmon.pid"))
	for deadline := time.Now().Add(10 * time.Second); pid > 0 && ProcessAlive(pid, "conmon"); {
		if time.Now().After(deadline) {
			s.Log.Warn(s.Name+": conmon did not exit after "+after+"; killing it", "task", id, "container", name, "pid", pid)
			unix.Kill(pid, unix.SIGKILL)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TearDown is the end of a Destroy, once nothing runs in the sandbox any
// more: it unmounts the containers' root file systems and the ephemeral
// storage, removes the cgroups of vessel/<id>'s children (and then
// vessel/<id>), and, when all went well and nothing is mounted under it
// any more, the sandbox's directory. errs are the Destroy's errors so
// far; the result joins them with TearDown's.
func (s *Sandboxes) TearDown(rec *ConmonRecord, cgroupChildren []string, errs []error) error {
	id, home := rec.Spec.ID, rec.HomeID()
	dir := filepath.Join(s.Dir, home)
	for _, n := range rec.Names() {
		if err := s.unbindSubPaths(id, n); err != nil {
			errs = append(errs, err)
		}
		if err := Unmount(filepath.Join(dir, "containers", n, "rootfs")); err != nil {
			errs = append(errs, err)
		}
	}
	if err := teardownStorage(dir); err != nil {
		errs = append(errs, err)
	}
	if err := s.Cgroups.Remove(home, cgroupChildren); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if left := MountsUnder(dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("still mounted: %s", strings.Join(left, ", ")))
		} else if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		} else {
			// The exit directory, also when the record on disk lost it
			// (a Create that failed on a full disk).
			for _, d := range []string{rec.ExitDir, s.exitRootOf(home)} {
				if d == "" {
					continue
				}
				if err := os.RemoveAll(d); err != nil {
					errs = append(errs, err)
				}
				// The back end's own directory goes with its last sandbox.
				os.Remove(filepath.Dir(d))
			}
			// The task's mapping to the warm sandbox's directory, last: a
			// mapping left by a crash before it names nothing.
			if err := s.Unlink(id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s.errorf("delete %s: %w", id, err)
	}
	return nil
}

// List implements runtime.Runtime's List: the sandboxes with a record in
// Store.Dir, by ID, with their containers' Started and Exit, and a warm
// sandbox's primed containers. The slice is the caller's.
func (s *Sandboxes) List(ctx context.Context) ([]runtime.SandboxInfo, error) {
	ids, err := s.IDs()
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	out := []runtime.SandboxInfo{}
	for _, id := range ids {
		rec, err := s.Load(id)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		info := rec.Info(func(cs *runtime.ContainerState) {
			if st, ok, err := s.ExitStatus(rec, cs.Name); err == nil && ok {
				cs.Exit = &st
			}
		})
		if rec.Warm {
			for _, n := range rec.Names() {
				if _, ok := rec.Primed[n]; ok {
					info.Primed = append(info.Primed, n)
				}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// Leftovers lists what of sandbox id is still on the host: its directory
// (a claimed warm sandbox's, and the mapping to it), mounts, loop devices
// and cgroup directories, then runtimeState (what the
// back end found of it in its OCI runtime's state), the processes whose
// command line (arguments joined by spaces) mentions reports, and the
// processes still in its cgroups. The slice is the caller's.
func (s *Sandboxes) Leftovers(id string, runtimeState []string, mentions func(cmdline string) bool) []string {
	var out []string
	dir := s.SandboxDir(id)
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "directory "+dir)
	}
	if link := filepath.Join(s.Dir, id); link != dir {
		out = append(out, "mapping "+link+" to the warm sandbox "+filepath.Base(dir))
	} else if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		out = append(out, "stale mapping "+link)
	}
	if s.ExitRoot != "" {
		if _, err := os.Stat(filepath.Join(s.ExitRoot, id)); err == nil {
			out = append(out, "directory "+filepath.Join(s.ExitRoot, id))
		}
	}
	for _, m := range MountsUnder(dir) {
		out = append(out, "mount "+m)
	}
	for _, d := range fsutil.LoopDevicesOf(filepath.Join(dir, "rw.img")) {
		out = append(out, "loop device "+d)
	}
	home := filepath.Base(dir)
	out = append(out, s.Cgroups.Leftovers(home)...)
	out = append(out, runtimeState...)
	out = append(out, ProcessesMentioning(mentions)...)
	// Processes whose command line does not name the sandbox: those still
	// in its cgroups.
	return append(out, s.Cgroups.Processes(home)...)
}
