package runtime

// MaskedPaths and ReadonlyPaths are the /proc and /sys paths every
// container gets masked (nothing to read) and read-only: runc spec's
// defaults plus the few more Docker masks. runc applies them on the host,
// the micro-VM's guest agent inside the VM.
var (
	MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	ReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)
