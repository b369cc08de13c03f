//go:build !linux

package guest

// Main is only available on Linux.
func Main() { panic("vessel-guest runs on Linux only") }

// ContainerInitArg is argv[0] of a container's main process.
const ContainerInitArg = "vessel-ctr"

// ContainerInit is only available on Linux.
func ContainerInit(argv []string) error { panic("vessel-guest runs on Linux only") }
