package runtime

import "context"

// Usage is what a sandbox or one of its containers has used so far, from
// the runtime's own counters (cgroups on the host, the guest's for a
// micro-VM).
type Usage struct {
	// CPUNanos is the CPU time used, user and system together;
	// CPUUserNanos and CPUSystemNanos split it where the counters do.
	CPUNanos       int64
	CPUUserNanos   int64
	CPUSystemNanos int64
	// MemoryBytes is the memory in use now, MemoryMaxBytes the most ever
	// in use (0 when unknown), MemoryLimitBytes the limit (0 for none).
	MemoryBytes      int64
	MemoryMaxBytes   int64
	MemoryLimitBytes int64
	// MemoryStat holds the kernel's memory.stat counters (cache, rss, ...).
	MemoryStat map[string]int64
}

// Statser is the optional ability to report what a sandbox uses.
type Statser interface {
	// Stats returns the usage of container in sandbox id, or of the whole
	// sandbox when container is "". A runtime that counts only per
	// sandbox answers a container's question with the sandbox's usage and
	// says so with whole set. A missing sandbox is an error of kind
	// errdefs.ErrNotFound.
	Stats(ctx context.Context, id, container string) (u Usage, whole bool, err error)
}
