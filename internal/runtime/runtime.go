package runtime

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// Spec describes a sandbox to create. The agent prepares what a sandbox
// needs from outside (image layers, network namespace, /etc files, a log
// directory) so that runtimes stay free of images and networking.
type Spec struct {
	// ID names the sandbox; it is the task's ID.
	ID string
	// MilliCPU and MemoryMiB are the provisioned size the whole sandbox is
	// limited to: CPU quota, memory without swap beyond it.
	MilliCPU  int64
	MemoryMiB int64
	// PidsLimit bounds the processes of the whole sandbox; 0 means the
	// runtime's default.
	PidsLimit int64
	// EphemeralStorageGiB bounds the sandbox's writable layers; 0 means the
	// runtime's default (20 GiB, as Fargate).
	EphemeralStorageGiB int
	// NetNSPath is the network namespace every container of the sandbox
	// joins (awsvpc: one IP per task, sidecars on localhost). Empty means
	// the runtime's own isolated namespace with loopback only.
	NetNSPath string
	// Hostname is the sandbox's hostname.
	Hostname string
	// EtcDir holds hosts, hostname and resolv.conf, bind-mounted read-only
	// into every container. Empty means the runtime writes minimal ones.
	EtcDir string
	// LogDir receives one log file per container, <name>.log, in the
	// format described by LogLine. The runtime never deletes it: logs
	// outlive the sandbox.
	LogDir string
	// LogMaxBytes caps each container's log file (the runtime rotates or
	// truncates beyond it); 0 means the runtime's default.
	LogMaxBytes int64
	// Containers run inside the sandbox, each started separately with Start.
	Containers []ContainerSpec
	// Labels are kept with the sandbox and returned by List (the agent keeps
	// the task's cluster and ARN there).
	Labels map[string]string
}

// ContainerSpec is one container of a sandbox.
type ContainerSpec struct {
	Name  string
	Image string
	// Layers are the image's unpacked layers, bottom first, to be stacked
	// read-only under a writable layer of the container's own.
	Layers     []string
	Args       []string
	Env        []string // KEY=VALUE
	WorkingDir string
	User       string
	// NofileSoft/NofileHard are RLIMIT_NOFILE; zero means the
	// runtime's defaults (1024 / the most the host allows up to 65535).
	NofileSoft, NofileHard uint64
	// Mounts are host directories the agent prepared (the task's volumes)
	// to bind into the container, in order. Several containers may mount
	// the same Source, and must then see each other's writes. Simulated
	// runtimes ignore them.
	Mounts []Mount
	// Security is how the container is confined beyond the sandbox.
	Security Security
}

// Security is a container's confinement. Every runtime gives a container
// exactly this, inside a micro-VM as on the host: the capabilities
// listed (bounding, effective, permitted), no_new_privs, the default
// seccomp allow-list (package seccomp) for those capabilities, masked and
// read-only /proc and /sys paths, and a minimal /dev.
type Security struct {
	// Capabilities are the container's capabilities with the CAP_ prefix;
	// nil means the default set (DefaultCapabilities), an empty
	// non-nil slice none at all.
	Capabilities []string
	// ReadOnlyRootfs mounts the container's root file system read-only.
	ReadOnlyRootfs bool
	// RunAsNonRoot makes Start fail, with an error of kind
	// errdefs.ErrInvalidArgument whose message is the kubelet's ("container
	// has runAsNonRoot and image will run as root"), when the container's
	// user resolves to uid 0.
	RunAsNonRoot bool
	// SupplementalGroups are added to the process's groups.
	SupplementalGroups []uint32
	// Init runs a small init as PID 1 of the container, which runs Args as
	// its child, forwards signals to it and reaps zombies.
	Init bool
}

// Mount binds a host directory into a container.
type Mount struct {
	// Source is an absolute host path: a directory the agent made under
	// its own data directory, never one the task named.
	Source string
	// Destination is an absolute, clean path inside the container; the
	// runtime resolves it inside the container's root (symbolic links in
	// the image cannot lead it out) and makes it when missing.
	Destination string
	ReadOnly    bool
	// SubPath, when set, is a relative path inside Source to bind instead
	// of Source itself. Source is writable by the sandbox, so the runtime
	// resolves SubPath at every start and restart of the container inside
	// Source without following any symbolic link, and binds what it
	// opened (never a path that could have been swapped meanwhile).
	SubPath string
}

// LogLine is the format of container log files: one line per output line,
// "<RFC3339Nano time> <stdout|stderr> <F|P> <text>", where P marks a partial
// line continued by the next (the CRI log format that conmon writes).
const LogLine = "<RFC3339Nano> <stream> <F|P> <text>"

// Execer is the optional ability to run a command in a running container.
type Execer interface {
	// Exec runs p.Args in the container, wiring the given streams, and
	// blocks until the command exits and its output is written; it
	// returns the exit code (128+signal for a signalled command). It does
	// not wait for the end of p.Stdin, which the caller still owns. A
	// missing sandbox or container is an error of kind
	// errdefs.ErrNotFound, a container not running one of kind
	// errdefs.ErrConflict.
	Exec(ctx context.Context, id, container string, p ExecProcess) (int, error)
}

// Restarter is the optional ability to run a container again after it has
// exited, as a kubelet restarts a container in its pod sandbox.
type Restarter interface {
	// Restart starts container again with the same spec, keeping its
	// root file system's writable layer, and returns once it runs. The new
	// run's output is appended to the same log; from then on Wait reports
	// the new run's exit. A container that was never started, or that
	// still runs, is an error of kind errdefs.ErrConflict; a missing
	// sandbox or container is errdefs.ErrNotFound.
	Restart(ctx context.Context, id, container string) error
}

// ExecProcess is a command to run with Exec.
type ExecProcess struct {
	Args []string
	// Env is added to the container's environment.
	Env []string
	// Stdin, when not nil, is copied to the command's standard input; its
	// end (io.EOF) closes that input. Nil means an empty input.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil discards it.
	Stdout io.Writer
	Stderr io.Writer
	// TTY runs the command on a pseudo-terminal: Stdout receives the
	// terminal's output (stdout and stderr merged, with the terminal's
	// "\r\n" line ends), Stderr is not used, and the end of Stdin is not
	// passed on (a terminal has no end of input: send ^D instead).
	TTY bool
	// Resize, with TTY, delivers the terminal's sizes: a size already
	// waiting when Exec starts is the initial one, later ones resize the
	// terminal as they come. Nil keeps the runtime's default size.
	Resize <-chan TerminalSize
}

// TerminalSize is the size of an exec's terminal, in characters.
type TerminalSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	// Code follows the shell's convention: 128+signal for a signalled
	// process (137 for SIGKILL, 143 for SIGTERM).
	Code int
	// OOMKilled is set when the memory limit killed the container.
	OOMKilled bool
	ExitedAt  time.Time
}

// ContainerState is what List reports of each container.
type ContainerState struct {
	Name    string
	Started bool
	// Exit is nil while the container runs (or was never started).
	Exit *ExitStatus
	// Restarts counts the container's Restart calls that succeeded.
	Restarts int
}

// SandboxInfo is what List reports of each sandbox.
type SandboxInfo struct {
	ID         string
	Labels     map[string]string
	Containers []ContainerState
	// Warm is set for a warm sandbox (Warmer) that no task has claimed:
	// it has no containers, and only Claim or Delete apply to it.
	Warm bool
	// Primed names a warm sandbox's containers created ahead of a task
	// (Primer), which Containers does not list.
	Primed []string
}

// Runtime runs sandboxes on one host. All methods are safe for concurrent
// use. Errors about a sandbox or container that does not exist are of kind
// errdefs.ErrNotFound.
type Runtime interface {
	// Name is the runtime's name as users choose it ("runc", "sim", ...).
	Name() string

	// Create prepares the sandbox (file systems, network, limits) without
	// starting any container. It blocks until the sandbox is ready. An
	// existing sandbox with the same ID is an error of kind
	// errdefs.ErrAlreadyExists.
	Create(ctx context.Context, spec Spec) error

	// Start starts one container of a created sandbox and returns once it
	// runs. Starting a container twice is an error of kind
	// errdefs.ErrConflict.
	Start(ctx context.Context, id, container string) error

	// Wait blocks until the container exits or ctx is done, and returns how
	// it ended. It may be called any number of times, also by an agent that
	// did not start the container, and after the container has exited.
	Wait(ctx context.Context, id, container string) (ExitStatus, error)

	// Signal sends sig to the container's main process. Signalling a
	// container that has exited is not an error.
	Signal(ctx context.Context, id, container string, sig syscall.Signal) error

	// Delete kills whatever still runs in the sandbox and removes it with
	// everything it holds. Deleting a missing sandbox returns an error of
	// kind errdefs.ErrNotFound.
	Delete(ctx context.Context, id string) error

	// List returns every sandbox this runtime holds on the host, including
	// those created by an earlier agent process. The returned values are
	// the caller's.
	List(ctx context.Context) ([]SandboxInfo, error)
}

// Warmer is the optional ability to prepare sandboxes before their tasks
// are known: the host agent's warm pools. A warm sandbox holds what Create
// would make that depends neither on the task's images nor on its
// containers: its cgroup, its writable storage, and whatever the runtime
// can boot ahead (a gVisor sandbox with its pause container, a micro-VM
// up to its guest agent, held namespaces). A task then takes one with
// Claim, which adds only its size, its containers and its logs.
//
// A warm sandbox serves one task, once: nothing of a task that used it is
// left for another (the runtime's own state, files, processes), because
// it is deleted with its task like any sandbox.
type Warmer interface {
	// WarmClass is the largest size a warm sandbox serves, and the host
	// memory an idle one is counted for (the agent's pool reserves it
	// from the host's capacity).
	WarmClass() WarmClass

	// Warm makes warm sandbox spec.ID and blocks until it is ready.
	// spec has no Containers and no LogDir; its NetNSPath, EtcDir and
	// Hostname are those of the network attachment the agent holds for
	// it (which keeps its namespace's path for the sandbox's whole life),
	// its size is WarmClass's, and its Labels are kept. List shows it
	// with Warm set and no containers, also to a runtime started again on
	// the same state; Delete removes it with everything it holds. An
	// existing ID is an error of kind errdefs.ErrAlreadyExists.
	Warm(ctx context.Context, spec Spec) error

	// Claim makes warm sandbox warmID the sandbox of spec, as if
	// Create(spec) had made it: from then on it is known by spec.ID alone
	// (warmID is gone from List, Start, Delete...; a runtime started again
	// on the same state finds it as spec.ID), limited to spec's size,
	// with spec's containers, log directory and labels. spec.NetNSPath
	// must be the namespace Warm was given; EtcDir's files may have been
	// rewritten since (a pod's hostname, its DNS) and the containers see
	// them as they are at Claim.
	//
	// A spec the warm sandbox cannot serve (larger than WarmClass, or a
	// hostname a booted sandbox cannot take) is an error of kind
	// errdefs.ErrConflict, and the warm sandbox is left as it was, for
	// another task or for Delete. A missing or already claimed warmID is
	// errdefs.ErrNotFound, an existing spec.ID errdefs.ErrAlreadyExists.
	// After any other error neither warmID nor spec.ID holds anything.
	Claim(ctx context.Context, warmID string, spec Spec) error
}

// WarmClass is what a runtime's warm sandboxes are made for.
type WarmClass struct {
	// MilliCPU and MemoryMiB are the largest size a warm sandbox serves;
	// 0 means any size (the runtime sets a claimed sandbox's limits).
	MilliCPU  int64
	MemoryMiB int64
	// IdleMemoryMiB is the host memory one idle warm sandbox is counted
	// for.
	IdleMemoryMiB int64
}

// SizedWarmer is a Warmer whose warm sandboxes are made at one size each
// (a gVisor sentry, a VM), so that a task larger than WarmClass's can
// still take one: the host agent keeps a pool per size class
// (--warm-pool RUNTIME:VCPU/GB=N) beside the WarmClass pool. Warm makes a
// sandbox at its spec's size, and Claim serves a task up to the size the
// warm sandbox was made with.
type SizedWarmer interface {
	Warmer
	// SizedWarmClass is the class of warm sandboxes made at the given
	// size: it serves tasks up to it, and its IdleMemoryMiB is what one
	// such sandbox holds idle. A size the runtime cannot make warm
	// sandboxes of is an error of kind errdefs.ErrInvalidArgument.
	SizedWarmClass(milliCPU, memoryMiB int64) (WarmClass, error)
}

// Primer is the optional ability of a Warmer to create a warm sandbox's
// containers ahead of the task that will claim it, up to their processes
// (runc: conmon and "runc create" run, init waits for the start).
type Primer interface {
	Warmer
	// Prime creates spec's containers in warm sandbox spec.ID, as Create
	// and then Start would, but for running their processes. spec has
	// the warm sandbox's network namespace, EtcDir and hostname, no
	// LogDir (the task's is given at Claim) and no container with Mounts
	// (volumes are the task's: errdefs.ErrInvalidArgument). A Claim whose
	// spec has exactly these containers, hostname, log cap and /etc files
	// (their content as it was at Prime) takes them as they are: Start
	// then only lets each process run. A Claim of anything else deletes
	// them first, and the claim goes on as on a warm sandbox never
	// primed. Until the claim the sandbox stays warm: List shows it with
	// no containers, and only Claim or Delete apply. A spec refused
	// (errdefs.ErrInvalidArgument), a sandbox not warm or primed already
	// (errdefs.ErrNotFound, errdefs.ErrConflict) leave the sandbox as it
	// was; after any other error nothing is left of the warm sandbox.
	Prime(ctx context.Context, spec Spec) error
	// PrimedMemoryMiB is the host memory a sandbox primed with spec's
	// containers holds beyond its warm class's IdleMemoryMiB (their
	// monitors and waiting inits).
	PrimedMemoryMiB(spec Spec) int64
}

// Serves reports whether a warm sandbox of class c can take a task of
// the given size.
func (c WarmClass) Serves(milliCPU, memoryMiB int64) bool {
	return (c.MilliCPU == 0 || milliCPU <= c.MilliCPU) && (c.MemoryMiB == 0 || memoryMiB <= c.MemoryMiB)
}

// Simulated is implemented by runtimes whose sandboxes run no process: the
// agent pulls no image, wires no network and collects no logs for them.
type Simulated interface {
	Simulated() bool
}

// ErrStartInterrupted is what Wait returns, wrapped, for a container whose
// start began but never finished (the agent went away in the middle and
// took the start with it): the container never ran, and no exit code will
// come. The agent stops such a task with TaskFailedToStart.
var ErrStartInterrupted = errors.New("the container's start was interrupted")
