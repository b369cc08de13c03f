package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"vessel.dev/vessel/internal/guestproto"
)

// watchStall sends the host a dump of the guest (guestproto.EvStall) if a
// set-up has not ended (done closed) within guestproto.StallAfter: where
// its goroutine waits, its threads' kernel stacks, and the processes in D
// state. The set-up runs in the serve loop, so a stalled one leaves the
// host with no answer at all; the dump says where it stalled. It goes
// over the control channel, not the console, whose writes may be what
// stalls.
func (a *agent) watchStall(done <-chan struct{}) {
	select {
	case <-done:
		return
	case <-time.After(guestproto.StallAfter):
	}
	// On the console too: should the control channel be what stalls,
	// this line is all the host gets.
	logf("the set-up of the host's hello has not ended after %v; a dump goes to the host; threads: %s", guestproto.StallAfter, threadWaits())
	var b strings.Builder
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	b.WriteString("--- goroutines of the guest agent\n")
	b.Write(buf[:n])
	b.WriteString("\n--- threads of the guest agent (kernel stacks)\n")
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, t := range tasks {
		wchan, _ := os.ReadFile(t + "/wchan")
		stack, _ := os.ReadFile(t + "/stack")
		fmt.Fprintf(&b, "%s %s wchan=%s\n%s", t, procState(t), wchan, stack)
	}
	b.WriteString("\n--- processes in D state\n")
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if procState(p) == "D" {
			comm, _ := os.ReadFile(p + "/comm")
			wchan, _ := os.ReadFile(p + "/wchan")
			stack, _ := os.ReadFile(p + "/stack")
			fmt.Fprintf(&b, "%s (%s) wchan=%s\n%s", p, strings.TrimSpace(string(comm)), wchan, stack)
		}
	}
	for _, f := range []string{"/proc/loadavg", "/proc/interrupts", "/proc/mounts"} {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "\n--- %s\n%s", f, data)
	}
	dump := b.String()
	if len(dump) > guestproto.MaxStall {
		dump = dump[:guestproto.MaxStall]
	}
	a.send(guestproto.Msg{Op: guestproto.EvStall, Error: dump})
}

// procState is the state letter of /proc/<pid> or /proc/<pid>/task/<tid>
// dir (R, S, D...), "?" if unreadable.
func procState(dir string) string {
	stat, _ := os.ReadFile(dir + "/stat")
	// The state follows the command's closing parenthesis.
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 {
		return string(stat[i+2])
	}
	return "?"
}
