package task

import (
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/runtime"
)

// DefaultCluster is the cluster a task is in when none is named; it always
// exists.
const DefaultCluster = "default"

// TagRuntime is the tag (on a RunTask, a service, a task definition, a
// cluster or a Fargate profile) that picks a task's runtime.
const TagRuntime = "vessel:runtime"

// ProfileDeletedReason starts the stoppedReason of a task stopped because
// the Fargate profile that took its pod was deleted; the profile's name
// follows.
const ProfileDeletedReason = "Fargate profile deleted: "

// New makes the record of a new task from template, which carries what its
// maker resolved: the containers and size, where (Cluster, Subnets), by
// whom (StartedBy, Group, Tags) and the Runtime asked for. New gives it
// its ID and ARN, starts its lifecycle (PROVISIONING, desired RUNNING,
// containers PENDING, Version 1, CreatedAt now) and clears any placement
// and observed state the template carried. A Group left empty is
// "family:<Family>". The template is not changed; the result is the
// caller's.
//
// A template without containers, whose Runtime is not one of
// runtime.Names, or whose Hostname or HostDomain is not accepted
// (ValidateHostname, ValidateHostDomain), is an error of kind
// errdefs.ErrInvalidArgument.
func New(template *Task, id, arn string, now time.Time) (*Task, error) {
	if len(template.Containers) == 0 {
		return nil, errdefs.InvalidArgument("a task needs at least one container")
	}
	if template.Runtime != "" && !runtime.Known(template.Runtime) {
		return nil, errdefs.InvalidArgument("runtime %q is not known: the runtimes are %s",
			template.Runtime, strings.Join(runtime.Names, ", "))
	}
	if err := ValidateHostname(template.Hostname); err != nil {
		return nil, err
	}
	if err := ValidateHostDomain(template.Hostname, template.HostDomain); err != nil {
		return nil, err
	}
	t := template.Clone()
	t.ID, t.ARN = id, arn
	if t.Group == "" && t.Family != "" {
		t.Group = "family:" + t.Family
	}
	// Placement and what hosts observed belong to the task's life, not to
	// its template.
	t.HostID, t.Subnet, t.IP, t.PullProgress = "", "", "", ""
	t.StopCode, t.StoppedReason = "", ""
	t.ConnectivityAt, t.PullStartedAt, t.PullStoppedAt, t.StartedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	t.StoppingAt, t.ExecutionStoppedAt, t.StoppedAt = time.Time{}, time.Time{}, time.Time{}
	t.LastStatus, t.DesiredStatus = StatusProvisioning, StatusRunning
	t.CreatedAt = now
	t.Version = 1
	for i := range t.Containers {
		c := &t.Containers[i]
		c.ResetStatus()
		c.LastStatus = StatusPending
	}
	return t, nil
}

// ResolveRuntime picks a task's runtime from the vessel:runtime tags of
// what launches it (RunTask's or the service's), of its task definition and
// of its cluster, in that order of precedence; within one list the last
// such tag counts. "" means none was asked for (the host's default). A
// chosen runtime that is not one of runtime.Names is an error of kind
// errdefs.ErrInvalidArgument.
func ResolveRuntime(launch, definition, cluster []Tag) (string, error) {
	for _, tags := range [][]Tag{launch, definition, cluster} {
		name, found := "", false
		for _, tg := range tags {
			if tg.Key == TagRuntime {
				name, found = tg.Value, true
			}
		}
		if !found {
			continue
		}
		if !runtime.Known(name) {
			return "", errdefs.InvalidArgument("runtime %q (tag %s) is not known: the runtimes are %s",
				name, TagRuntime, strings.Join(runtime.Names, ", "))
		}
		return name, nil
	}
	return "", nil
}

// ValidateHostDomain checks the domain that qualifies a task's hostname
// (Task.HostDomain) by network.CheckDomain, the rule's one home: empty,
// or with the hostname a DNS name. A bad one is an error of kind
// errdefs.ErrInvalidArgument saying what is accepted.
func ValidateHostDomain(hostname, domain string) error {
	return network.CheckDomain(hostname, domain)
}

// ValidateHostname checks a task's hostname: empty (the default,
// ip-a-b-c-d), or a name network.CheckHostname, the rule's one home,
// accepts (a pod name may have dots). A bad one is an error of kind
// errdefs.ErrInvalidArgument saying what is accepted.
func ValidateHostname(h string) error {
	if h == "" {
		return nil
	}
	return network.CheckHostname(h)
}

// ResetStatus clears what the agent reports of the container (its
// status, exit, runtime ID, image digest, health, restarts and times),
// leaving its definition.
func (c *Container) ResetStatus() {
	c.LastStatus = ""
	c.ExitCode, c.Reason, c.RuntimeID, c.ImageDigest, c.HealthStatus = nil, "", "", "", ""
	c.RestartCount, c.Ready, c.Started = 0, false, false
	c.StartedAt, c.FinishedAt = time.Time{}, time.Time{}
	c.LastExitCode, c.LastReason, c.LastStartedAt, c.LastFinishedAt = nil, "", time.Time{}, time.Time{}
}
