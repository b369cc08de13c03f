// Package agent is the host agent: it registers its host with the control
// plane, heartbeats, and reconciles each task placed on the host with a
// sandbox of the runtime the task asks for: create, start the containers,
// report RUNNING, watch the essential containers, and on a stop walk
// DEACTIVATING → STOPPING (SIGTERM, then SIGKILL after the stop timeout) →
// DEPROVISIONING (sandbox deleted) → STOPPED.
//
// Around the runtime it owns what a sandbox needs from the host: the task's
// network attachment (made before the images are pulled, so the IP is
// reported first, and used to expand task.ExpandPlaceholders), the images,
// the volumes under Config.TaskDir (volumes.go), restarts in place for a
// task with a RestartPolicy (restart.go) and the containers' probes
// (probe.go). Sandboxes outlive the agent: a new agent adopts those whose
// task is still placed here, reporting the exits that happened while it was
// away with their real codes, and deletes the rest.
//
// With Config.WarmPools it keeps, per runtime that can (runtime.Warmer)
// and per size class of a runtime that makes its sandboxes at a size
// (runtime.SizedWarmer), sandboxes made before their tasks are known
// (pool.go): a task takes one of its size class's pool (its network attachment re-keyed to the task, then the
// runtime's Claim), the pool refills in the background, gives way to the
// host's tasks' memory, is adopted after a restart, and is reported to
// the control plane (agentproto.WarmPoolReporter).
//
// The agent imports agentproto, runtime, task, sizing, image, network, fsutil and
// errdefs; it must not import the server, the store, the Kubernetes bridge
// or the CLI.
//
//	a, err := agent.New(agent.Config{Host: h, ControlPlane: cp, Runtimes: rts})
//	err = a.Run(ctx) // until ctx is done; sandboxes keep running
package agent
