package guest

// The guest binary's roles besides PID 1 of the VM are chosen by argv[0]
// (cmd/vessel-guest).
const (
	// ContainerInitArg is argv[0] of the agent's binary started as a
	// container's process: "vessel-ctr main|exec name root dir uid gid path
	// args...".
	ContainerInitArg = "vessel-ctr"

	// InitArg is argv[0] of the agent's binary as a container's init
	// (Security.Init): "vessel-init path args...".
	InitArg = "vessel-init"
)
