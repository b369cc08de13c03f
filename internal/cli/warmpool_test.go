package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/testutil"
)

// TestHostListShowsWarmPools: `vessel host ls` has a POOLS column
// (RUNTIME READY/TARGET) and `vessel host describe` the pools' details.
func TestHostListShowsWarmPools(t *testing.T) {
	e := startVesselWith(t, map[string]int{"sim": 2})
	testutil.Eventually(t, 10*time.Second, func() error {
		out := e.must(t, "host", "ls")
		if !strings.Contains(out, "POOLS") {
			return fmt.Errorf("no POOLS column:\n%s", out)
		}
		if row := strings.Join(rowOf(out, "h1"), " "); !strings.HasSuffix(row, "sim 2/2") {
			return fmt.Errorf("host h1's row %q does not end with its pool sim 2/2:\n%s", row, out)
		}
		return nil
	})
	out := e.must(t, "host", "describe", "h1")
	if !strings.Contains(out, "Warm pools:      sim 2/2") || !strings.Contains(out, "sim:               2 ready of 2, 0 MiB held, 0 hits, 0 misses") {
		t.Errorf("host describe does not detail the pool:\n%s", out)
	}
}

// TestWarmPoolFlagRefused: a malformed --warm-pool stops vessel server and
// vessel agent before they start anything, saying what is accepted.
func TestWarmPoolFlagRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--warm-pool", "runc"}, "use RUNTIME=N"},
		{[]string{"server", "--warm-pool", "runc=-2"}, "0 (off) or more"},
		{[]string{"server", "--warm-pool", "docker=1"}, "runtime \"docker\" is not known"},
		{[]string{"server", "--warm-pool", "runc=1", "--no-agent"}, "--no-agent"},
		{[]string{"agent", "--server", "http://127.0.0.1:9", "--warm-pool", "runc=x"}, "not a whole number"},
		{[]string{"server", "--warm-pool", "gvisor:3/8=1"}, "valid cpu values are"},
	} {
		root := NewRootCommand()
		var out, errOut syncBuffer
		root.SetArgs(append(tc.args, "--data-dir", dir))
		root.SetOut(&out)
		root.SetErr(&errOut)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vessel %s: %v; want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
