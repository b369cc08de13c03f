// Package agent is the host agent: it registers its host with the control
// plane, heartbeats, watches the tasks placed on the host and reconciles each
// with a sandbox of the runtime the task asks for: create, start the
// containers, report RUNNING, watch the essential containers, and on a stop
// walk DEACTIVATING → STOPPING (SIGTERM, then SIGKILL after the stop timeout)
// → DEPROVISIONING (sandbox deleted) → STOPPED.
//
// Creating a sandbox attaches the task to its subnet first (the IP is
// reported before the images are pulled), replaces the task's placeholders
// (task.ExpandPlaceholders) with its IP and node name, and materializes its
// volumes in Config.TaskDir/<task ID>/volumes (an emptyDir as a 0777
// directory or, for the Memory medium, a size-limited tmpfs; files with
// their modes, every path resolved inside its volume, always mounted
// read-only; group-owned by the task's fsGroup, setgid, when it has one)
// for the runtime to bind into the containers; they are removed when the
// sandbox is deleted. With a disk emptyDir, volumes/ is an ext4 file of
// the task's ephemeral storage, loop-mounted, so the task's writes there
// are bounded. A mount's sub-path is passed as runtime.Mount.SubPath: the
// runtime resolves it inside the volume at every start, following no
// link (the agent only makes it when missing, the same way).
//
// A task with a RestartPolicy (a Kubernetes pod's) keeps RUNNING while its
// essential containers exit: each is restarted in place
// (runtime.Restarter: same spec, writable layer kept, output appended to
// the same log) per the policy after a back-off (Config.RestartBackoff,
// 10 s, doubled for each restart in a row up to Config.MaxRestartBackoff,
// 5 min, and from the base again after a run of 10 min), and the task
// stops once none runs or will restart. Containers' probes run from the
// agent (probe.go): exec through runtime.Execer, httpGet and tcpSocket
// against the task's IP from the host. The startup probe holds liveness
// and readiness back; readiness sets Ready; a failed liveness or startup
// probe kills the container (SIGTERM, SIGKILL after its stop timeout),
// whose exit then goes the way of any exit. Each start, exit and restart
// is reported with the container's StartedAt, Ready, Started,
// RestartCount and the last run's end (Last*).
//
// Sandboxes outlive the agent. When an agent starts it lists the sandboxes
// its runtimes hold, adopts those whose task is still placed here (reporting
// exits that happened while it was away with their real codes) and deletes
// the rest. Restart counts survive in the task and in the runtime's
// record (ContainerState.Restarts); the probes of adopted containers start
// over (the startup probe only if it had not passed).
//
// The agent imports agentproto, runtime and task; it must not import the
// server or the CLI.
//
//	a, err := agent.New(agent.Config{Host: h, ControlPlane: cp, Runtimes: rts})
//	err = a.Run(ctx) // until ctx is done; sandboxes keep running
package agent
