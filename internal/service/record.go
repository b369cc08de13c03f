package service

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"slices"
	"time"

	"vessel.dev/vessel/internal/task"
)

// Service statuses, as ECS reports them.
const (
	StatusActive   = "ACTIVE"
	StatusDraining = "DRAINING" // deleted; its tasks are stopping
	StatusInactive = "INACTIVE" // deleted; its tasks have stopped
)

// Deployment statuses and rollout states, as ECS reports them.
const (
	DeploymentPrimary = "PRIMARY"
	DeploymentActive  = "ACTIVE"

	RolloutInProgress = "IN_PROGRESS"
	RolloutCompleted  = "COMPLETED"
	RolloutFailed     = "FAILED"
)

// MaxEvents is how many events a service keeps, newest first.
const MaxEvents = 100

// GroupPrefix starts the group of every task of a service:
// "service:<name>", as in ECS.
const GroupPrefix = "service:"

// Record is a stored service with its deployments and events. Its JSON
// encoding is what the store holds: change it only compatibly.
type Record struct {
	Name           string   `json:"name"`
	Cluster        string   `json:"cluster"`
	Status         string   `json:"status"` // StatusActive, StatusDraining, StatusInactive
	DesiredCount   int32    `json:"desiredCount"`
	TaskDefinition string   `json:"taskDefinition"` // the PRIMARY deployment's ARN
	Subnets        []string `json:"subnets"`
	SecurityGroups []string `json:"securityGroups,omitempty"`

	MinimumHealthyPercent         int32          `json:"minimumHealthyPercent"`
	MaximumPercent                int32          `json:"maximumPercent"`
	CircuitBreaker                CircuitBreaker `json:"circuitBreaker"`
	HealthCheckGracePeriodSeconds *int32         `json:"healthCheckGracePeriodSeconds,omitempty"`

	Tags                 []task.Tag `json:"tags,omitempty"`
	PropagateTags        string     `json:"propagateTags,omitempty"`
	EnableExecuteCommand bool       `json:"enableExecuteCommand,omitempty"`
	EnableECSManagedTags bool       `json:"enableECSManagedTags,omitempty"`

	// Deployments, PRIMARY first.
	Deployments []Deployment `json:"deployments"`
	// StableDeployment and StableTaskDefinition are the last deployment
	// that completed, what a circuit breaker rolls back to.
	StableDeployment     string `json:"stableDeployment,omitempty"`
	StableTaskDefinition string `json:"stableTaskDefinition,omitempty"`
	// Events, newest first, at most MaxEvents.
	Events []Event `json:"events,omitempty"`
	// Steady is set once the steady-state event is recorded, until the
	// service leaves it.
	Steady bool `json:"steady,omitempty"`
	// LastUnplaced is the last "unable to place" message and when it was
	// recorded, so that it is not repeated on every pass.
	LastUnplaced   string    `json:"lastUnplaced,omitempty"`
	LastUnplacedAt time.Time `json:"lastUnplacedAt,omitzero"`
	// Throttle is the service throttle's state (see Throttle).
	Throttle ThrottleState `json:"throttle,omitzero"`

	CreatedAt       time.Time `json:"createdAt"`
	StatusChangedAt time.Time `json:"statusChangedAt"`
}

// CircuitBreaker is a service's deployment circuit breaker: Enable fails a
// deployment whose tasks keep failing; Rollback then deploys the last
// deployment that completed.
type CircuitBreaker struct {
	Enable   bool `json:"enable"`
	Rollback bool `json:"rollback"`
}

// Deployment is one rollout of a service's task definition. Its tasks are
// those whose startedBy is its ID.
type Deployment struct {
	ID                 string    `json:"id"` // ecs-svc/<19 digits>
	Status             string    `json:"status"`
	TaskDefinition     string    `json:"taskDefinition"`
	Subnets            []string  `json:"subnets"`
	SecurityGroups     []string  `json:"securityGroups,omitempty"`
	RolloutState       string    `json:"rolloutState"`
	RolloutStateReason string    `json:"rolloutStateReason,omitempty"`
	Failed             []string  `json:"failed,omitempty"` // IDs of the tasks counted by the circuit breaker
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

// Event is one line of a service's event log.
type Event struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
	Message   string    `json:"message"`
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := *r
	c.Subnets = slices.Clone(r.Subnets)
	c.SecurityGroups = slices.Clone(r.SecurityGroups)
	c.Tags = slices.Clone(r.Tags)
	c.Events = slices.Clone(r.Events)
	c.Deployments = make([]Deployment, len(r.Deployments))
	for i, d := range r.Deployments {
		d.Subnets = slices.Clone(d.Subnets)
		d.SecurityGroups = slices.Clone(d.SecurityGroups)
		d.Failed = slices.Clone(d.Failed)
		c.Deployments[i] = d
	}
	return &c
}

// AddEvent records an event, newest first, keeping at most MaxEvents.
func (r *Record) AddEvent(now time.Time, format string, args ...any) {
	ev := Event{ID: eventID(), CreatedAt: now, Message: fmt.Sprintf(format, args...)}
	r.Events = append([]Event{ev}, r.Events...)
	if len(r.Events) > MaxEvents {
		r.Events = r.Events[:MaxEvents]
	}
}

// NewDeployment makes a new PRIMARY deployment of taskDef on the service's
// network; the former PRIMARY becomes ACTIVE and keeps its tasks until the
// rollout drains them. reason "" says the deployment is in progress.
func (r *Record) NewDeployment(taskDef string, now time.Time, reason string) {
	for i := range r.Deployments {
		r.Deployments[i].Status = DeploymentActive
		r.Deployments[i].UpdatedAt = now
	}
	d := Deployment{ID: deploymentID(), Status: DeploymentPrimary, TaskDefinition: taskDef,
		Subnets: slices.Clone(r.Subnets), SecurityGroups: slices.Clone(r.SecurityGroups),
		RolloutState: RolloutInProgress, CreatedAt: now, UpdatedAt: now}
	d.RolloutStateReason = reason
	if reason == "" {
		d.RolloutStateReason = "ECS deployment " + d.ID + " in progress."
	}
	r.Deployments = append([]Deployment{d}, r.Deployments...)
	r.TaskDefinition = taskDef
	r.Steady = false
	// As in ECS, a new deployment is no longer throttled.
	r.Throttle = ThrottleState{}
}

// deploymentID returns an ECS-style deployment ID, "ecs-svc/" and 19 digits;
// it is the startedBy of the deployment's tasks.
func deploymentID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(8e18))
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("ecs-svc/%d", n.Int64()+1e18)
}

// eventID returns a random UUID-shaped event ID, as ECS's.
func eventID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[:4], b[4:6], b[6:8], b[8:10], b[10:])
}
