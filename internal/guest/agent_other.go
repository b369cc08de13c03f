//go:build !linux

package guest

// Main is only available on Linux.
func Main() { panic("vessel-guest runs on Linux only") }

// InitMain is only available on Linux.
func InitMain(argv []string) int { panic("vessel-guest runs on Linux only") }

// ContainerInit is only available on Linux.
func ContainerInit(argv []string) error { panic("vessel-guest runs on Linux only") }
