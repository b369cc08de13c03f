package microvm

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/seccomp"
)

// TestMain lets the test binary serve as a process that loads a compiled
// filter and reports what its calls return.
func TestMain(m *testing.M) {
	if f := os.Getenv("VESSEL_TEST_SECCOMP"); f != "" {
		os.Exit(seccompChild(f))
	}
	if os.Getenv("VESSEL_TEST_SLEEP") != "" {
		time.Sleep(time.Minute) // a process to look at (alive_test.go)
		os.Exit(0)
	}
	code := m.Run()
	for _, f := range afterTests {
		f()
	}
	os.Exit(code)
}

func seccompChild(file string) int {
	data, _ := os.ReadFile(file)
	var g []guestproto.SockFilter
	json.Unmarshal(data, &g)
	filter := make([]unix.SockFilter, len(g))
	for i, f := range g {
		filter[i] = unix.SockFilter{Code: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	goruntime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 2
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return 3
	}
	res := map[string]string{}
	errStr := func(e unix.Errno) string {
		if e == 0 {
			return "ok"
		}
		return e.Error()
	}
	_, _, e := unix.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWUTS, 0, 0)
	res["unshare"] = errStr(e)
	_, _, e = unix.RawSyscall(unix.SYS_KEYCTL, 0, 0, 0)
	res["keyctl"] = errStr(e)
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	res["clone3"] = errStr(e)
	_, _, e = unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
	res["getpid"] = errStr(e)
	_, _, e = unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	res["personality-query"] = errStr(e)
	_, _, e = unix.RawSyscall(unix.SYS_PERSONALITY, 0x0400000, 0, 0) // ADDR_COMPAT_LAYOUT
	res["personality-other"] = errStr(e)
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM, 0)
	res["socket-inet"] = errStr(e)
	unix.Close(int(fd))
	_, _, e = unix.RawSyscall(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	res["socket-vsock"] = errStr(e)
	out, _ := json.Marshal(res)
	os.Stdout.Write(out)
	return 0
}

// TestSeccompFilter: the compiled allow-list refuses what the profile does
// not allow (EPERM), answers clone3 with ENOSYS, honours argument
// conditions and lets the rest through.
func TestSeccompFilter(t *testing.T) {
	sec, err := guestSecurity(runtime.Security{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(sec.Seccomp)
	f := t.TempDir() + "/filter.json"
	os.WriteFile(f, data, 0o600)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VESSEL_TEST_SECCOMP="+f)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("filtered child: %v: %s", err, out)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]string{
		"unshare": "operation not permitted", "keyctl": "operation not permitted",
		"clone3": "function not implemented", "getpid": "ok",
		"personality-query": "ok", "personality-other": "operation not permitted",
		"socket-inet": "ok", "socket-vsock": "operation not permitted",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s under the filter: %s, want %s", k, got[k], v)
		}
	}
	if len(sec.Capabilities) != 14 {
		t.Errorf("default capabilities %v, want the 14 of the default set", sec.Capabilities)
	}
}

// TestSeccompFilterMatchesProfile runs the compiled filter (x/net/bpf's
// interpreter) for every x86_64 call with arguments around every value the
// profile compares, and checks its answer against the profile read
// directly: the first rule naming the call whose conditions all hold.
func TestSeccompFilterMatchesProfile(t *testing.T) {
	for _, caps := range [][]string{nil, {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}, {}} {
		names := capabilityNames(runtime.Security{Capabilities: caps})
		profile, err := seccomp.Profile(names)
		if err != nil {
			t.Fatal(err)
		}
		filter, err := compileSeccomp(profile)
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]bpf.RawInstruction, len(filter))
		for i, f := range filter {
			raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
		}
		insts, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatal("the filter does not disassemble")
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatal(err)
		}
		samples := []uint64{0, 1, 0xffffffff, 1 << 32, 0xffffffffffffffff}
		for _, r := range profile.Syscalls {
			for _, a := range r.Args {
				samples = append(samples, a.Value, a.Value+1, a.Value-1, a.ValueTwo, a.Value|a.ValueTwo)
			}
		}
		want := func(name string, args [6]uint64) uint32 {
			for _, r := range profile.Syscalls {
				if !slices.Contains(r.Names, name) {
					continue
				}
				match := true
				for _, a := range r.Args {
					v := args[a.Index]
					switch a.Op {
					case specs.OpEqualTo:
						match = match && v == a.Value
					case specs.OpNotEqual:
						match = match && v != a.Value
					case specs.OpLessThan:
						match = match && v < a.Value
					case specs.OpLessEqual:
						match = match && v <= a.Value
					case specs.OpGreaterThan:
						match = match && v > a.Value
					case specs.OpGreaterEqual:
						match = match && v >= a.Value
					case specs.OpMaskedEqual:
						match = match && v&a.Value == a.ValueTwo
					}
				}
				if !match {
					continue
				}
				if r.Action == specs.ActAllow {
					return unix.SECCOMP_RET_ALLOW
				}
				e := uint(unix.EPERM)
				if r.ErrnoRet != nil {
					e = *r.ErrnoRet
				}
				return unix.SECCOMP_RET_ERRNO | uint32(e)
			}
			return unix.SECCOMP_RET_ERRNO | uint32(*profile.DefaultErrnoRet)
		}
		checked := 0
		for name, nr := range arch.X86_64.SyscallNames {
			for i, v := range samples {
				var args [6]uint64
				args[0], args[1] = v, samples[(i+1)%len(samples)]
				data := make([]byte, 64)
				// The interpreter loads words big-endian; the kernel's
				// seccomp_data is native (little-endian) with 64-bit
				// arguments as low word, high word.
				binary.BigEndian.PutUint32(data[0:], uint32(nr))
				binary.BigEndian.PutUint32(data[4:], uint32(arch.X86_64.ID))
				for j, a := range args {
					binary.BigEndian.PutUint32(data[16+8*j:], uint32(a))
					binary.BigEndian.PutUint32(data[20+8*j:], uint32(a>>32))
				}
				got, err := vm.Run(data)
				if err != nil {
					t.Fatal(err)
				}
				if w := want(name, args); uint32(got) != w {
					t.Fatalf("caps %v: %s(%#x, %#x): filter %#x, profile %#x", caps, name, args[0], args[1], uint32(got), w)
				}
				checked++
			}
		}
		t.Logf("caps %v: %d calls checked, %d instructions", caps, checked, len(filter))
	}
}
