package task

import "testing"

func TestCPUConversion(t *testing.T) {
	for _, c := range []struct{ units, milli int64 }{
		{256, 250}, {512, 500}, {1024, 1000}, {2048, 2000}, {4096, 4000}, {16384, 16000}, {0, 0},
	} {
		if got := (&Task{CPUUnits: c.units}).MilliCPU(); got != c.milli {
			t.Errorf("MilliCPU of %d units = %d, want %d", c.units, got, c.milli)
		}
		if got := MilliCPUToUnits(c.milli); got != c.units {
			t.Errorf("MilliCPUToUnits(%d) = %d, want %d", c.milli, got, c.units)
		}
	}
	// Rounding down, both ways: 100 units are 97.66m, 100m are 102.4 units.
	if got := UnitsToMilliCPU(100); got != 97 {
		t.Errorf("UnitsToMilliCPU(100) = %d, want 97", got)
	}
	if got := MilliCPUToUnits(100); got != 102 {
		t.Errorf("MilliCPUToUnits(100) = %d, want 102", got)
	}
}
