package builtin

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"vessel.dev/vessel/internal/runtime"
)

// Every name in runtime.Names has exactly one Backend and every Backend
// is named there, in the same order (strongest first).
func TestBackendsAreTheNames(t *testing.T) {
	var got []string
	for _, b := range Backends {
		got = append(got, b.Name)
		if b.New == nil {
			t.Errorf("backend %s has no constructor", b.Name)
		}
	}
	if !slices.Equal(got, runtime.Names) {
		t.Fatalf("Backends are %v, runtime.Names are %v: want one backend per name, in the same order", got, runtime.Names)
	}
	for _, name := range runtime.Names {
		b, ok := Lookup(name)
		if !ok || b.Name != name {
			t.Errorf("Lookup(%q) = %q, %v", name, b.Name, ok)
		}
	}
	if _, ok := Lookup("kata"); ok {
		t.Error(`Lookup("kata") found a backend`)
	}
}

func TestProbe(t *testing.T) {
	empty := t.TempDir()
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(kernel, []byte("not a kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingGuest := filepath.Join(empty, "vessel-guest")
	for _, tc := range []struct {
		name    string
		backend string
		host    Host
		want    string
		works   bool
	}{
		{"sim works anywhere", runtime.Sim, Host{},
			"sim: works (no isolation: sandboxes run no process)", true},
		{"gvisor without runsc", runtime.GVisor, Host{CacheDir: empty},
			"gvisor: unavailable: no runsc: build it with scripts/build-runsc, or pass --runsc", false},
		{"microvm without a kernel", runtime.MicroVM, Host{CacheDir: empty},
			"microvm: unavailable: no guest kernel: build it with scripts/build-guest-kernel, or pass --guest-kernel", false},
		{"microvm without the guest binary", runtime.MicroVM, Host{CacheDir: empty, GuestKernel: kernel, GuestBinary: missingGuest},
			"microvm: unavailable: no guest agent binary at " + missingGuest +
				": build it with CGO_ENABLED=0 go build -o bin/vessel-guest ./cmd/vessel-guest, or pass --guest-binary", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.host.DataDir = t.TempDir()
			b, _ := Lookup(tc.backend)
			p := b.Probe(tc.host)
			if p.Line != tc.want {
				t.Errorf("report line %q, want %q", p.Line, tc.want)
			}
			if (p.Runtime != nil) != tc.works {
				t.Errorf("runtime %v, want one: %v", p.Runtime, tc.works)
			}
			if p.Name != tc.backend || p.Emulated != "" {
				t.Errorf("probed %q, emulated %q: want %q at native speed", p.Name, p.Emulated, tc.backend)
			}
			if tc.works {
				if _, err := os.Stat(filepath.Join(tc.host.DataDir, "sandboxes", tc.backend)); err != nil {
					t.Errorf("the runtime's state is not under the data directory: %v", err)
				}
			}
		})
	}
}

// fakeRuntime stands for a runtime the probe built; Default looks only at
// whether there is one.
type fakeRuntime struct{ runtime.Runtime }

// The default is the strongest runtime that works at native speed and
// runs processes; an emulated micro-VM is passed over while one does.
func TestDefault(t *testing.T) {
	works := func(name string) Probed { return Probed{Name: name, Runtime: fakeRuntime{}} }
	emulated := func(name string) Probed {
		p := works(name)
		p.Emulated = "KVM does not work here (no /dev/kvm)"
		return p
	}
	broken := func(name string) Probed { return Probed{Name: name} }
	for _, tc := range []struct {
		name  string
		found []Probed
		want  string
	}{
		{"microvm where KVM works", []Probed{works("microvm"), works("gvisor"), works("runc"), works("sim")}, "microvm"},
		{"gvisor where KVM does not", []Probed{emulated("microvm"), works("gvisor"), works("runc"), works("sim")}, "gvisor"},
		{"runc without runsc nor KVM", []Probed{emulated("microvm"), broken("gvisor"), works("runc"), works("sim")}, "runc"},
		{"runc without a micro-VM nor runsc", []Probed{broken("microvm"), broken("gvisor"), works("runc"), works("sim")}, "runc"},
		{"an emulated micro-VM before sim", []Probed{emulated("microvm"), broken("gvisor"), broken("runc"), works("sim")}, "microvm"},
		{"sim alone", []Probed{broken("microvm"), broken("gvisor"), broken("runc"), works("sim")}, "sim"},
		{"nothing works", []Probed{broken("microvm"), broken("sim")}, ""},
		{"an emulated runtime after a native one", []Probed{works("gvisor"), emulated("microvm")}, "gvisor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Default(tc.found); got != tc.want {
				t.Errorf("Default = %q, want %q", got, tc.want)
			}
		})
	}
}
