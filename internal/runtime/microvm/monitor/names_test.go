package monitor

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/guestproto"
)

// TestMonitorTrustsNoGuestName: the guest is on the sandbox's side of
// the wall, so the host-side monitor must not let a container name the
// guest sends become a path outside its log, exit and started
// directories, nor a log line that is not its own.
func TestMonitorTrustsNoGuestName(t *testing.T) {
	base := t.TempDir()
	cfg, raw, g, done, victim := startHostileMonitor(t, base, 1<<20, "app")
	up := "../../victim" // from exits/, started/ or logs/ to base/victim
	for _, m := range []guestproto.Msg{
		{Op: guestproto.EvStarted, Container: up},
		{Op: guestproto.EvLog, Container: "../../victim-log", Stream: "stdout", Data: []byte("x")},
		{Op: guestproto.EvExit, Container: up, Code: 1},
		{Op: guestproto.EvState, State: []guestproto.ContainerState{{Name: up, Started: true, Exited: true}}},
		{Op: guestproto.EvLog, Container: "app", Stream: "stdout\n2020-01-01T00:00:00Z stderr F forged", Data: []byte("y")},
		{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("line\n2020-01-01T00:00:00Z stderr F forged")},
		{Op: guestproto.EvLog, Container: "ghost", Stream: "stdout", Data: []byte("z")},
		{Op: guestproto.EvExit, Container: "app", Code: 3},
	} {
		if err := g.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	if err := <-done; err == nil {
		t.Log("monitor returned")
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Errorf("a name from the guest reached a host file outside the sandbox: victim now holds %q", got)
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if n := e.Name(); n != "sandbox" && n != "victim" && !strings.HasSuffix(n, ".sock") {
			t.Errorf("the monitor made %s outside its directories", n)
		}
	}
	for _, d := range []string{cfg.LogDir, cfg.ExitDir, cfg.StartedDir} {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			if n := e.Name(); n != "app" && n != "app.log" {
				t.Errorf("%s: file %q for a container the sandbox does not have", d, n)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.ExitDir, "app")); err != nil {
		t.Errorf("the real container's exit was not written: %v", err)
	}
	logData, _ := os.ReadFile(filepath.Join(cfg.LogDir, "app.log"))
	for _, line := range strings.Split(strings.TrimSuffix(string(logData), "\n"), "\n") {
		if line == "" {
			continue // the monitor may drop a bad log message whole
		}
		if f := strings.SplitN(line, " ", 4); len(f) < 3 || f[1] != "stdout" || strings.HasPrefix(line, "2020-") {
			t.Errorf("the guest forged a log line: %q in\n%s", line, logData)
		}
	}
}

// startHostileMonitor runs the host-side monitor of a sandbox under base
// (base/sandbox) with these containers, on a control channel the test
// plays the guest on, and a host file base/victim a hostile guest goes
// after. It returns once the monitor said hello; done receives what
// Run returned.
func startHostileMonitor(t *testing.T, base string, logMax int64, containers ...string) (cfg Config, raw net.Conn, g *guestproto.Conn, done <-chan error, victim string) {
	t.Helper()
	dir := filepath.Join(base, "sandbox")
	cfg = Config{
		Control: filepath.Join(base, "control.sock"), Listen: filepath.Join(base, "monitor.sock"),
		LogDir: filepath.Join(dir, "logs"), ExitDir: filepath.Join(dir, "exits"), StartedDir: filepath.Join(dir, "started"),
		ReadyFile: filepath.Join(dir, "ready"), LogMaxBytes: logMax,
	}
	for _, name := range containers {
		cfg.Guest.Containers = append(cfg.Guest.Containers, guestproto.Container{Name: name})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "monitor.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", cfg.Control)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() { ch <- Run(cfgPath) }()
	raw, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	g = guestproto.NewConn(raw, raw)
	if hello, err := g.Recv(); err != nil || hello.Op != guestproto.OpHello {
		t.Fatalf("hello: %+v, %v", hello, err)
	}
	return cfg, raw, g, ch, victim
}
