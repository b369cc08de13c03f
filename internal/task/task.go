package task

import (
	"encoding/json"
	"fmt"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// Status is a task's or container's lifecycle status, in ECS's words.
type Status string

// The lifecycle, in order.
const (
	StatusProvisioning   Status = "PROVISIONING"
	StatusPending        Status = "PENDING"
	StatusActivating     Status = "ACTIVATING"
	StatusRunning        Status = "RUNNING"
	StatusDeactivating   Status = "DEACTIVATING"
	StatusStopping       Status = "STOPPING"
	StatusDeprovisioning Status = "DEPROVISIONING"
	StatusStopped        Status = "STOPPED"
)

// Lifecycle lists every status in order.
var Lifecycle = []Status{
	StatusProvisioning, StatusPending, StatusActivating, StatusRunning,
	StatusDeactivating, StatusStopping, StatusDeprovisioning, StatusStopped,
}

// Rank is the status's position in Lifecycle, or -1 for an unknown status.
func (s Status) Rank() int {
	for i, l := range Lifecycle {
		if l == s {
			return i
		}
	}
	return -1
}

// Valid reports whether s is one of the lifecycle statuses.
func (s Status) Valid() bool { return s.Rank() >= 0 }

// Before reports whether s comes strictly before o in the lifecycle.
func (s Status) Before(o Status) bool { return s.Rank() < o.Rank() }

// Stop codes, as ECS reports them.
const (
	StopCodeTaskFailedToStart         = "TaskFailedToStart"
	StopCodeEssentialContainerExited  = "EssentialContainerExited"
	StopCodeUserInitiated             = "UserInitiated"
	StopCodeServiceSchedulerInitiated = "ServiceSchedulerInitiated"
	StopCodeSpotInterruption          = "SpotInterruption"
	StopCodeTerminationNotice         = "TerminationNotice"
)

// Prefixes of stoppedReason and container reasons, as ECS writes them.
const (
	ReasonCannotPullContainer     = "CannotPullContainerError"
	ReasonResourceInitialization  = "ResourceInitializationError"
	ReasonContainerRuntimeTimeout = "ContainerRuntimeTimeoutError"
	ReasonCannotStartContainer    = "CannotStartContainerError"
	ReasonCannotStopContainer     = "CannotStopContainerError"
	ReasonCannotInspectContainer  = "CannotInspectContainerError"
	ReasonCannotCreateVolume      = "CannotCreateVolumeError"
	ReasonOutOfMemory             = "OutOfMemoryError"
)

// ReasonCreateContainerConfigError starts the Reason of a container of a
// Kubernetes task (RestartPolicy set) that the runtime refused to start
// for its configuration (runAsNonRoot with a root user): it stays waiting
// and the pod pending, as the kubelet's reason of that name.
const ReasonCreateContainerConfigError = "CreateContainerConfigError"

// Stop timeouts, as ECS defines them for containers.
const (
	DefaultStopTimeout = 30 * time.Second
	MaxStopTimeout     = 120 * time.Second
)

// Container is one container of a task, resolved from its definition and
// the RunTask overrides, with its observed state.
type Container struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	EntryPoint  []string          `json:"entryPoint,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	WorkingDir  string            `json:"workingDir,omitempty"`
	User        string            `json:"user,omitempty"`
	Essential   bool              `json:"essential"`
	// CPUUnits and MemoryMiB are the container's own reservation inside the
	// task (0 when it shares the task's).
	CPUUnits    int64         `json:"cpu,omitempty"`
	MemoryMiB   int64         `json:"memory,omitempty"`
	StopTimeout time.Duration `json:"stopTimeout,omitempty"`
	// DependsOn orders start-up: each condition must hold before this
	// container starts.
	DependsOn []Dependency `json:"dependsOn,omitempty"`
	// HealthCheck, when set, runs inside the container and sets
	// HealthStatus.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	// LivenessProbe, ReadinessProbe and StartupProbe are Kubernetes probes,
	// run by the host agent: a failing liveness probe restarts the
	// container (per the task's RestartPolicy), readiness sets Ready, and
	// the startup probe holds the other two back until it passes.
	LivenessProbe  *Probe `json:"livenessProbe,omitempty"`
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`
	StartupProbe   *Probe `json:"startupProbe,omitempty"`
	// RegistryAuth are the credentials to pull Image with, resolved by the
	// control plane from repositoryCredentials or the execution role's
	// registry credentials. Never shown by the API.
	RegistryAuth *RegistryAuth `json:"registryAuth,omitempty"`
	// RegistryCredentialsFrom, when set, is the Secrets Manager secret
	// (ECS repositoryCredentials) holding the credentials to pull Image
	// with, as JSON {"username", "password"}: the host agent gets them from
	// the control plane when the task starts, as Secrets.
	RegistryCredentialsFrom string `json:"registryCredentialsFrom,omitempty"`
	// Secrets are environment variables whose values the host agent gets
	// from the control plane's secrets store when the task starts (ECS
	// secrets): only their names and where they come from are kept here.
	Secrets []Secret `json:"secrets,omitempty"`
	// Log, when set, ships the container's output to the control plane's
	// log store (logConfiguration with the awslogs driver).
	Log *LogConfig `json:"log,omitempty"`
	// MountPoints mount the task's Volumes into the container.
	MountPoints []MountPoint `json:"mountPoints,omitempty"`
	// Ports are the ports the container listens on (the task's IP is
	// its own: awsvpc), named for service discovery's SRV records.
	Ports []Port `json:"ports,omitempty"`
	// Security holds the container's security settings (security.go);
	// nil is the default sandbox.
	Security *Security `json:"security,omitempty"`
	// Nofile, when set, is the container's RLIMIT_NOFILE (ECS ulimits
	// nofile), clamped by the runtime to what its host allows.
	Nofile *Rlimit `json:"nofile,omitempty"`

	// Observed state, reported by the host agent.
	LastStatus   Status `json:"lastStatus,omitempty"`
	ExitCode     *int   `json:"exitCode,omitempty"`
	Reason       string `json:"reason,omitempty"`
	RuntimeID    string `json:"runtimeId,omitempty"`
	ImageDigest  string `json:"imageDigest,omitempty"`
	HealthStatus string `json:"healthStatus,omitempty"`
	// RestartCount is how many times the agent restarted the container in
	// place (RestartPolicy).
	RestartCount int `json:"restartCount,omitempty"`
	// Ready is set while the readiness probe passes, or while the container
	// runs when it has none; Started once the startup probe has passed (or
	// the container runs when it has none).
	Ready   bool `json:"ready,omitempty"`
	Started bool `json:"started,omitempty"`
	// StartedAt and FinishedAt are when the current run of the container
	// started and, once it exited, ended.
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// The previous run's end, for a restarted container (Kubernetes'
	// lastState.terminated).
	LastExitCode   *int      `json:"lastExitCode,omitempty"`
	LastReason     string    `json:"lastReason,omitempty"`
	LastStartedAt  time.Time `json:"lastStartedAt,omitzero"`
	LastFinishedAt time.Time `json:"lastFinishedAt,omitzero"`
}

// Rlimit is a soft and a hard resource limit.
type Rlimit struct {
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// Port is a port a container listens on.
type Port struct {
	// Name is the port's name ("" for none): SRV records are published
	// under _<name>._<protocol>.
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	// Protocol is "tcp" or "udp".
	Protocol string `json:"protocol"`
}

// Dependency conditions, as ECS's dependsOn.
const (
	ConditionStart    = "START"
	ConditionComplete = "COMPLETE"
	ConditionSuccess  = "SUCCESS"
	ConditionHealthy  = "HEALTHY"
)

// Health statuses, as ECS reports them.
const (
	HealthUnknown   = "UNKNOWN"
	HealthHealthy   = "HEALTHY"
	HealthUnhealthy = "UNHEALTHY"
)

// Dependency is one dependsOn entry.
type Dependency struct {
	Container string `json:"container"`
	Condition string `json:"condition"`
}

// HealthCheck is a container health check, as ECS defines it: Command is
// ["CMD", args...] or ["CMD-SHELL", script].
type HealthCheck struct {
	Command     []string      `json:"command"`
	Interval    time.Duration `json:"interval"`
	Timeout     time.Duration `json:"timeout"`
	Retries     int           `json:"retries"`
	StartPeriod time.Duration `json:"startPeriod"`
}

// Secret is an environment variable a container gets from a secret:
// ValueFrom is a Secrets Manager secret's ARN (with ECS's
// :json-key:version-stage:version-id suffixes) or an SSM parameter's name
// or ARN.
type Secret struct {
	Name      string `json:"name"`
	ValueFrom string `json:"valueFrom"`
}

// RegistryAuth are basic credentials for an image registry.
type RegistryAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Args is the container's full argument vector: entry point then command.
func (c *Container) Args() []string {
	args := make([]string, 0, len(c.EntryPoint)+len(c.Command))
	args = append(args, c.EntryPoint...)
	return append(args, c.Command...)
}

// Tag is a key/value label on a task, as in ECS.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Task is a unit of work: one sandbox with one or more containers.
type Task struct {
	ID                string `json:"id"`
	ARN               string `json:"arn"`
	Cluster           string `json:"cluster"`
	TaskDefinitionArn string `json:"taskDefinitionArn"`
	Family            string `json:"family"`

	// CPUUnits and MemoryMiB are the provisioned size the sandbox is limited to.
	CPUUnits            int64 `json:"cpu"`
	MemoryMiB           int64 `json:"memory"`
	EphemeralStorageGiB int32 `json:"ephemeralStorageGiB,omitempty"`

	// Runtime is the sandbox runtime asked for ("" = the host's default) and,
	// once placed, the one used.
	Runtime string `json:"runtime,omitempty"`
	// Subnets the task may be placed in (empty = the cluster's default).
	Subnets []string `json:"subnets,omitempty"`

	// RestartPolicy is "" for ECS's behaviour (an essential container's
	// exit stops the task) or a Kubernetes pod's restartPolicy
	// (RestartAlways, RestartOnFailure, RestartNever): essential containers
	// that exit are restarted in place, with back-off, while the task stays
	// RUNNING; it stops once none will be restarted and all have exited.
	RestartPolicy string `json:"restartPolicy,omitempty"`

	LastStatus    Status `json:"lastStatus"`
	DesiredStatus Status `json:"desiredStatus"`
	// Version grows by one on every change, as ECS's task version.
	Version int64 `json:"version"`

	Containers []Container `json:"containers"`
	// Volumes are the task's storage its containers mount (volume.go).
	Volumes []Volume `json:"volumes,omitempty"`
	// DNS, when set, is the task's resolver configuration (dns.go);
	// otherwise the task gets its host's resolvers.
	DNS *DNSConfig `json:"dns,omitempty"`
	// Hostname, when set, is the sandbox's hostname (its UTS name,
	// /etc/hostname, its /etc/hosts entry and HOSTNAME); otherwise
	// Fargate's ip-a-b-c-d from its address. A pod's task has the pod's,
	// as the kubelet gives it (podtask). At most 63 letters, digits, '-'
	// and '.' (ValidateHostname).
	Hostname string `json:"hostname,omitempty"`
	// HostDomain, when set, qualifies Hostname: /etc/hosts names the
	// sandbox's address <Hostname>.<HostDomain> first, then Hostname, as
	// a kubelet does for a pod with a subdomain (podtask). It needs a
	// Hostname (ValidateHostDomain).
	HostDomain string `json:"hostDomain,omitempty"`
	// FSGroup, when set, owns the task's volumes (group, setgid
	// directories) and is a supplemental group of every container, as a
	// pod's securityContext.fsGroup.
	FSGroup *uint32 `json:"fsGroup,omitempty"`

	StartedBy string `json:"startedBy,omitempty"`
	Group     string `json:"group,omitempty"`
	Tags      []Tag  `json:"tags,omitempty"`
	// Overrides are the ECS overrides the task was run with, kept as given
	// so that DescribeTasks shows them.
	Overrides json.RawMessage `json:"overrides,omitempty"`

	// Placement, written by the control plane.
	HostID string `json:"hostId,omitempty"`
	Subnet string `json:"subnet,omitempty"`
	// IP is the task's private address, reported by the host agent.
	IP string `json:"ip,omitempty"`
	// PullProgress is the host agent's latest word on the image pull
	// ("2/3 layers, 12.5/40.1 MB"), while ACTIVATING.
	PullProgress string `json:"pullProgress,omitempty"`

	StopCode      string `json:"stopCode,omitempty"`
	StoppedReason string `json:"stoppedReason,omitempty"`

	CreatedAt          time.Time `json:"createdAt"`
	ConnectivityAt     time.Time `json:"connectivityAt,omitzero"`
	PullStartedAt      time.Time `json:"pullStartedAt,omitzero"`
	PullStoppedAt      time.Time `json:"pullStoppedAt,omitzero"`
	StartedAt          time.Time `json:"startedAt,omitzero"`
	StoppingAt         time.Time `json:"stoppingAt,omitzero"`
	ExecutionStoppedAt time.Time `json:"executionStoppedAt,omitzero"`
	StoppedAt          time.Time `json:"stoppedAt,omitzero"`
}

// Clone returns a deep copy of t, so that values shared by a store or a
// cache are never changed in place.
func (t *Task) Clone() *Task {
	c := *t
	c.Subnets = append([]string(nil), t.Subnets...)
	c.Tags = append([]Tag(nil), t.Tags...)
	c.Overrides = append(json.RawMessage(nil), t.Overrides...)
	c.Containers = make([]Container, len(t.Containers))
	for i, ct := range t.Containers {
		ct.EntryPoint = append([]string(nil), ct.EntryPoint...)
		ct.Command = append([]string(nil), ct.Command...)
		if ct.Environment != nil {
			env := make(map[string]string, len(ct.Environment))
			for k, v := range ct.Environment {
				env[k] = v
			}
			ct.Environment = env
		}
		if ct.ExitCode != nil {
			code := *ct.ExitCode
			ct.ExitCode = &code
		}
		ct.DependsOn = append([]Dependency(nil), ct.DependsOn...)
		ct.MountPoints = append([]MountPoint(nil), ct.MountPoints...)
		ct.Secrets = append([]Secret(nil), ct.Secrets...)
		if ct.Log != nil {
			lc := *ct.Log
			ct.Log = &lc
		}
		ct.Ports = append([]Port(nil), ct.Ports...)
		ct.Security = ct.Security.Clone()
		if ct.Nofile != nil {
			n := *ct.Nofile
			ct.Nofile = &n
		}
		if ct.HealthCheck != nil {
			hc := *ct.HealthCheck
			hc.Command = append([]string(nil), hc.Command...)
			ct.HealthCheck = &hc
		}
		if ct.RegistryAuth != nil {
			ra := *ct.RegistryAuth
			ct.RegistryAuth = &ra
		}
		if ct.LastExitCode != nil {
			code := *ct.LastExitCode
			ct.LastExitCode = &code
		}
		ct.LivenessProbe = ct.LivenessProbe.Clone()
		ct.ReadinessProbe = ct.ReadinessProbe.Clone()
		ct.StartupProbe = ct.StartupProbe.Clone()
		c.Containers[i] = ct
	}
	c.Volumes = cloneVolumes(t.Volumes)
	c.DNS = t.DNS.Clone()
	if t.FSGroup != nil {
		g := *t.FSGroup
		c.FSGroup = &g
	}
	return &c
}

// Container returns the named container, or nil.
func (t *Task) Container(name string) *Container {
	for i := range t.Containers {
		if t.Containers[i].Name == name {
			return &t.Containers[i]
		}
	}
	return nil
}

// Stopped reports whether the task has reached STOPPED.
func (t *Task) Stopped() bool { return t.LastStatus == StatusStopped }

// Advance moves LastStatus forward to s and stamps the timestamps that
// belong to the states it enters. Moving backward or to the same status is an
// error of kind errdefs.ErrConflict; an unknown status is
// errdefs.ErrInvalidArgument. Advance does not bump Version: the caller does
// once per stored change.
func (t *Task) Advance(s Status, now time.Time) error {
	if !s.Valid() {
		return errdefs.InvalidArgument("unknown task status %q: accepted statuses are %v", s, Lifecycle)
	}
	if !t.LastStatus.Before(s) {
		return errdefs.Conflict("task %s cannot move from %s to %s: a task's status only moves forward (%v)",
			t.ID, t.LastStatus, s, Lifecycle)
	}
	from := t.LastStatus
	t.LastStatus = s
	// Stamp every milestone passed on the way, including skipped states.
	passed := func(m Status) bool { return from.Before(m) && !s.Before(m) }
	if passed(StatusPending) && t.ConnectivityAt.IsZero() {
		t.ConnectivityAt = now
	}
	if passed(StatusRunning) && s == StatusRunning && t.StartedAt.IsZero() {
		t.StartedAt = now
	}
	if passed(StatusStopping) && t.StoppingAt.IsZero() {
		t.StoppingAt = now
	}
	if passed(StatusDeprovisioning) && t.ExecutionStoppedAt.IsZero() {
		t.ExecutionStoppedAt = now
	}
	if s == StatusStopped {
		t.StoppedAt = now
		t.DesiredStatus = StatusStopped
		for i := range t.Containers {
			t.Containers[i].LastStatus = StatusStopped
		}
	}
	return nil
}

// RequestStop sets DesiredStatus to STOPPED with a stop code and reason,
// unless the task is already on its way down, in which case the first
// recorded code and reason are kept. It reports whether anything changed.
func (t *Task) RequestStop(code, reason string, now time.Time) bool {
	if t.DesiredStatus == StatusStopped {
		return false
	}
	t.DesiredStatus = StatusStopped
	if t.StopCode == "" {
		t.StopCode = code
	}
	if t.StoppedReason == "" {
		t.StoppedReason = reason
	}
	return true
}

// ValidateStopReason checks a StopTask reason: at most 255 characters, as ECS.
func ValidateStopReason(reason string) error {
	if n := len([]rune(reason)); n > 255 {
		return errdefs.InvalidArgument("reason is %d characters long; at most 255 are accepted", n)
	}
	return nil
}

// ClampStopTimeout turns a container's stopTimeout in seconds (0 = unset)
// into a duration: 30 s by default, at most 120 s.
func ClampStopTimeout(seconds int32) (time.Duration, error) {
	if seconds == 0 {
		return DefaultStopTimeout, nil
	}
	d := time.Duration(seconds) * time.Second
	if seconds < 0 || d > MaxStopTimeout {
		return 0, errdefs.InvalidArgument("stopTimeout %d is out of range: accepted values are 1..120 seconds", seconds)
	}
	return d, nil
}

// String is a short description for logs.
func (t *Task) String() string {
	return fmt.Sprintf("task %s (%s/%s)", t.ID, t.LastStatus, t.DesiredStatus)
}
