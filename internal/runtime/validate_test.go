package runtime

import (
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestValidate(t *testing.T) {
	valid := func() Spec {
		return Spec{ID: "0123abcd", MilliCPU: 250, MemoryMiB: 512, Containers: []ContainerSpec{
			{Name: "app", Layers: []string{"/l/1"}, Args: []string{"sleep", "1"}},
			{Name: "side.car_1-x", Layers: []string{"/l/1", "/l/2"}, Args: []string{"true"}},
		}}
	}
	cases := []struct {
		name      string
		change    func(*Spec)
		bad       bool // refused by Validate
		simulated bool // refused by ValidateSimulated too
	}{
		{name: "valid", change: func(*Spec) {}},
		{name: "dot inside the ID", change: func(s *Spec) { s.ID = "a.b" }},
		{name: "ID of 63 characters", change: func(s *Spec) { s.ID = strings.Repeat("a", 63) }},
		{name: "ID of 64 characters", change: func(s *Spec) { s.ID = strings.Repeat("a", 64) }, bad: true, simulated: true},
		{name: "empty ID", change: func(s *Spec) { s.ID = "" }, bad: true, simulated: true},
		{name: "hidden ID", change: func(s *Spec) { s.ID = ".a" }, bad: true, simulated: true},
		{name: "ID with a slash", change: func(s *Spec) { s.ID = "a/b" }, bad: true, simulated: true},
		{name: "no containers", change: func(s *Spec) { s.Containers = nil }, bad: true, simulated: true},
		{name: "no CPU", change: func(s *Spec) { s.MilliCPU = 0 }, bad: true, simulated: true},
		{name: "no memory", change: func(s *Spec) { s.MemoryMiB = 0 }, bad: true, simulated: true},
		{name: "a name twice", change: func(s *Spec) { s.Containers[1].Name = "app" }, bad: true, simulated: true},
		{name: "name with a colon", change: func(s *Spec) { s.Containers[1].Name = "a:b" }, bad: true, simulated: true},
		{name: "name starting with a hyphen", change: func(s *Spec) { s.Containers[1].Name = "-a" }, bad: true, simulated: true},
		{name: "relative layer", change: func(s *Spec) { s.Containers[1].Layers = []string{"l"} }, bad: true, simulated: true},
		{name: "layer with a comma", change: func(s *Spec) { s.Containers[1].Layers = []string{"/l,x"} }, bad: true, simulated: true},
		{name: "mount under /proc", change: func(s *Spec) {
			s.Containers[1].Mounts = []Mount{{Source: "/v", Destination: "/proc/x"}}
		}, bad: true, simulated: true},
		{name: "no arguments", change: func(s *Spec) { s.Containers[1].Args = nil }, bad: true},
		{name: "no layers", change: func(s *Spec) { s.Containers[1].Layers = nil }, bad: true},
	}
	for _, c := range cases {
		s := valid()
		c.change(&s)
		for _, v := range []struct {
			name string
			fn   func() error
			bad  bool
		}{{"Validate", s.Validate, c.bad}, {"ValidateSimulated", s.ValidateSimulated, c.simulated}} {
			err := v.fn()
			if v.bad && !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: %s = %v, want an invalid-argument error", c.name, v.name, err)
			}
			if !v.bad && err != nil {
				t.Errorf("%s: %s = %v, want nil", c.name, v.name, err)
			}
		}
	}
}
