package builtin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/testenv"
)

// The default on this very host, every runtime probed for real (runsc and
// the guest kernel from the project's scripts, a micro-VM booted by the
// probe): where KVM does not work, as here, the micro-VM works emulated,
// its line says so and why, and the default is gvisor; where KVM works
// it is microvm.
func TestDefaultOnThisHost(t *testing.T) {
	testenv.SkipShort(t, "runsc, QEMU and a micro-VM boot")
	if os.Geteuid() != 0 {
		t.Skip("the runtimes need root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{"build-runsc", "build-guest-kernel"} {
		if out, err := exec.Command(filepath.Join(root, "scripts", script)).CombinedOutput(); err != nil {
			t.Fatalf("scripts/%s: %v\n%s", script, err, out)
		}
	}
	guest := filepath.Join(t.TempDir(), "vessel-guest")
	build := exec.Command("go", "build", "-o", guest, "./cmd/vessel-guest")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vessel-guest: %v\n%s", err, out)
	}

	h := Host{DataDir: t.TempDir(), GuestBinary: guest}
	var found []Probed
	for _, b := range Backends {
		found = append(found, b.Probe(h))
		t.Log(found[len(found)-1].Line)
	}
	byName := map[string]Probed{}
	for _, p := range found {
		byName[p.Name] = p
	}
	vm, gv := byName[runtime.MicroVM], byName[runtime.GVisor]
	if vm.Runtime == nil || gv.Runtime == nil {
		t.Fatalf("microvm and gvisor must both work here for this test:\n%s\n%s", vm.Line, gv.Line)
	}
	want := runtime.MicroVM
	if vm.Emulated != "" {
		want = runtime.GVisor
		if !strings.Contains(vm.Line, "emulated") || !strings.Contains(vm.Line, vm.Emulated) || !strings.Contains(vm.Line, "not chosen by default") {
			t.Errorf("the micro-VM runs emulated (%s) but its line does not say so, why, and that it is not the default:\n%s", vm.Emulated, vm.Line)
		}
	}
	if got := Default(found); got != want {
		t.Errorf("Default = %q, want %q (micro-VM emulated: %q)", got, want, vm.Emulated)
	}
}
