package seccomp

import (
	goruntime "runtime"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func TestProfileIsAnAllowList(t *testing.T) {
	p, err := Profile([]string{"CAP_CHOWN"})
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction == specs.ActAllow {
		t.Fatalf("default action %s: the profile must deny what it does not list", p.DefaultAction)
	}
	if !allowed(p, "read") || !allowed(p, "openat") {
		t.Fatal("read and openat must be allowed")
	}
	for _, denied := range []string{"kcmp", "mount", "kexec_load", "reboot", "bpf", "open_by_handle_at"} {
		if allowed(p, denied) {
			t.Errorf("%s is allowed without the capability that needs it", denied)
		}
	}
	withPtrace, err := Profile([]string{"CAP_SYS_PTRACE"})
	if err != nil {
		t.Fatal(err)
	}
	if !allowed(withPtrace, "kcmp") {
		t.Error("kcmp must be allowed with CAP_SYS_PTRACE")
	}
}

func TestProfileCoversTheNativeABIOnly(t *testing.T) {
	p, err := Profile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := nativeArch[goruntime.GOARCH]; !slices.Equal(p.Architectures, []specs.Arch{want}) {
		t.Fatalf("architectures %v; want only the native %s (no 32-bit ABI)", p.Architectures, want)
	}
}
