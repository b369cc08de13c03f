// Package agent is the host agent: it registers its host with the control
// plane, heartbeats, watches the tasks placed on the host and reconciles each
// with a sandbox of the runtime the task asks for: create, start the
// containers, report RUNNING, watch the essential containers, and on a stop
// walk DEACTIVATING → STOPPING (SIGTERM, then SIGKILL after the stop timeout)
// → DEPROVISIONING (sandbox deleted) → STOPPED.
//
// Sandboxes outlive the agent. When an agent starts it lists the sandboxes
// its runtimes hold, adopts those whose task is still placed here (reporting
// exits that happened while it was away with their real codes) and deletes
// the rest.
//
// The agent imports agentproto, runtime and task; it must not import the
// server or the CLI.
//
//	a, err := agent.New(agent.Config{Host: h, ControlPlane: cp, Runtimes: rts})
//	err = a.Run(ctx) // until ctx is done; sandboxes keep running
package agent
