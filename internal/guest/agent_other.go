//go:build !linux

package guest

// Main is only available on Linux.
func Main() { panic("vessel-guest runs on Linux only") }

// ContainerInitArg is argv[0] of a container's main process.
const ContainerInitArg = "vessel-ctr"

// InitArg is argv[0] of a container's init.
const InitArg = "vessel-init"

// InitMain is only available on Linux.
func InitMain(argv []string) int { panic("vessel-guest runs on Linux only") }

// ContainerInit is only available on Linux.
func ContainerInit(argv []string) error { panic("vessel-guest runs on Linux only") }
