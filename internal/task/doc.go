// Package task is the task model and its lifecycle state machine.
//
// A Task is self-contained: RunTask resolves the task definition and its
// overrides into the containers the host agent must run, so an agent never
// needs the task definition. lastStatus and desiredStatus are kept apart, as
// in ECS: clients change DesiredStatus; the control plane and the host agent
// advance LastStatus, only ever forward, through
//
//	PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED
//
// skipping states where a task never reached them (a task stopped while
// PENDING goes straight to DEPROVISIONING and STOPPED).
//
// A task may carry Volumes (an emptyDir, or files resolved when the task
// was made, e.g. from Kubernetes config maps and secrets) that its
// containers mount with MountPoints; ValidateVolumes checks them and the
// host agent materializes them. Containers made before the task's IP is
// known carry PlaceholderPodIP and PlaceholderNodeName, which the host
// agent replaces with ExpandPlaceholders; NodeNameForIP names a task's
// virtual node ("vessel-ip-10-0-1-7").
//
// RestartPolicy "" keeps ECS's rule (an essential container's exit stops
// the task); RestartAlways, RestartOnFailure and RestartNever are
// Kubernetes': the host agent restarts essential containers in place and
// reports RestartCount, Ready, Started and the last run's end (Last*).
// Containers may carry Kubernetes probes (Probe: exec, httpGet or
// tcpSocket, with Kubernetes' defaults from WithDefaults);
// ValidateRestartAndProbes checks both.
//
// A task may carry a DNS config (nameservers, search domains, resolv.conf
// options; DNSConfig.Validate checks it) that the host agent writes into the
// task's resolv.conf instead of the host's resolvers.
//
// This package imports nothing of Vessel's but errdefs; the control plane,
// the agent and the API layer all speak it.
//
//	t := task.New(...)
//	if err := t.Advance(task.StatusPending, now); err != nil { ... }
package task
