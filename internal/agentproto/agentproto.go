package agentproto

import (
	"context"
	"net/netip"

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
	DefaultRuntime string `json:"defaultRuntime"`
	// Subnets names the fleet's subnets the host serves; empty: all.
	Subnets []string `json:"subnets,omitempty"`
	// SubnetDefinitions are the definitions the host was given for some
	// of its subnets (`vessel agent --subnet NAME=CIDR`, SliceBits 0 when
	// not given): the control plane refuses the registration unless each
	// is its own definition of the subnet.
	SubnetDefinitions []FleetSubnet `json:"subnetDefinitions,omitempty"`
	// Address is the host's underlay address, where the other hosts of
	// the fleet reach it (vessel agent --advertise-address); the zero
	// Addr when not known.
	Address      netip.Addr `json:"address,omitzero"`
	AgentVersion string     `json:"agentVersion,omitempty"`
	// LogsEndpoint is where the agent serves its tasks' logs over HTTP
	// (SigV4-signed); empty for an agent inside the server's process.
	LogsEndpoint string `json:"logsEndpoint,omitempty"`
	// EndpointCertSHA256 is the hex SHA-256 of the certificate an https
	// LogsEndpoint serves: the control plane accepts that certificate
	// only (the host reported it with its own credential).
	EndpointCertSHA256 string `json:"endpointCertSha256,omitempty"`
}

// ContainerUpdate is what an agent observed of one container; the task
// package owns its fields and how they merge (task.Task.ApplyReport).
type ContainerUpdate = task.ContainerReport

// StatusUpdate is an agent's report about one task (task.Report). Zero
// fields are left as they were; LastStatus may only move forward.
type StatusUpdate = task.Report

// MaxReportsPerCall is how many reports about one task one status call
// may carry.
const MaxReportsPerCall = 64

// MaxTasksPerCall is how many tasks' reports one ReportStatuses call may
// carry.
const MaxTasksPerCall = 64

// Assignments is the set of tasks placed on a host that are not STOPPED.
// An answer to a poll after a revision may instead carry only what changed
// since (Changes): the tasks placed on the host that changed and are not
// STOPPED, and the IDs of those that stopped.
type Assignments struct {
	Tasks []task.Task `json:"tasks"`
	// Revision identifies this set; pass it back to wait for the next one.
	Revision int64 `json:"revision"`
	// Changes says Tasks holds only the tasks that changed after the
	// revision asked about, and Stopped those that stopped since; the
	// host's other tasks are as they were.
	Changes bool     `json:"changes,omitempty"`
	Stopped []string `json:"stopped,omitempty"`
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
	// STOPPED, or, asked after a revision it answered before, only what
	// changed since (Assignments.Changes). It blocks until one of the
	// host's tasks changes after after, or ctx is done (then it answers
	// that nothing changed, and no error). The returned tasks are the
	// caller's.
	Assignments(ctx context.Context, hostID string, after int64) (Assignments, error)

	// ReportStatuses applies an agent's reports about several tasks (at
	// most MaxTasksPerCall): each element of tasks is the reports about
	// one task, applied to it in order and as one write. It answers each
	// task's outcome, in the order of tasks (nil: applied): a report for
	// a task that is not placed on hostID is an error of kind
	// errdefs.ErrConflict; a status that would move backward is ignored.
	// An error of the call itself (the control plane unreachable, the
	// caller not allowed) is returned alone.
	ReportStatuses(ctx context.Context, hostID string, tasks [][]StatusUpdate) ([]error, error)
}

// WarmPool is a host's pool of warm sandboxes of one runtime (the agent's
// --warm-pool), as its agent reports it.
type WarmPool struct {
	Runtime string `json:"runtime"`
	// Class is the largest size the pool's warm sandboxes serve, as
	// VCPU/GB ("4/8"); empty for a pool that serves every size. A host
	// has at most one pool per runtime and class.
	Class string `json:"class,omitempty"`
	// Target is how many warm sandboxes the pool is asked to hold; Ready
	// how many it holds now (fewer while it refills, or while the host's
	// memory is taken by tasks).
	Target int `json:"target"`
	Ready  int `json:"ready"`
	// Hits counts the tasks that took a warm sandbox, Misses the tasks of
	// the runtime that started cold, since the agent started.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// MemoryMiB is the host memory the ready warm sandboxes are counted
	// for (runtime.WarmClass.IdleMemoryMiB each, and what primed
	// containers hold).
	MemoryMiB int64 `json:"memoryMiB"`
	// Primed counts the ready warm sandboxes whose containers were
	// created ahead for a task definition (runtime.Primer), PrimedHits
	// the hits that found theirs so, since the agent started. A pool of
	// a runtime that does not prime reports none.
	Primed     int   `json:"primed,omitempty"`
	PrimedHits int64 `json:"primedHits,omitempty"`
}

// WarmPoolReporter is implemented by control planes that keep hosts' warm
// pools (the server, and the HTTP client).
type WarmPoolReporter interface {
	// ReportWarmPools records the host's warm pools, one per runtime and
	// class with a pool, replacing what it reported before.
	ReportWarmPools(ctx context.Context, hostID string, pools []WarmPool) error
}
