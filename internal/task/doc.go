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
// This package imports nothing of Vessel's but errdefs; the control plane,
// the agent and the API layer all speak it.
//
//	t := task.New(...)
//	if err := t.Advance(task.StatusPending, now); err != nil { ... }
package task
