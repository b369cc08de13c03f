package runtimetest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// The security cases check, from inside the container, that a runtime
// gives a container exactly its runtime.Security: capabilities,
// no_new_privs, the seccomp allow-list, a read-only root, runAsNonRoot,
// supplemental groups and an init process; and that an image or a user
// cannot exhaust what is shared on the host (the per-uid process budget, a
// named pipe as /etc/passwd). sim runs no process and skips them.

var securityCases = []struct {
	name string
	fn   func(*suite)
}{
	{"SecurityCapabilities", testCapabilities},
	{"SecurityNoNewPrivsAndSeccomp", testNoNewPrivsSeccomp},
	{"SecurityNo32BitSyscalls", testNo32BitSyscalls},
	{"SecurityReadOnlyRoot", testReadOnlyRoot},
	{"SecurityRunAsNonRoot", testRunAsNonRoot},
	{"SecuritySupplementalGroups", testSupplementalGroups},
	{"SecurityUIDWithoutPasswdEntry", testUIDWithoutPasswd},
	{"SecurityInit", testInit},
	{"SecurityProcessBudgetPerSandbox", testProcessBudget},
	{"SecurityEtcPasswdNotRegular", testEtcPasswdNotRegular},
}

// capabilityBits are the bit numbers of the capabilities the cases name.
var capabilityBits = map[string]uint{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "CAP_FSETID": unix.CAP_FSETID,
	"CAP_FOWNER": unix.CAP_FOWNER, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_NET_RAW": unix.CAP_NET_RAW,
	"CAP_SETGID": unix.CAP_SETGID, "CAP_SETUID": unix.CAP_SETUID, "CAP_SETFCAP": unix.CAP_SETFCAP,
	"CAP_SETPCAP": unix.CAP_SETPCAP, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_KILL": unix.CAP_KILL, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
}

// capabilityMask is the mask /proc/<pid>/status shows for caps, less
// those the harness says the runtime withholds.
func (s *suite) capabilityMask(caps []string) uint64 {
	s.t.Helper()
	var m uint64
	for _, c := range caps {
		bit, ok := capabilityBits[c]
		if !ok {
			s.t.Fatalf("the suite knows no bit for %s", c)
		}
		m |= 1 << bit
	}
	for _, c := range s.WithheldCapabilities {
		m &^= 1 << capabilityBits[c]
	}
	return m
}

// statusField returns the value of a "Name:\tvalue" line of a
// /proc/<pid>/status dump in out, or "" when it has none.
func statusField(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// runOK runs script in a container "app" changed by change, and returns its
// stdout; a code other than 0 fails the test.
func (s *suite) runOK(change func(*runtime.ContainerSpec), script string) string {
	s.t.Helper()
	spec, st := s.run(func(sp *runtime.Spec) {
		if change != nil {
			change(&sp.Containers[0])
		}
	}, script)
	out, errs := s.output(spec, "app")
	if st.Code != 0 {
		s.t.Fatalf("code %d, want 0; stdout %q, stderr %q", st.Code, out, errs)
	}
	return out
}

func testCapabilities(s *suite) {
	s.needReal()
	defaults := (*task.Security)(nil).Capabilities()
	cases := []struct {
		name string
		caps []string
		want []string
	}{
		{"default set", nil, defaults},
		{"drop ALL", (&task.Security{CapDrop: []string{"ALL"}}).Capabilities(), nil},
		{"add SYS_PTRACE", (&task.Security{CapAdd: []string{"SYS_PTRACE"}}).Capabilities(), append(append([]string(nil), defaults...), "CAP_SYS_PTRACE")},
		{"drop NET_RAW and CHOWN", (&task.Security{CapDrop: []string{"NET_RAW", "chown"}}).Capabilities(), nil},
	}
	cases[3].want = []string{}
	for _, c := range defaults {
		if c != "CAP_NET_RAW" && c != "CAP_CHOWN" {
			cases[3].want = append(cases[3].want, c)
		}
	}
	for _, c := range cases {
		out := s.runOK(func(cs *runtime.ContainerSpec) { cs.Security.Capabilities = c.caps },
			`grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status`)
		want := fmt.Sprintf("%016x", s.capabilityMask(c.want))
		for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
			if got := statusField(out, f); got != want {
				s.t.Errorf("%s: %s %q, want %s (%v)", c.name, f, got, want, c.want)
			}
		}
	}
}

func testNoNewPrivsSeccomp(s *suite) {
	s.needReal()
	// unshare(CLONE_NEWUSER) needs no capability: only the seccomp
	// allow-list stops it.
	out := s.runOK(nil, `grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
if /bin/busybox unshare -r /bin/true 2>/tmp/err; then echo unshare-allowed; else echo "unshare-refused $(cat /tmp/err)"; fi`)
	if got := statusField(out, "NoNewPrivs"); got != "1" {
		s.t.Errorf("NoNewPrivs %q, want 1", got)
	}
	if s.NoSeccompStatus == "" {
		if got := statusField(out, "Seccomp"); got != "2" {
			s.t.Errorf("Seccomp %q, want 2 (filter mode)", got)
		}
	} else {
		s.t.Logf("Seccomp line not checked: %s", s.NoSeccompStatus)
	}
	if !strings.Contains(out, "unshare-refused") || !strings.Contains(out, "not permitted") {
		s.t.Errorf("unshare -r, a call outside the allow-list, was not refused with EPERM: %q", out)
	}
}

// int80Program is a static x86-64 ELF executable that calls getpid
// through the 32-bit entry point (int 0x80, i386's call 20) and exits
// with the call's result (its PID when the call is allowed; 255 for
// -EPERM, 218 for -ENOSYS).
func int80Program() []byte {
	code := []byte{
		0xb8, 0x14, 0x00, 0x00, 0x00, // mov eax, 20 (i386 getpid)
		0xcd, 0x80, // int 0x80
		0x89, 0xc7, // mov edi, eax
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (x86-64 exit)
		0x0f, 0x05, // syscall
	}
	const base, headers = 0x400000, 64 + 56
	size := uint64(headers + len(code))
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, elf.Header64{
		Ident:     [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     base + headers,
		Phoff:     64,
		Ehsize:    64,
		Phentsize: 56,
		Phnum:     1,
	})
	binary.Write(&b, binary.LittleEndian, elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: base, Paddr: base, Filesz: size, Memsz: size, Align: 0x1000,
	})
	b.Write(code)
	return b.Bytes()
}

// testNo32BitSyscalls: the seccomp allow-list covers the native ABI only
// (package seccomp): a getpid through int 0x80 is refused (EPERM or
// ENOSYS) or kills the process (SIGSYS), and never returns a PID.
func testNo32BitSyscalls(s *suite) {
	s.needReal()
	if goruntime.GOARCH != "amd64" {
		s.t.Skipf("the case's program is x86-64 code; this host is %s", goruntime.GOARCH)
	}
	if why := host32BitABI(s.t.TempDir()); why != "" {
		s.t.Skip(why)
	}
	var esc strings.Builder
	for _, c := range int80Program() {
		fmt.Fprintf(&esc, `\%03o`, c)
	}
	out := s.runOK(nil, `printf '`+esc.String()+`' > /tmp/int80 && chmod 755 /tmp/int80
/tmp/int80 & pid=$!; wait $pid; echo "pid=$pid code=$?"`)
	var pid, code int
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "pid=%d code=%d", &pid, &code); err != nil {
		s.t.Fatalf("output %q: %v", out, err)
	}
	switch code {
	case 255, 218, 128 + int(syscall.SIGSYS):
	default:
		s.t.Errorf("a getpid through int 0x80 (the 32-bit ABI) ended with %d (process %d): want it refused (255: EPERM, 218: ENOSYS) or killed (%d: SIGSYS)",
			code, pid, 128+int(syscall.SIGSYS))
	}
}

// host32BitABI runs int80Program on the host: "" when the host's kernel
// answers its call (there is something for the allow-list to refuse),
// else why not.
func host32BitABI(dir string) string {
	path := filepath.Join(dir, "int80")
	if err := os.WriteFile(path, int80Program(), 0o755); err != nil {
		return "writing the int 0x80 program: " + err.Error()
	}
	err := exec.Command(path).Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("this host's kernel offers no 32-bit system call entry (int 0x80 ends with %s on the host itself): nothing to refuse", ws.Signal())
		}
		return ""
	}
	if err != nil {
		return "running the int 0x80 program on the host: " + err.Error()
	}
	return ""
}

func testReadOnlyRoot(s *suite) {
	s.needReal()
	vol := s.volumeDir(0o777)
	out := s.runOK(func(c *runtime.ContainerSpec) {
		c.Security.ReadOnlyRootfs = true
		c.Mounts = []runtime.Mount{{Source: vol, Destination: "/data"}}
	}, `(touch /rootfile) 2>/dev/null && echo root-written || echo root-refused
(touch /tmp/f) 2>/dev/null && echo tmp-written || echo tmp-refused
(echo x > /data/f) && echo volume-written
(echo x > /dev/shm/f) && echo shm-written
cat /etc/hostname >/dev/null && echo etc-readable`)
	if want := "root-refused\ntmp-refused\nvolume-written\nshm-written\netc-readable\n"; out != want {
		s.t.Errorf("read-only root: stdout %q, want %q", out, want)
	}
	// The same container without the setting writes its root.
	out = s.runOK(nil, `touch /rootfile && echo root-written`)
	if out != "root-written\n" {
		s.t.Errorf("writable root: stdout %q", out)
	}
}

const nonRootMessage = "container has runAsNonRoot and image will run as root"

func testRunAsNonRoot(s *suite) {
	s.needReal()
	for _, user := range []string{"", "root", "0", "0:65534"} {
		spec := s.sandboxWith(func(sp *runtime.Spec) {
			sp.Containers[0].User = user
			sp.Containers[0].Security.RunAsNonRoot = true
		}, sh("app", "echo ran"))
		ctx, cancel := s.ctx()
		err := s.rt.Start(ctx, spec.ID, "app")
		cancel()
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(fmt.Sprint(err), nonRootMessage) {
			s.t.Errorf("user %q with runAsNonRoot: Start = %v, want an invalid-argument error saying %q", user, err, nonRootMessage)
		}
	}
	for _, user := range []string{"nobody", "1234", "65534:0"} {
		out := s.runOK(func(c *runtime.ContainerSpec) {
			c.User = user
			c.Security.RunAsNonRoot = true
		}, `id -u`)
		if out == "0\n" || out == "" {
			s.t.Errorf("user %q with runAsNonRoot ran as uid %q", user, out)
		}
	}
}

func testSupplementalGroups(s *suite) {
	s.needReal()
	out := s.runOK(func(c *runtime.ContainerSpec) {
		c.User = "nobody"
		c.Security.SupplementalGroups = []uint32{1234, 5678}
	}, `grep '^Groups:' /proc/self/status; echo "gid=$(id -g)"`)
	groups := strings.Fields(statusField(out, "Groups"))
	for _, g := range []string{"1234", "5678"} {
		found := false
		for _, f := range groups {
			found = found || f == g
		}
		if !found {
			s.t.Errorf("Groups %v lack supplemental group %s", groups, g)
		}
	}
	if !strings.Contains(out, "gid=65534\n") {
		s.t.Errorf("primary group changed: %q", out)
	}
}

// testUIDWithoutPasswd: a numeric user runs as that uid whether the
// image defines it or not; as with runc, Docker and the kubelet, a uid the
// image does not define gets gid 0 (never a gid equal to the uid), one it
// defines its passwd entry's group, and a numeric group given with it is
// taken as it is.
func testUIDWithoutPasswd(s *suite) {
	s.needReal()
	for _, c := range []struct{ user, want string }{
		{"4242", "4242:0"},
		{"4242:4343", "4242:4343"},
		{"65534", "65534:65534"},
	} {
		out := s.runOK(func(cs *runtime.ContainerSpec) { cs.User = c.user }, `echo "$(id -u):$(id -g)"`)
		if out != c.want+"\n" {
			s.t.Errorf("user %s (4242 is not in the image's /etc/passwd, 65534 is) runs as %q, want %s", c.user, out, c.want)
		}
	}
}

// testInit: with Init, PID 1 is the init and the app its child; an orphan
// is reaped (no zombie stays), and SIGTERM reaches the app.
func testInit(s *suite) {
	ex := s.execer()
	spec := s.sandboxWith(func(sp *runtime.Spec) { sp.Containers[0].Security.Init = true },
		sh("app", `echo "pid=$$ ppid=$PPID"
(sleep 0.2 & echo $! > /tmp/orphan)
trap 'echo got-term; exit 7' TERM
while :; do sleep 0.1; done`))
	id := spec.ID
	s.start(id, "app")
	// The orphan's parent is gone at once; it exits after 0.2 s and must
	// then be reaped by PID 1 (a zombie keeps its /proc entry). The script
	// waits up to 15 s.
	ctx, cancel := s.ctx()
	defer cancel()
	var stdout, stderr strings.Builder
	code, err := ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args: []string{"/bin/sh", "-c", `i=0
while [ ! -s /tmp/orphan ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
o=$(cat /tmp/orphan)
while [ -e /proc/$o ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
if [ -e /proc/$o ]; then echo "orphan $o: $(grep State /proc/$o/status)"; exit 1; fi
echo reaped`},
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		s.t.Fatalf("Exec: %v", err)
	}
	if code != 0 {
		s.t.Errorf("an orphan of the app was not reaped: code %d, %q %q", code, stdout.String(), stderr.String())
	}
	s.signal(id, "app", syscall.SIGTERM)
	st := s.wait(id, "app")
	out, errs := s.output(spec, "app")
	if st.Code != 7 || !strings.Contains(out, "got-term\n") {
		s.t.Errorf("SIGTERM to the container: code %d, stdout %q, stderr %q; want 7 and got-term from the app", st.Code, out, errs)
	}
	var pid, ppid int
	if _, err := fmt.Sscanf(out, "pid=%d ppid=%d", &pid, &ppid); err != nil {
		s.t.Fatalf("app's output %q: %v", out, err)
	}
	if pid == 1 || ppid != 1 {
		s.t.Errorf("the app is pid %d with parent %d, want the child of PID 1 (the init)", pid, ppid)
	}
}

// testProcessBudget: two sandboxes whose containers run as the same uid
// each get their own process budget (the pids limit), none shared through
// the uid's RLIMIT_NPROC on the host.
func testProcessBudget(s *suite) {
	s.needReal()
	// A uid no host process uses; a low RLIMIT_NOFILE soft limit, which an
	// RLIMIT_NPROC derived from it would make a small shared budget.
	uid := strconv.Itoa(40000 + rand.IntN(20000))
	const n = 48
	script := fmt.Sprintf(`( i=0; while [ $i -lt %d ]; do sleep 1000 & i=$((i+1)); done ) 2>/dev/null
n=0; for d in /proc/[0-9]*; do n=$((n+1)); done
echo "procs=$n"`, n)
	change := func(sp *runtime.Spec) {
		sp.PidsLimit = 100
		sp.Containers[0].User = uid
		sp.Containers[0].NofileSoft = 64
	}
	first := s.sandboxWith(change, sh("app", script+"\nwhile :; do sleep 1; done"))
	s.start(first.ID, "app")
	var out string
	// The log appears with the first line (a micro-VM's monitor makes it
	// then), so a missing file is not yet an error.
	s.logged(first.ID, "app", "procs=")
	out, _ = s.output(first, "app")
	second := s.sandboxWith(change, sh("app", script))
	s.start(second.ID, "app")
	st := s.wait(second.ID, "app")
	out2, errs := s.output(second, "app")
	if st.Code != 0 {
		s.t.Fatalf("second sandbox: code %d, stdout %q, stderr %q", st.Code, out2, errs)
	}
	for i, o := range []string{out, out2} {
		var got int
		if _, err := fmt.Sscanf(strings.TrimSpace(o), "procs=%d", &got); err != nil {
			s.t.Fatalf("sandbox %d: output %q: %v", i+1, o, err)
		}
		s.t.Logf("sandbox %d of uid %s ran %d processes at once", i+1, uid, got)
		if got < n {
			s.t.Errorf("sandbox %d of uid %s ran only %d processes, want at least %d (each sandbox has a pids limit of 100 of its own)", i+1, uid, got, n)
		}
	}
}

// testEtcPasswdNotRegular: an image whose /etc/passwd or /etc/group is a
// named pipe (which blocks whoever opens it) or a link to an endless
// device neither hangs the runtime nor blocks the sandbox's Delete: Create
// or Start fails with an error, or the container runs; Delete returns and
// leaves nothing.
func testEtcPasswdNotRegular(s *suite) {
	s.needReal()
	fifo := func(name string) string {
		layer := filepath.Join(s.t.TempDir(), "layer")
		if err := os.MkdirAll(filepath.Join(layer, "etc"), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(layer, "etc", name), 0o644); err != nil {
			s.t.Fatal(err)
		}
		return layer
	}
	urandom := filepath.Join(s.t.TempDir(), "layer")
	if err := os.MkdirAll(filepath.Join(urandom, "etc"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Symlink("/dev/urandom", filepath.Join(urandom, "etc", "passwd")); err != nil {
		s.t.Fatal(err)
	}
	passwdFIFO, groupFIFO := fifo("passwd"), fifo("group")
	// A volume over /etc whose passwd is a named pipe: nothing in the image
	// shows it, the runtime meets it only when the container starts.
	etcVolume := s.volumeDir(0o755)
	if err := unix.Mkfifo(filepath.Join(etcVolume, "passwd"), 0o644); err != nil {
		s.t.Fatal(err)
	}
	cases := []struct {
		name, layer, user string
		mounts            []runtime.Mount
	}{
		{"passwd FIFO, image's user", passwdFIFO, "", nil},
		{"passwd FIFO, user by name", passwdFIFO, "nobody", nil},
		{"passwd FIFO, user by number", passwdFIFO, "1234", nil},
		{"group FIFO, group by name", groupFIFO, "nobody:nogroup", nil},
		{"group FIFO, user by number", groupFIFO, "1234:1234", nil},
		{"passwd a link to /dev/urandom, user by number", urandom, "1234", nil},
		{"passwd FIFO in a volume over /etc, user by number", "", "1234", []runtime.Mount{{Source: etcVolume, Destination: "/etc"}}},
	}
	for _, c := range cases {
		s.n++
		id := fmt.Sprintf("rt-%s-%d-%d", time.Now().Format("150405"), os.Getpid(), s.n)
		spec := runtime.Spec{ID: id, MilliCPU: 250, MemoryMiB: 256, LogDir: filepath.Join(s.logs, id),
			Containers: []runtime.ContainerSpec{{Name: "app", Image: s.Image, User: c.user, Args: []string{"/bin/sh", "-c", "echo ran"}}}}
		if s.Prepare != nil {
			s.Prepare(s.t, &spec)
		}
		if c.layer != "" {
			spec.Containers[0].Layers = append(spec.Containers[0].Layers, c.layer)
		}
		spec.Containers[0].Mounts = c.mounts
		// Twice the suite's timeout: the runtime must bound its own wait.
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.Timeout)
		err := s.rt.Create(ctx, spec)
		created := err == nil
		if err != nil && !errdefs.IsInvalidArgument(err) {
			s.t.Errorf("%s: Create = %v, want success or an invalid-argument error", c.name, err)
		}
		if created {
			err = s.rt.Start(ctx, id, "app")
			if err == nil {
				st, werr := s.rt.Wait(ctx, id, "app")
				s.t.Logf("%s: the container ran: %+v, %v", c.name, st, werr)
				if errors.Is(werr, context.DeadlineExceeded) {
					s.t.Errorf("%s: the container never ended", c.name)
				}
			} else if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				s.t.Errorf("%s: Start hung until its deadline: %v", c.name, err)
			}
		}
		s.t.Logf("%s: %v", c.name, err)
		cancel()
		if created {
			ctx, cancel := s.ctx()
			if err := s.rt.Delete(ctx, id); err != nil {
				s.t.Errorf("%s: Delete = %v", c.name, err)
			}
			cancel()
		}
		s.leftovers(id)
	}
}
