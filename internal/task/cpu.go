package task

// CPUUnitsPerVCPU is ECS's cpu unit: a vCPU is 1024 units.
const CPUUnitsPerVCPU = 1024

// UnitsToMilliCPU converts ECS cpu units to milli-CPUs (1024 units are
// 1000m), rounding down.
func UnitsToMilliCPU(units int64) int64 { return units * 1000 / CPUUnitsPerVCPU }

// MilliCPUToUnits converts milli-CPUs to ECS cpu units, rounding down.
func MilliCPUToUnits(milli int64) int64 { return milli * CPUUnitsPerVCPU / 1000 }

// MilliCPU is the task's provisioned cpu in milli-CPUs.
func (t *Task) MilliCPU() int64 { return UnitsToMilliCPU(t.CPUUnits) }
