package microvm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStallExcerpt: the error of a guest that did not answer quotes, from
// its stall dump, the goroutine in the set-up and the processes in D
// state, and nothing without a dump.
func TestStallExcerpt(t *testing.T) {
	dir := t.TempDir()
	if got := stallExcerpt(dir); got != "" {
		t.Errorf("without a dump: %q; want nothing", got)
	}
	dump := strings.Join([]string{
		"--- goroutines of the guest agent\ngoroutine 7 [running]:\nruntime.Stack(...)",
		"goroutine 1 [syscall]:\nsyscall.Syscall(...)\nvessel.dev/vessel/internal/guest.(*agent).setupTask(...)\nvessel.dev/vessel/internal/guest.(*agent).handle(...)",
		"goroutine 9 [chan receive]:\nvessel.dev/vessel/internal/guest.(*agent).write(...)",
		"goroutine 25 [running]:\nvessel.dev/vessel/internal/guest.(*agent).watchStall(...)\ncreated by vessel.dev/vessel/internal/guest.(*agent).handle in goroutine 1",
		"--- threads of the guest agent (kernel stacks)\n/proc/self/task/1 D wchan=blkdev_flush\n[<0>] submit_bio_wait+0x5d/0x90",
		"--- processes in D state\n/proc/1 1 (vessel-guest) wchan=blkdev_flush\n[<0>] submit_bio_wait+0x5d/0x90",
		"--- /proc/loadavg\n0.50 0.20 0.10 1/40 99",
	}, "\n\n")
	if err := os.WriteFile(filepath.Join(dir, "guest-stall.log"), []byte(dump), 0o644); err != nil {
		t.Fatal(err)
	}
	got := stallExcerpt(dir)
	for _, want := range []string{"(*agent).setupTask", "/proc/self/task/1 D wchan=blkdev_flush", "/proc/1 1 (vessel-guest) wchan=blkdev_flush", "guest-stall.log"} {
		if !strings.Contains(got, want) {
			t.Errorf("excerpt %q lacks %q", got, want)
		}
	}
	for _, not := range []string{"runtime.Stack", "(*agent).write", "watchStall", "loadavg"} {
		if strings.Contains(got, not) {
			t.Errorf("excerpt %q has %q, which is not the set-up's", got, not)
		}
	}
}
