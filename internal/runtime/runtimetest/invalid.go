package runtimetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// testInvalidSpecs: every runtime refuses, at Create, the specs that
// runtime.Spec.Validate refuses (ValidateSimulated for a runtime that runs
// no process), with an error of kind errdefs.ErrInvalidArgument, and
// keeps nothing of them: List does not show them and nothing is left on
// the host.
func testInvalidSpecs(s *suite) {
	s.n++
	base := fmt.Sprintf("rt-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), s.n)
	valid := func(id string) runtime.Spec {
		spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 256, LogDir: filepath.Join(s.logs, id),
			Containers: []runtime.ContainerSpec{
				{Name: "app", Image: s.Image, Args: []string{"/bin/sh", "-c", "exit 0"}},
				{Name: "side", Image: s.Image, Args: []string{"/bin/sh", "-c", "exit 0"}},
			}}
		if s.Prepare != nil {
			s.Prepare(s.t, &spec)
		}
		return spec
	}
	cases := []struct {
		name   string
		id     string
		change func(*runtime.Spec)
		real   bool // a rule of runtimes that run processes only
	}{
		{name: "no containers", change: func(sp *runtime.Spec) { sp.Containers = nil }},
		{name: "empty ID", id: ""},
		{name: "ID with a slash", id: base + "/x"},
		{name: "ID of a parent directory", id: ".."},
		{name: "hidden ID", id: "." + base},
		{name: "ID starting with a hyphen", id: "-" + base},
		{name: "ID with a space", id: base + " x"},
		{name: "ID with a colon", id: base + ":x"},
		{name: "ID of 64 characters", id: base + strings.Repeat("x", 64-len(base))},
		{name: "no CPU", change: func(sp *runtime.Spec) { sp.MilliCPU = 0 }},
		{name: "negative memory", change: func(sp *runtime.Spec) { sp.MemoryMiB = -1 }},
		{name: "container names twice", change: func(sp *runtime.Spec) { sp.Containers[1].Name = "app" }},
		{name: "empty container name", change: func(sp *runtime.Spec) { sp.Containers[1].Name = "" }},
		{name: "container name with a slash", change: func(sp *runtime.Spec) { sp.Containers[1].Name = "a/b" }},
		{name: "container name starting with a dot", change: func(sp *runtime.Spec) { sp.Containers[1].Name = ".side" }},
		{name: "container name with a colon", change: func(sp *runtime.Spec) { sp.Containers[1].Name = "side:1" }},
		{name: "container name of 64 characters", change: func(sp *runtime.Spec) { sp.Containers[1].Name = strings.Repeat("s", 64) }},
		{name: "relative layer", change: func(sp *runtime.Spec) { sp.Containers[1].Layers = []string{"layer"} }},
		{name: "relative mount destination", change: func(sp *runtime.Spec) {
			sp.Containers[1].Mounts = []runtime.Mount{{Source: s.t.TempDir(), Destination: "data"}}
		}},
		{name: "no arguments", real: true, change: func(sp *runtime.Spec) { sp.Containers[1].Args = nil }},
		{name: "no image layers", real: true, change: func(sp *runtime.Spec) { sp.Containers[1].Layers = nil }},
	}
	for i, c := range cases {
		if c.real && !s.Real {
			continue
		}
		id := c.id
		if c.change != nil {
			id = fmt.Sprintf("%s-%d", base, i)
		}
		spec := valid(id)
		if c.change != nil {
			c.change(&spec)
		}
		ctx, cancel := s.ctx()
		err := s.rt.Create(ctx, spec)
		if !errdefs.IsInvalidArgument(err) {
			s.t.Errorf("%s: Create = %v, want an invalid-argument error", c.name, err)
		}
		if err == nil {
			// Accepted: the sandbox must not outlive the case.
			if derr := s.rt.Delete(ctx, id); derr != nil {
				s.t.Errorf("%s: Delete of the sandbox Create accepted: %v", c.name, derr)
			}
		}
		infos, lerr := s.rt.List(ctx)
		cancel()
		if lerr != nil {
			s.t.Fatalf("List: %v", lerr)
		}
		for _, in := range infos {
			if in.ID == id {
				s.t.Errorf("%s: sandbox %q listed after Create refused it", c.name, id)
			}
		}
		if runtime.CheckName(id) == nil {
			s.leftovers(id)
		}
	}
	// The same spec without the faults is created, also with a dot in
	// its ID after the first character.
	spec := valid(base + ".v1")
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.rt.Create(ctx, spec); err != nil {
		s.t.Fatalf("Create of a valid spec (ID %s): %v", spec.ID, err)
	}
	if err := s.rt.Delete(ctx, spec.ID); err != nil {
		s.t.Errorf("Delete(%s): %v", spec.ID, err)
	}
	s.leftovers(spec.ID)
}
