// Package sizing owns the Fargate size table and the two ways a size is
// chosen from it:
//
//   - ECS semantics: a task definition's cpu/memory pair must be one of the
//     table's combinations and is rejected otherwise, never rounded
//     (ValidateTask, ParseECSCPU, ParseECSMemory).
//   - EKS semantics: a pod's need is, per resource, the larger of its largest
//     init container and the sum of its regular containers; 256 MiB is added
//     for the node's own components and the result is rounded up to the
//     smallest combination covering both (PodNeeds, RoundUp, ForPodSpec).
//     The result is written on the pod as the CapacityProvisioned annotation
//     (Size.String) and is what the sandbox is limited to.
//
// The package is pure: no I/O, no clock. It imports nothing of Vessel's
// except internal/errdefs and internal/task (its cpu unit conversion) (and,
// outside Vessel, only k8s.io/api/core/v1 and
// apimachinery's resource quantities, for ForPodSpec); it must not import
// the store, the runtime or the API layer.
//
// Usage:
//
//	units, err := sizing.ParseECSCPU(td.CPU)       // "1 vCPU" -> 1024
//	mib, err := sizing.ParseECSMemory(td.Memory)   // "2 GB"   -> 2048
//	if err := sizing.ValidateTask(units, mib); err != nil { ... } // ClientException
//
//	size, err := sizing.ForPodSpec(&pod.Spec)
//	var tooLarge *sizing.TooLargeError
//	if errors.As(err, &tooLarge) { /* leave Pending, reason tooLarge.Reason */ }
//	pod.Annotations[sizing.AnnotationCapacityProvisioned] = size.String() // "2vCPU 9GB"
package sizing
