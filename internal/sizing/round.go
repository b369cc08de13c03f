package sizing

import (
	"fmt"

	"vessel.dev/vessel/internal/errdefs"
)

// Resources is what a container, or a whole pod, asks for.
type Resources struct {
	MilliCPU  int64
	MemoryMiB int64
}

// PodNeeds returns a pod's need as EKS computes it: per resource, the larger
// of the largest init container and the sum of the regular containers.
func PodNeeds(initContainers, containers []Resources) Resources {
	var init, sum Resources
	for _, c := range initContainers {
		init.MilliCPU = max(init.MilliCPU, c.MilliCPU)
		init.MemoryMiB = max(init.MemoryMiB, c.MemoryMiB)
	}
	for _, c := range containers {
		sum.MilliCPU += c.MilliCPU
		sum.MemoryMiB += c.MemoryMiB
	}
	return Resources{
		MilliCPU:  max(init.MilliCPU, sum.MilliCPU),
		MemoryMiB: max(init.MemoryMiB, sum.MemoryMiB),
	}
}

// TooLargeError is returned by RoundUp when a pod needs more than the
// largest size. It matches errdefs.ErrInvalidArgument with errors.Is.
type TooLargeError struct {
	// Reason is ReasonExceedsMax.
	Reason string
	// Need is what the pod needed, including the 256 MiB overhead.
	Need Resources
	// Max is the largest size in the table.
	Max Size
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("Your pod's cpu/memory requirements exceed the max Fargate configuration: "+
		"the pod needs %s vCPU and %s GiB memory (including %d MiB for Fargate's own components); "+
		"the largest size is %s",
		formatVCPU(e.Need.MilliCPU), formatGiB(e.Need.MemoryMiB), OverheadMiB, e.Max)
}

// Unwrap makes a TooLargeError an errdefs.ErrInvalidArgument.
func (e *TooLargeError) Unwrap() error { return errdefs.ErrInvalidArgument }

// RoundUp adds OverheadMiB to need's memory and returns the smallest size
// covering both resources: the smallest cpu that has a memory value large
// enough, and the smallest such memory within it. A pod with no requests
// gets 0.25vCPU 0.5GB. A need larger than the largest size is a
// *TooLargeError; a negative need is an errdefs.ErrInvalidArgument.
func RoundUp(need Resources) (Size, error) {
	if need.MilliCPU < 0 || need.MemoryMiB < 0 {
		return Size{}, errdefs.InvalidArgument(
			"invalid pod need: cpu %dm, memory %d MiB; requests must not be negative",
			need.MilliCPU, need.MemoryMiB)
	}
	withOverhead := Resources{MilliCPU: need.MilliCPU, MemoryMiB: need.MemoryMiB + OverheadMiB}
	for _, s := range table { // ordered by cpu, then memory
		if s.MilliCPU >= withOverhead.MilliCPU && s.MemoryMiB >= withOverhead.MemoryMiB {
			return s, nil
		}
	}
	return Size{}, &TooLargeError{Reason: ReasonExceedsMax, Need: withOverhead, Max: Largest()}
}
