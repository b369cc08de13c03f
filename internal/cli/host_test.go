package cli

import (
	"slices"
	"strings"
	"testing"
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
			rts, report, _, err := tc.opts.probeRuntimes(t.TempDir(), quiet)
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
