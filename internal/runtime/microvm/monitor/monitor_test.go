package monitor

import (
	"bufio"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vessel.dev/vessel/internal/guestproto"
)

// fakeGuest plays the VM's side of the control channel at the process
// edge: it listens where QEMU's socket would be, takes the monitor's hello
// and then runs script on the raw connection.
func fakeGuest(t *testing.T, sock string, script func(c net.Conn, br *bufio.Reader)) chan error {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := br.ReadBytes('\n'); err != nil { // the hello
			done <- err
			return
		}
		script(c, br)
		done <- nil
	}()
	return done
}

// sandboxLayout is a sandbox directory a few levels below a root, so that
// a "../" escape lands inside the test's own directory.
func sandboxLayout(t *testing.T) (root string, cfg Config, cfgPath string) {
	root = t.TempDir()
	dir := filepath.Join(root, "a", "b", "sandbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg = Config{
		Control: filepath.Join(dir, "ctl.sock"), Listen: filepath.Join(dir, "mon.sock"),
		LogDir: filepath.Join(dir, "logs"), LogMaxBytes: 1 << 20,
		ExitDir: filepath.Join(dir, "exits"), StartedDir: filepath.Join(dir, "started"),
		ReadyFile: filepath.Join(dir, "ready"),
		Guest:     guestproto.Config{Containers: []guestproto.Container{{Name: "app", Disk: "img0", Args: []string{"true"}}}},
	}
	data, _ := json.Marshal(cfg)
	cfgPath = filepath.Join(dir, "monitor.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return root, cfg, cfgPath
}

func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// TestMonitorRefusesHostileNames: container names in the guest's messages
// that are not the sandbox's (paths leading out of its directories,
// absolute paths, unknown names) create or append to no file.
func TestMonitorRefusesHostileNames(t *testing.T) {
	root, cfg, cfgPath := sandboxLayout(t)
	outside := filepath.Join(root, "a", "victim.log")
	if err := os.WriteFile(outside, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostile := []string{"../../../escape", "../../../victim", "/abs/path", "ghost", "..", ".", "app/../../x", ""}
	done := fakeGuest(t, cfg.Control, func(c net.Conn, br *bufio.Reader) {
		enc := json.NewEncoder(c)
		enc.Encode(guestproto.Msg{Op: guestproto.EvReady})
		for _, n := range hostile {
			enc.Encode(guestproto.Msg{Op: guestproto.EvStarted, Container: n})
			enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: n, Stream: "stdout", Data: []byte("pwned")})
			enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: n, Stream: "stdout\nforged", Data: []byte("pwned")})
			enc.Encode(guestproto.Msg{Op: guestproto.EvExit, Container: n, Code: 3})
			enc.Encode(guestproto.Msg{Op: guestproto.EvState, State: []guestproto.ContainerState{{Name: n, Started: true, Exited: true, Code: 4}}})
		}
		// The one real container still works.
		enc.Encode(guestproto.Msg{Op: guestproto.EvStarted, Container: "app"})
		enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("hello")})
		enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "bogus", Data: []byte("forged stream")})
		enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("x\n2026-01-01T00:00:00Z stderr F forged line")})
		enc.Encode(guestproto.Msg{Op: guestproto.EvExit, Container: "app", Code: 0})
	})
	if err := Run(cfgPath); err != nil && err != io.EOF {
		t.Logf("monitor: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := files(t, root)
	want := []string{"a/b/sandbox/exits/app", "a/b/sandbox/logs/app.log", "a/b/sandbox/monitor.json",
		"a/b/sandbox/ready", "a/b/sandbox/started/app", "a/victim.log"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("files after hostile names:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if data, _ := os.ReadFile(outside); string(data) != "precious\n" {
		t.Errorf("a file outside the sandbox was written: %q", data)
	}
	log, _ := os.ReadFile(filepath.Join(cfg.LogDir, "app.log"))
	if lines := strings.Split(strings.TrimSpace(string(log)), "\n"); len(lines) != 1 || !strings.HasSuffix(lines[0], " stdout F hello") {
		t.Errorf("app.log = %q, want the one line \"hello\" on stdout", log)
	}
}

// TestMonitorBoundsMessages: a guest that sends an endless line does not
// make the monitor hold it; the line is dropped and the channel goes on.
func TestMonitorBoundsMessages(t *testing.T) {
	_, cfg, cfgPath := sandboxLayout(t)
	const total = 256 << 20
	done := fakeGuest(t, cfg.Control, func(c net.Conn, br *bufio.Reader) {
		enc := json.NewEncoder(c)
		enc.Encode(guestproto.Msg{Op: guestproto.EvReady})
		c.Write([]byte(`{"op":"log","c":"app","s":"stdout","d":"`))
		chunk := []byte(strings.Repeat("A", 1<<20))
		for n := 0; n < total; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		c.Write([]byte("\"}\n"))
		enc.Encode(guestproto.Msg{Op: guestproto.EvStarted, Container: "app"})
	})
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms goruntime.MemStats
		for {
			goruntime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	goruntime.GC()
	var base goruntime.MemStats
	goruntime.ReadMemStats(&base)
	Run(cfgPath)
	close(stop)
	<-sampled
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if grew := int64(peak.Load()) - int64(base.HeapAlloc); grew > 32<<20 {
		t.Errorf("the monitor's heap grew by %d MiB reading a %d MiB line; want it bounded", grew>>20, total>>20)
	}
	if _, err := os.Stat(filepath.Join(cfg.StartedDir, "app")); err != nil {
		t.Errorf("the message after the endless line was not handled: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(cfg.LogDir, "app.log")); len(data) > 0 {
		t.Errorf("the endless line was logged (%d bytes)", len(data))
	}
}

// TestMonitorReload: on SIGHUP the monitor takes its rewritten
// configuration on the same connection (how a warm VM is claimed): the
// guest gets a second hello with the new containers, the new log
// directory receives the new container's log, and a name of the old
// configuration is refused from then on. A configuration it cannot take
// is written to the ready file as the error, and no hello is sent for it.
func TestMonitorReload(t *testing.T) {
	root, cfg, cfgPath := sandboxLayout(t)
	newCfg := cfg
	newCfg.LogDir = filepath.Join(root, "a", "b", "task-logs")
	newCfg.Guest = guestproto.Config{Containers: []guestproto.Container{{Name: "web", Disk: "img0", Args: []string{"true"}}}}
	bad := newCfg
	bad.Guest = guestproto.Config{Containers: []guestproto.Container{{Name: "../web", Disk: "img0", Args: []string{"true"}}}}
	write := func(c Config) {
		data, _ := json.Marshal(c)
		if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
			t.Error(err)
		}
	}
	waitFile := func(path string) []byte {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if data, err := os.ReadFile(path); err == nil {
				return data
			}
		}
		t.Errorf("%s was not written", path)
		return nil
	}
	hellos := make(chan guestproto.Msg, 4)
	done := fakeGuest(t, cfg.Control, func(c net.Conn, br *bufio.Reader) {
		enc := json.NewEncoder(c)
		enc.Encode(guestproto.Msg{Op: guestproto.EvReady})
		waitFile(cfg.ReadyFile)
		os.Remove(cfg.ReadyFile)
		write(bad)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		if msg := waitFile(cfg.ReadyFile); !strings.Contains(string(msg), "could not take its new configuration") {
			t.Errorf("ready after a bad configuration = %q, want the monitor's error", msg)
		}
		os.Remove(cfg.ReadyFile)
		write(newCfg)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		line, err := br.ReadBytes('\n')
		var hello guestproto.Msg
		if err == nil {
			err = json.Unmarshal(line, &hello)
		}
		if err != nil {
			t.Errorf("the second hello: %v", err)
			return
		}
		hellos <- hello
		enc.Encode(guestproto.Msg{Op: guestproto.EvReady})
		waitFile(cfg.ReadyFile)
		enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: "app", Stream: "stdout", Data: []byte("old name")})
		enc.Encode(guestproto.Msg{Op: guestproto.EvLog, Container: "web", Stream: "stdout", Data: []byte("claimed")})
		enc.Encode(guestproto.Msg{Op: guestproto.EvExit, Container: "web", Code: 0})
	})
	if err := Run(cfgPath); err != nil && err != io.EOF {
		t.Logf("monitor: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case hello := <-hellos:
		if hello.Op != guestproto.OpHello || hello.Config == nil || len(hello.Config.Containers) != 1 || hello.Config.Containers[0].Name != "web" {
			t.Errorf("second hello = %+v, want a hello with container web", hello)
		}
	default:
		t.Fatal("no second hello")
	}
	if data, err := os.ReadFile(filepath.Join(newCfg.LogDir, "web.log")); err != nil || !strings.HasSuffix(strings.TrimSpace(string(data)), " stdout F claimed") {
		t.Errorf("web.log = %q, %v; want the line \"claimed\"", data, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.LogDir, "app.log")); err == nil {
		t.Error("a log of the old configuration's container was written after the reload")
	}
	if _, err := os.Stat(filepath.Join(cfg.ExitDir, "web")); err != nil {
		t.Errorf("web's exit: %v", err)
	}
}

// TestMonitorStoresStall: the guest's dump of a stalled set-up
// (EvStall) is written to StallFile as it came, for a person to read; a
// dump over MaxStall is dropped, and none is written without a StallFile.
func TestMonitorStoresStall(t *testing.T) {
	for _, withFile := range []bool{true, false} {
		_, cfg, cfgPath := sandboxLayout(t)
		if withFile {
			cfg.StallFile = filepath.Join(filepath.Dir(cfg.ReadyFile), "guest-stall.log")
			data, _ := json.Marshal(cfg)
			if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		dump := "--- goroutines of the guest agent\ngoroutine 1 [syscall]:\nvessel.dev/vessel/internal/guest.(*agent).setupTask(...)"
		done := fakeGuest(t, cfg.Control, func(c net.Conn, br *bufio.Reader) {
			enc := json.NewEncoder(c)
			enc.Encode(guestproto.Msg{Op: guestproto.EvStall, Error: dump})
			enc.Encode(guestproto.Msg{Op: guestproto.EvStall, Error: strings.Repeat("x", guestproto.MaxStall+1)})
			enc.Encode(guestproto.Msg{Op: guestproto.EvReady})
		})
		Run(cfgPath)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(filepath.Dir(cfg.ReadyFile), "guest-stall.log"))
		switch {
		case withFile && (err != nil || string(got) != dump):
			t.Errorf("guest-stall.log = %q, %v; want the first dump as sent", got, err)
		case !withFile && err == nil:
			t.Errorf("a dump was written without a StallFile: %q", got)
		}
		if _, err := os.Stat(cfg.ReadyFile); err != nil {
			t.Errorf("the ready after the dumps was not handled: %v", err)
		}
	}
}
