package monitor

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/guestproto/guestprototest"
)

var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [PF] [^\n]*$`)

// FuzzMonitor runs the host-side monitor against a fake VM that, after the
// hello, sends the fuzzed stream and closes. The guest is untrusted.
// Properties: the monitor never panics and returns once the channel closes;
// it creates files only in its log, exit and started directories and the
// ready file, named after the sandbox's containers ("app", "side"); a file
// outside is untouched; every line of a log file is a CRI line the monitor
// wrote (a guest cannot forge lines).
func FuzzMonitor(f *testing.F) {
	for _, s := range guestprototest.Streams() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "sandbox")
		cfg, raw, _, done, victim := startHostileMonitor(t, base, 4096, "app", "side")
		raw.Write(stream)
		raw.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the monitor did not return within 20s of the channel closing")
		}

		if got, _ := os.ReadFile(victim); string(got) != "precious" {
			t.Fatalf("the guest reached a host file outside the sandbox: it now holds %q", got)
		}
		check := func(d string, allowed ...string) {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if !slices.Contains(allowed, e.Name()) {
					t.Fatalf("the monitor made %s in %s", e.Name(), d)
				}
			}
		}
		check(base, "sandbox", "victim", "control.sock", "monitor.sock")
		check(dir, "logs", "exits", "started", "ready", "monitor.json")
		check(cfg.ExitDir, "app", "side")
		check(cfg.StartedDir, "app", "side")
		check(cfg.LogDir, "app.log", "side.log")
		for _, name := range []string{"app.log", "side.log"} {
			b, err := os.ReadFile(filepath.Join(cfg.LogDir, name))
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
				if line != "" && !criLine.MatchString(line) {
					t.Fatalf("log %s has a line the monitor did not write: %q", name, line)
				}
			}
		}
	})
}
