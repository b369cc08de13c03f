package sim_test

import (
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/runtimetest"
	"vessel.dev/vessel/internal/runtime/sim"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, runtimetest.Harness{
		Image: "sim",
		New: func(t *testing.T, dir string) runtime.Runtime {
			rt, err := sim.New(sim.Config{StateDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			return rt
		},
	})
}
