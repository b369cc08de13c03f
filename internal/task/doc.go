// Package task is the task model and owns its rules: the record of a new
// task (New), the runtime picked from tags (ResolveRuntime), the merge of
// a host's report (ApplyReport), the lifecycle (Advance, RequestStop), the
// cpu unit conversion (MilliCPU), the task's health (Health) and the
// checks of its size, volumes, DNS, restart policy and probes.
//
// A Task is self-contained: its containers are resolved when it is made,
// so a host agent never needs the task definition. LastStatus only moves
// forward, through
//
//	PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED
//
// skipping states a task never reached; clients change DesiredStatus.
// Hosts own what they observe (ApplyReport's doc lists it), the control
// plane the rest.
//
// It imports internal/errdefs, internal/runtime (the runtimes' names) and
// internal/network (a leaf: the hostname rule, network.CheckHostname)
// only; the control plane, the agent, the bridge and the API layer all
// speak it.
//
//	rt, err := task.ResolveRuntime(runTaskTags, defTags, clusterTags)
//	t, err := task.New(template, id, arn, now)
//	changed, err := t.ApplyReport(report, now) // on the host's report
//	err = t.Advance(task.StatusPending, now)
package task
