package agentproto

import (
	"context"
	"time"

	"vessel.dev/vessel/internal/task"
)

// Host describes a host when it registers.
type Host struct {
	ID string `json:"id"`
	// MilliCPU and MemoryMiB are the host's physical capacity.
	MilliCPU  int64 `json:"milliCPU"`
	MemoryMiB int64 `json:"memoryMiB"`
	// Allocation ratios: allocatable = capacity × ratio.
	CPUAllocationRatio    float64  `json:"cpuAllocationRatio"`
	MemoryAllocationRatio float64  `json:"memoryAllocationRatio"`
	Runtimes              []string `json:"runtimes"`
	// DefaultRuntime is used for tasks that ask for none.
	DefaultRuntime string   `json:"defaultRuntime"`
	Subnets        []string `json:"subnets,omitempty"`
	AgentVersion   string   `json:"agentVersion,omitempty"`
	// LogsEndpoint is where the agent serves its tasks' logs over HTTP
	// (SigV4-signed); empty for an agent inside the server's process.
	LogsEndpoint string `json:"logsEndpoint,omitempty"`
	// EndpointCertSHA256 is the hex SHA-256 of the certificate an https
	// LogsEndpoint serves: the control plane accepts that certificate
	// only (the host reported it with its own credential).
	EndpointCertSHA256 string `json:"endpointCertSha256,omitempty"`
}

// ContainerUpdate is what an agent observed of one container.
type ContainerUpdate struct {
	Name         string      `json:"name"`
	LastStatus   task.Status `json:"lastStatus,omitempty"`
	ExitCode     *int        `json:"exitCode,omitempty"`
	Reason       string      `json:"reason,omitempty"`
	RuntimeID    string      `json:"runtimeId,omitempty"`
	ImageDigest  string      `json:"imageDigest,omitempty"`
	HealthStatus string      `json:"healthStatus,omitempty"`
	// RestartCount greater than the task's says the container was
	// restarted in place: its run starts over (status, exit code, reason
	// and FinishedAt are cleared before this update applies) and the Last*
	// fields describe the run that ended.
	RestartCount int `json:"restartCount,omitempty"`
	// Ready and Started are the probes' verdicts (nil: unchanged).
	Ready   *bool `json:"ready,omitempty"`
	Started *bool `json:"started,omitempty"`
	// StartedAt and FinishedAt are the current run's start and end.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// The previous run's end, with a RestartCount.
	LastExitCode   *int      `json:"lastExitCode,omitempty"`
	LastReason     string    `json:"lastReason,omitempty"`
	LastStartedAt  time.Time `json:"lastStartedAt,omitzero"`
	LastFinishedAt time.Time `json:"lastFinishedAt,omitzero"`
}

// StatusUpdate is an agent's report about one task. Zero fields are left as
// they were; LastStatus may only move forward.
type StatusUpdate struct {
	TaskID     string            `json:"taskId"`
	LastStatus task.Status       `json:"lastStatus,omitempty"`
	Runtime    string            `json:"runtime,omitempty"`
	IP         string            `json:"ip,omitempty"`
	Containers []ContainerUpdate `json:"containers,omitempty"`
	// StopCode and StoppedReason are set when the agent decides the task
	// stops (an essential container exited, the start failed).
	StopCode      string    `json:"stopCode,omitempty"`
	StoppedReason string    `json:"stoppedReason,omitempty"`
	PullStartedAt time.Time `json:"pullStartedAt,omitzero"`
	PullStoppedAt time.Time `json:"pullStoppedAt,omitzero"`
	// PullProgress replaces the task's pull progress text when set.
	PullProgress string `json:"pullProgress,omitempty"`
	// At is when the agent observed the change.
	At time.Time `json:"at"`
}

// Assignments is the set of tasks placed on a host that are not STOPPED.
type Assignments struct {
	Tasks []task.Task `json:"tasks"`
	// Revision identifies this set; pass it back to wait for the next one.
	Revision int64 `json:"revision"`
}

// ControlPlane is what a host agent needs of the control plane.
type ControlPlane interface {
	// RegisterHost records or refreshes the host. It does not block beyond
	// the write.
	RegisterHost(ctx context.Context, h Host) error

	// Heartbeat tells the control plane the host is alive. An unknown host
	// gets an error of kind errdefs.ErrNotFound and must register again.
	Heartbeat(ctx context.Context, hostID string) error

	// Assignments returns the tasks placed on the host that are not yet
	// STOPPED. When after equals the current revision it blocks until the
	// set or any of its tasks changes, or ctx is done (then it returns the
	// unchanged set and no error). The returned tasks are the caller's.
	Assignments(ctx context.Context, hostID string, after int64) (Assignments, error)

	// ReportStatus applies an agent's report to its task. A report for a
	// task that is not placed on hostID is an error of kind
	// errdefs.ErrConflict; a status that would move backward is ignored.
	ReportStatus(ctx context.Context, hostID string, u StatusUpdate) error
}
