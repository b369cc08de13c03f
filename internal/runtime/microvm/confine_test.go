package microvm

import (
	"encoding/json"
	"os"
	"os/exec"
	goruntime "runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guest"
	"vessel.dev/vessel/internal/runtime"
)

// TestMain lets the test binary serve as a process that loads a compiled
// filter and reports what its calls return.
func TestMain(m *testing.M) {
	if f := os.Getenv("VESSEL_TEST_SECCOMP"); f != "" {
		os.Exit(seccompChild(f))
	}
	os.Exit(m.Run())
}

func seccompChild(file string) int {
	data, _ := os.ReadFile(file)
	var g []guest.SockFilter
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
