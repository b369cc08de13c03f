package runtime

import (
	"context"
	"syscall"
	"time"
)

// Spec describes a sandbox to create.
type Spec struct {
	// ID names the sandbox; it is the task's ID.
	ID string
	// MilliCPU and MemoryMiB are the provisioned size the whole sandbox is
	// limited to.
	MilliCPU  int64
	MemoryMiB int64
	// Containers run inside the sandbox, each started separately with Start.
	Containers []ContainerSpec
	// Labels are kept with the sandbox and returned by List (the agent keeps
	// the task's cluster and ARN there).
	Labels map[string]string
}

// ContainerSpec is one container of a sandbox.
type ContainerSpec struct {
	Name       string
	Image      string
	Args       []string
	Env        []string // KEY=VALUE
	WorkingDir string
	User       string
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
}

// SandboxInfo is what List reports of each sandbox.
type SandboxInfo struct {
	ID         string
	Labels     map[string]string
	Containers []ContainerState
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
