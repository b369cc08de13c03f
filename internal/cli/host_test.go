package cli

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/sim"
)

// The host's probe walks every runtime strongest first, reports each one
// in the same words, and builds only those offered (or asked for with
// --runtime).
func TestProbeRuntimes(t *testing.T) {
	t.Setenv("VESSEL_CACHE", t.TempDir()) // no runsc, no guest kernel
	for _, tc := range []struct {
		name    string
		opts    hostOptions
		works   []string
		report  []string
		wantErr string
	}{
		{"sim offered", hostOptions{offer: []string{"sim"}}, []string{"sim"}, []string{
			"microvm: not offered (--runtimes)",
			"gvisor: not offered (--runtimes)",
			"runc: not offered (--runtimes)",
			"sim: works (no isolation: sandboxes run no process)",
		}, ""},
		{"gvisor without runsc", hostOptions{offer: []string{"gvisor", "sim"}}, []string{"sim"}, []string{
			"microvm: not offered (--runtimes)",
			"gvisor: unavailable: no runsc: build it with scripts/build-runsc, or pass --runsc",
			"runc: not offered (--runtimes)",
			"sim: works (no isolation: sandboxes run no process)",
		}, ""},
		{"the default runtime is probed though not offered", hostOptions{offer: []string{"gvisor"}, runtime: "sim"}, []string{"sim"}, []string{
			"microvm: not offered (--runtimes)",
			"gvisor: unavailable: no runsc: build it with scripts/build-runsc, or pass --runsc",
			"runc: not offered (--runtimes)",
			"sim: works (no isolation: sandboxes run no process)",
		}, ""},
		{"nothing works", hostOptions{offer: []string{"gvisor"}}, nil, nil,
			"no runtime works on this host: microvm: not offered (--runtimes); gvisor: unavailable: no runsc: build it with scripts/build-runsc, or pass --runsc; runc: not offered (--runtimes); sim: not offered (--runtimes)"},
		{"unknown runtime offered", hostOptions{offer: []string{"sim", "kata"}}, nil, nil,
			`runtime "kata" is not known: the runtimes are microvm, gvisor, runc, sim`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rts, _, report, _, err := tc.opts.probeRuntimes(t.TempDir(), quiet)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var works []string
			for name := range rts {
				works = append(works, name)
			}
			slices.Sort(works)
			if !slices.Equal(works, tc.works) {
				t.Errorf("runtimes built %v, want %v", works, tc.works)
			}
			if !slices.Equal(report, tc.report) {
				t.Errorf("report\n%s\nwant\n%s", strings.Join(report, "\n"), strings.Join(tc.report, "\n"))
			}
		})
	}
}

// The host's default runtime is the strongest that works.
func TestNewAgentDefaultsToStrongestThatWorks(t *testing.T) {
	t.Setenv("VESSEL_CACHE", t.TempDir()) // no runsc: gvisor does not work
	dir := t.TempDir()
	srv, _ := newTestServer(t, dir)
	o := hostOptions{offer: []string{"gvisor", "sim"}, hostID: "h1"}
	_, report, err := o.newAgent(t.Context(), dir, srv, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if last := report[len(report)-1]; last != "default: sim" {
		t.Errorf("report ends %q, want %q", last, "default: sim")
	}
}

// A host keeps warm pools by default for the runtimes that work at
// native speed and can warm, as many as fit in 1/16 of its memory (at
// most 2); --warm-pool's sizes stand as given.
func TestDefaultWarmPools(t *testing.T) {
	simRT, err := sim.New(sim.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rts := map[string]runtime.Runtime{"microvm": &microvm.Runtime{}, "gvisor": &gvisor.Runtime{}, "runc": &runc.Runtime{}, "sim": simRT}
	native := map[string]bool{"microvm": true, "gvisor": true, "runc": true, "sim": true}
	emulated := map[string]bool{"microvm": false, "gvisor": true, "runc": true, "sim": true}
	for _, tc := range []struct {
		name   string
		given  map[string]int
		native map[string]bool
		memMiB int64
		want   map[string]int
	}{
		{"24 GiB, KVM", nil, native, 24 << 10, map[string]int{"microvm": 2, "gvisor": 2, "runc": 2}},
		{"24 GiB, emulated micro-VM", nil, emulated, 24 << 10, map[string]int{"gvisor": 2, "runc": 2}},
		{"8 GiB: one micro-VM", nil, native, 8 << 10, map[string]int{"microvm": 1, "gvisor": 2, "runc": 2}},
		{"1 GiB: one gVisor sandbox, no micro-VM", nil, native, 1 << 10, map[string]int{"microvm": 0, "gvisor": 1, "runc": 2}},
		{"given sizes stand", map[string]int{"runc": 0, "gvisor": 5}, emulated, 24 << 10, map[string]int{"gvisor": 5, "runc": 0}},
		{"an emulated micro-VM by name", map[string]int{"microvm": 1}, emulated, 24 << 10, map[string]int{"microvm": 1, "gvisor": 2, "runc": 2}},
		{"a size class beside the runtime's own pool", map[string]int{"gvisor:16/120": 1}, emulated, 24 << 10, map[string]int{"gvisor:16/120": 1, "gvisor": 2, "runc": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			given := maps.Clone(tc.given)
			got := defaultWarmPools(tc.given, rts, tc.native, tc.memMiB)
			if !maps.Equal(got, tc.want) {
				t.Errorf("pools %v, want %v", got, tc.want)
			}
			if !maps.Equal(tc.given, given) {
				t.Errorf("the given sizes changed: %v", tc.given)
			}
		})
	}
}
