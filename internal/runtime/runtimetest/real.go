package runtimetest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/runtime"
)

// The cases of this file run real processes; a runtime without them (sim)
// skips them.

func (s *suite) needReal() {
	s.t.Helper()
	if !s.Real {
		s.t.Skip("sim runs no process")
	}
}

// output returns what a container wrote to stdout and stderr, read from its
// log file <LogDir>/<name>.log in the CRI format (runtime.LogLine), with
// partial lines joined.
func (s *suite) output(spec runtime.Spec, name string) (stdout, stderr string) {
	s.t.Helper()
	path := filepath.Join(spec.LogDir, name+".log")
	data, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatalf("container log: %v", err)
	}
	var out, errs strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 {
			s.t.Fatalf("log line %q is not in the CRI format %q", sc.Text(), runtime.LogLine)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			s.t.Fatalf("log line %q: time: %v", sc.Text(), err)
		}
		text := ""
		if len(f) == 4 {
			text = f[3]
		}
		if f[2] == "F" {
			text += "\n"
		}
		switch f[1] {
		case "stdout":
			out.WriteString(text)
		case "stderr":
			errs.WriteString(text)
		default:
			s.t.Fatalf("log line %q: stream %q", sc.Text(), f[1])
		}
	}
	return out.String(), errs.String()
}

// run creates a sandbox with one container "app" running script, starts it
// and waits for its end.
func (s *suite) run(change func(*runtime.Spec), script string) (runtime.Spec, runtime.ExitStatus) {
	s.t.Helper()
	spec := s.sandboxWith(change, sh("app", script))
	s.start(spec.ID, "app")
	return spec, s.wait(spec.ID, "app")
}

func testOutput(s *suite) {
	s.needReal()
	spec, st := s.run(nil, "echo hello; echo oops >&2; echo world; exit 4")
	if st.Code != 4 {
		s.t.Errorf("code %d, want 4", st.Code)
	}
	out, errs := s.output(spec, "app")
	if out != "hello\nworld\n" || errs != "oops\n" {
		s.t.Errorf("stdout %q, stderr %q; want \"hello\\nworld\\n\" and \"oops\\n\"", out, errs)
	}
}

func testEnv(s *suite) {
	s.needReal()
	spec, st := s.run(func(sp *runtime.Spec) {
		sp.Containers[0].Env = []string{"GREETING=hello there"}
		sp.Containers[0].WorkingDir = "/tmp"
		sp.Containers[0].User = "nobody"
	}, `echo "greeting=$GREETING"; pwd; echo "ids=$(id -u):$(id -g)"`)
	if st.Code != 0 {
		s.t.Fatalf("code %d, want 0", st.Code)
	}
	out, _ := s.output(spec, "app")
	want := "greeting=hello there\n/tmp\nids=65534:65534\n"
	if out != want {
		s.t.Errorf("stdout %q, want %q", out, want)
	}
}

// testHostname: the sandbox's hostname is its containers' UTS name and
// their HOSTNAME, unless a container sets HOSTNAME itself (as container
// runtimes do).
func testHostname(s *suite) {
	s.needReal()
	script := `echo "$(cat /proc/sys/kernel/hostname) $(env | grep ^HOSTNAME=)"`
	for _, c := range []struct{ env, want string }{
		{"", "web-7f9c4d-x2x HOSTNAME=web-7f9c4d-x2x\n"},
		{"HOSTNAME=mine", "web-7f9c4d-x2x HOSTNAME=mine\n"},
	} {
		spec, st := s.run(func(sp *runtime.Spec) {
			sp.Hostname = "web-7f9c4d-x2x"
			if c.env != "" {
				sp.Containers[0].Env = []string{c.env}
			}
		}, script)
		if st.Code != 0 {
			s.t.Fatalf("code %d, want 0", st.Code)
		}
		if out, _ := s.output(spec, "app"); out != c.want {
			s.t.Errorf("with env %q: stdout %q, want %q", c.env, out, c.want)
		}
	}
}

func testExec(s *suite) {
	s.needReal()
	ex, ok := s.rt.(runtime.Execer)
	if !ok {
		s.t.Skip("runtime has no exec")
	}
	id := s.sandbox(sh("app", service))
	s.start(id, "app")
	var stdout, stderr bytes.Buffer
	ctx, cancel := s.ctx()
	defer cancel()
	code, err := ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args:   []string{"/bin/sh", "-c", "echo out-$X; echo err >&2; exit 3"},
		Env:    []string{"X=1"},
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		s.t.Fatalf("Exec: %v", err)
	}
	if code != 3 || stdout.String() != "out-1\n" || stderr.String() != "err\n" {
		s.t.Errorf("Exec: code %d, stdout %q, stderr %q; want 3, \"out-1\\n\", \"err\\n\"", code, stdout.String(), stderr.String())
	}
	if _, err := ex.Exec(ctx, id, "nope", runtime.ExecProcess{Args: []string{"true"}}); err == nil {
		s.t.Errorf("Exec in a missing container succeeded")
	}
	s.signal(id, "app", syscall.SIGTERM)
	s.wait(id, "app")
}

// execer returns the runtime's Execer, or skips the case.
func (s *suite) execer() runtime.Execer {
	s.t.Helper()
	s.needReal()
	ex, ok := s.rt.(runtime.Execer)
	if !ok {
		s.t.Skip("runtime has no exec")
	}
	return ex
}

func testExecStdin(s *suite) {
	ex := s.execer()
	id := s.sandbox(sh("app", service))
	s.start(id, "app")
	ctx, cancel := s.ctx()
	defer cancel()
	// cat echoes its input and ends at the input's end.
	var stdout, stderr bytes.Buffer
	code, err := ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args:  []string{"cat"},
		Stdin: strings.NewReader("line one\nline two\n"), Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		s.t.Fatalf("Exec cat: %v", err)
	}
	if code != 0 || stdout.String() != "line one\nline two\n" {
		s.t.Errorf("Exec cat: code %d, stdout %q, stderr %q; want 0 and the input back", code, stdout.String(), stderr.String())
	}
	// Input that arrives in pieces, read as it comes, and an exit code.
	inR, inW := io.Pipe()
	go func() {
		inW.Write([]byte("first\n"))
		time.Sleep(200 * time.Millisecond)
		inW.Write([]byte("second\n"))
		inW.Close()
	}()
	stdout.Reset()
	code, err = ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args:  []string{"sh", "-c", "read a; read b; echo \"$b-$a\"; read c || exit 7"},
		Stdin: inR, Stdout: &stdout,
	})
	if err != nil {
		s.t.Fatalf("Exec read: %v", err)
	}
	if code != 7 || stdout.String() != "second-first\n" {
		s.t.Errorf("Exec read: code %d, stdout %q; want 7, \"second-first\\n\"", code, stdout.String())
	}
	// A signalled command's code, and a command that ends without reading
	// an input that never ends.
	never, _ := io.Pipe()
	defer never.Close()
	code, err = ex.Exec(ctx, id, "app", runtime.ExecProcess{Args: []string{"/bin/sh", "-c", "kill -9 $$"}, Stdin: never})
	if err != nil || code != 137 {
		s.t.Errorf("Exec kill -9: code %d, err %v; want 137", code, err)
	}
	s.signal(id, "app", syscall.SIGTERM)
	s.wait(id, "app")
	if _, err := ex.Exec(ctx, id, "app", runtime.ExecProcess{Args: []string{"true"}}); err == nil {
		s.t.Errorf("Exec in an exited container succeeded")
	}
}

func testExecTTY(s *suite) {
	ex := s.execer()
	id := s.sandbox(sh("app", service))
	s.start(id, "app")
	ctx, cancel := s.ctx()
	defer cancel()
	resize := make(chan runtime.TerminalSize, 1)
	resize <- runtime.TerminalSize{Width: 91, Height: 27}
	var stdout, stderr bytes.Buffer
	code, err := ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args: []string{"/bin/sh", "-c", "stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo on-a-tty; echo to-stderr >&2; exit 4"},
		TTY:  true, Resize: resize, Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		s.t.Fatalf("Exec with a TTY: %v", err)
	}
	out := strings.ReplaceAll(stdout.String(), "\r\n", "\n")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 4 || len(lines) != 3 || lines[0] != "27 91" || lines[1] != "on-a-tty" || lines[2] != "to-stderr" {
		s.t.Errorf("Exec with a TTY: code %d, output %q; want 4, \"27 91\", on-a-tty and to-stderr", code, stdout.String())
	}
	if stderr.Len() != 0 {
		s.t.Errorf("Exec with a TTY wrote %q to Stderr; the terminal carries all output", stderr.String())
	}
	// Input typed on the terminal reaches the command; its echo comes back.
	var typed bytes.Buffer
	inR, inW := io.Pipe()
	defer inW.Close()
	go inW.Write([]byte("typed\r"))
	code, err = ex.Exec(ctx, id, "app", runtime.ExecProcess{
		Args: []string{"/bin/sh", "-c", "read x; echo \"got-$x\""},
		TTY:  true, Stdin: inR, Stdout: &typed,
	})
	if err != nil || code != 0 || !strings.Contains(typed.String(), "got-typed") {
		s.t.Errorf("Exec with a TTY and input: code %d, err %v, output %q; want 0 and got-typed", code, err, typed.String())
	}
	s.signal(id, "app", syscall.SIGTERM)
	s.wait(id, "app")
}

func testOOM(s *suite) {
	s.needReal()
	// dd allocates a 256 MiB buffer and fills it, in a 64 MiB sandbox.
	_, st := s.run(func(sp *runtime.Spec) { sp.MemoryMiB = 64 },
		"dd if=/dev/zero of=/dev/null bs=256M count=1")
	if st.Code != 137 || !st.OOMKilled {
		s.t.Fatalf("code %d, OOMKilled %v; want 137 and true", st.Code, st.OOMKilled)
	}
}

func testCPUQuota(s *suite) {
	s.needReal()
	// A busy process in a 0.25 vCPU sandbox; the container measures its CPU
	// time (fields 14 and 15 of /proc/PID/stat, in ticks of 1/100 s) against
	// /proc/uptime over about a second.
	script := `yes > /dev/null & p=$!
sleep 0.3
read -r u0 rest < /proc/uptime
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ ut0 st0 rest < /proc/$p/stat
sleep 1
read -r u1 rest < /proc/uptime
read -r _ _ _ _ _ _ _ _ _ _ _ _ _ ut1 st1 rest < /proc/$p/stat
echo "$((ut1 + st1 - ut0 - st0)) $u0 $u1"
kill $p`
	if s.HostCPU != nil {
		testCPUQuotaFromHost(s)
		return
	}
	spec, st := s.run(nil, script)
	out, errs := s.output(spec, "app")
	if st.Code != 0 {
		s.t.Fatalf("code %d; stdout %q, stderr %q", st.Code, out, errs)
	}
	var ticks int
	var u0, u1 float64
	if _, err := fmt.Sscanf(out, "%d %g %g", &ticks, &u0, &u1); err != nil || u1 <= u0 {
		s.t.Fatalf("measure: %q: %v", out, err)
	}
	share := float64(ticks) / 100 / (u1 - u0)
	s.t.Logf("a busy loop in a 0.25 vCPU sandbox used %.0f%% of a CPU", share*100)
	if share >= 0.40 {
		s.t.Errorf("a busy loop in a 0.25 vCPU sandbox used %.0f%% of a CPU, want < 40%%", share*100)
	}
}

func testPidsLimit(s *suite) {
	s.needReal()
	// A subshell starts background sleeps until fork fails, then the main
	// shell counts the processes of its PID namespace.
	script := `( i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done ) 2>/dev/null
n=0; for d in /proc/[0-9]*; do n=$((n+1)); done
echo "$n"`
	spec, st := s.run(func(sp *runtime.Spec) { sp.PidsLimit = 32 }, script)
	out, errs := s.output(spec, "app")
	if st.Code != 0 {
		s.t.Fatalf("code %d; stdout %q, stderr %q", st.Code, out, errs)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		s.t.Fatalf("process count %q: %v", out, err)
	}
	s.t.Logf("%d processes ran at once in a sandbox limited to 32", n)
	if n > 32 || n < 8 {
		s.t.Errorf("%d processes ran at once with PidsLimit 32, want between 8 and 32", n)
	}
}

func testNetwork(s *suite) {
	s.needReal()
	if s.Network == nil {
		s.t.Skip("the harness provides no network")
	}
	var addr string
	server := s.sandboxWith(func(sp *runtime.Spec) { addr = s.Network(s.t, sp).String() },
		// busybox's nc -l whose stdin is at its end may quit right after
		// accepting, before it reads what came (0.5% of runs on an idle
		// host, a few percent under load): its stdin is a pipe that stays
		// open instead, and it ends with the connection.
		sh("app", "mkfifo /tmp/in; sleep 1000 > /tmp/in & exec nc -l -p 8080 < /tmp/in"))
	s.start(server.ID, "app")
	client := s.sandboxWith(func(sp *runtime.Spec) { s.Network(s.t, sp) },
		sh("app", fmt.Sprintf(`i=0; while [ $i -lt 100 ]; do
  echo hello-over-tcp | nc %s 8080 && exit 0
  i=$((i+1)); sleep 0.1
done; exit 1`, addr)))
	s.start(client.ID, "app")
	if st := s.wait(client.ID, "app"); st.Code != 0 {
		_, errs := s.output(client, "app")
		s.t.Fatalf("client: code %d, stderr %q", st.Code, errs)
	}
	if st := s.wait(server.ID, "app"); st.Code != 0 {
		s.t.Fatalf("server: code %d", st.Code)
	}
	// The monitor may write the exit code a moment before the last output
	// reaches the log file.
	var out string
	for deadline := time.Now().Add(s.Timeout); ; time.Sleep(50 * time.Millisecond) {
		if out, _ = s.output(server, "app"); out != "" || time.Now().After(deadline) {
			break
		}
	}
	if out != "hello-over-tcp\n" {
		_, serr := s.output(server, "app")
		cout, cerr := s.output(client, "app")
		s.t.Errorf("server received %q (stderr %q), want \"hello-over-tcp\\n\"; client stdout %q stderr %q", out, serr, cout, cerr)
	}
}

// testCPUQuotaFromHost runs a busy loop and reads the sandbox's CPU time
// from the host over about two seconds.
func testCPUQuotaFromHost(s *suite) {
	id := s.sandbox(sh("app", "yes > /dev/null"))
	s.start(id, "app")
	time.Sleep(500 * time.Millisecond)
	c0, w0 := s.HostCPU(s.t, id), time.Now()
	time.Sleep(2 * time.Second)
	c1, w1 := s.HostCPU(s.t, id), time.Now()
	share := float64(c1-c0) / float64(w1.Sub(w0))
	s.t.Logf("a busy loop in a 0.25 vCPU sandbox used %.0f%% of a CPU (host accounting)", share*100)
	if share >= 0.40 {
		s.t.Errorf("a busy loop in a 0.25 vCPU sandbox used %.0f%% of a CPU, want < 40%%", share*100)
	}
	if share < 0.05 {
		s.t.Errorf("a busy loop used only %.0f%% of a CPU: the measurement is broken", share*100)
	}
}
