package sizing

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/task"
)

// AnnotationCapacityProvisioned is the pod annotation carrying the provisioned
// size, e.g. "CapacityProvisioned: 0.25vCPU 0.5GB".
const AnnotationCapacityProvisioned = "CapacityProvisioned"

// ReasonExceedsMax is the reason a pod that needs more than the largest size
// stays Pending with.
const ReasonExceedsMax = "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE"

// OverheadMiB is the memory EKS adds to a pod's need for the node's own
// components (kubelet, kube-proxy, containerd) before rounding.
const OverheadMiB = 256

// Size is one combination of the Fargate size table.
type Size struct {
	MilliCPU  int64
	MemoryMiB int64
}

// String returns the size as EKS writes it in the CapacityProvisioned
// annotation: "0.25vCPU 0.5GB", "2vCPU 9GB". GB means GiB there.
func (s Size) String() string {
	return formatVCPU(s.MilliCPU) + "vCPU " + formatGiB(s.MemoryMiB) + "GB"
}

// CPUUnits returns the cpu in ECS units (1024 per vCPU).
func (s Size) CPUUnits() int64 { return task.MilliCPUToUnits(s.MilliCPU) }

// formatVCPU writes millicores as vCPUs without trailing zeros: 250 -> "0.25".
func formatVCPU(milli int64) string {
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64)
}

// formatGiB writes MiB as GiB without trailing zeros: 512 -> "0.5".
func formatGiB(mib int64) string {
	return strconv.FormatFloat(float64(mib)/1024, 'f', -1, 64)
}

// row is one cpu of the table and the memory values it allows, in MiB.
type row struct {
	units int64
	mems  []int64
}

// series returns min, min+step, ..., max.
func series(min, max, step int64) []int64 {
	var out []int64
	for m := min; m <= max; m += step {
		out = append(out, m)
	}
	return out
}

// rows is the table from the Fargate documentation, ordered by cpu then
// memory.
var rows = []row{
	{256, []int64{512, 1024, 2048}},
	{512, series(1024, 4096, 1024)},
	{1024, series(2048, 8192, 1024)},
	{2048, series(4096, 16384, 1024)},
	{4096, series(8192, 30720, 1024)},
	{8192, series(16384, 61440, 4096)},
	{16384, series(32768, 122880, 8192)},
}

// memoryFor returns the valid memory values, in MiB, for cpu units, or nil
// when the cpu is not in the table. The caller must not change the result.
func memoryFor(units int64) []int64 {
	for _, r := range rows {
		if r.units == units {
			return r.mems
		}
	}
	return nil
}

// table is computed once; Table returns copies.
var table = func() []Size {
	var out []Size
	for _, r := range rows {
		for _, m := range r.mems {
			out = append(out, Size{MilliCPU: task.UnitsToMilliCPU(r.units), MemoryMiB: m})
		}
	}
	return out
}()

// Table returns every valid combination, ordered by cpu then memory. The
// caller owns the returned slice.
func Table() []Size {
	return append([]Size(nil), table...)
}

// Largest returns the largest size in the table (16vCPU 120GB).
func Largest() Size { return table[len(table)-1] }

func cpuUnitsList() string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = strconv.FormatInt(r.units, 10)
	}
	return strings.Join(parts, ", ")
}

func join(vals []int64) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ", ")
}

// ValidateTask checks an ECS task's cpu (units) and memory (MiB) against the
// table. A pair that is not in the table is an error of kind
// errdefs.ErrInvalidArgument whose message lists what would be accepted; it
// is never rounded.
func ValidateTask(cpuUnits, memoryMiB int64) error {
	mems := memoryFor(cpuUnits)
	if mems == nil {
		return errdefs.InvalidArgument(
			"invalid cpu value %d for Fargate: valid cpu values are %s (units, 1024 per vCPU)",
			cpuUnits, cpuUnitsList())
	}
	for _, m := range mems {
		if m == memoryMiB {
			return nil
		}
	}
	return errdefs.InvalidArgument(
		"invalid cpu/memory combination for Fargate: cpu %d with memory %d; valid memory values for cpu %d are %s (MiB)",
		cpuUnits, memoryMiB, cpuUnits, join(mems))
}

// ParseECSCPU parses a task definition's cpu as ECS accepts it: an integer
// number of units ("1024") or vCPUs ("1 vCPU", "0.25 vcpu", "2vCPU"). It
// returns units. It does not check the value against the table.
func ParseECSCPU(s string) (int64, error) {
	v, err := parseECS(s, "vcpu", 1024)
	if err != nil {
		return 0, errdefs.InvalidArgument(
			"invalid cpu %q: %v; use cpu units as an integer (\"1024\") or vCPUs (\"1 vCPU\", \"0.25 vcpu\")", s, err)
	}
	return v, nil
}

// ParseECSMemory parses a task definition's memory as ECS accepts it: an
// integer number of MiB ("2048") or GB meaning GiB ("2 GB", "0.5GB"). It
// returns MiB. It does not check the value against the table.
func ParseECSMemory(s string) (int64, error) {
	v, err := parseECS(s, "gb", 1024)
	if err != nil {
		return 0, errdefs.InvalidArgument(
			"invalid memory %q: %v; use MiB as an integer (\"2048\") or GB (\"2 GB\", \"0.5GB\")", s, err)
	}
	return v, nil
}

// parseECS parses "<int>" or "<decimal>[ ]<suffix>" (suffix case-insensitive)
// and returns the integer, or the decimal times mult, which must be a whole
// positive number.
func parseECS(s, suffix string, mult float64) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty value")
	}
	lower := strings.ToLower(t)
	if !strings.HasSuffix(lower, suffix) {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("not an integer and no %q suffix", suffix)
		}
		if n <= 0 {
			return 0, fmt.Errorf("must be positive")
		}
		return n, nil
	}
	num := strings.TrimSpace(t[:len(t)-len(suffix)])
	if num == "" || strings.ContainsAny(num, "eEnNxX+") {
		return 0, fmt.Errorf("no number before %q", suffix)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", num)
	}
	v := f * mult
	if v <= 0 || v > math.MaxInt32 {
		return 0, fmt.Errorf("must be positive")
	}
	r := math.Round(v)
	if math.Abs(v-r) > 1e-6 {
		return 0, fmt.Errorf("%s %s is not a whole number of units", num, suffix)
	}
	return int64(r), nil
}

// Class writes the size as a warm pool's size class names it (--warm-pool
// RUNTIME:VCPU/GB): vCPUs and GiB without trailing zeros, "0.25/0.5",
// "16/120".
func (s Size) Class() string { return formatVCPU(s.MilliCPU) + "/" + formatGiB(s.MemoryMiB) }

// ParseClass parses a size class written as Class writes it ("2/4": 2
// vCPU, 4 GB meaning GiB). It must be one of the table's combinations;
// an error says which are.
func ParseClass(s string) (Size, error) {
	bad := func(format string, args ...any) (Size, error) {
		return Size{}, errdefs.InvalidArgument("size class %q: "+format+"; write VCPU/GB as a Fargate size, e.g. 2/4 (2 vCPU, 4 GB) or 0.25/0.5", append([]any{s}, args...)...)
	}
	c, m, ok := strings.Cut(s, "/")
	if !ok {
		return bad("no '/' between the vCPUs and the memory")
	}
	units, err := parseECS(c+"vcpu", "vcpu", 1024)
	if err != nil {
		return bad("vCPUs: %v", err)
	}
	mib, err := parseECS(m+"gb", "gb", 1024)
	if err != nil {
		return bad("memory: %v", err)
	}
	if err := ValidateTask(units, mib); err != nil {
		return bad("%v", err)
	}
	return Size{MilliCPU: task.UnitsToMilliCPU(units), MemoryMiB: mib}, nil
}
