package guest

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
)

// Paths inside the guest.
const (
	modulesDir = "/lib/modules"
	rwMount    = "/rw"
	imagesDir  = "/images"
	rootsDir   = "/containers"
	cgroupDir  = "/sys/fs/cgroup"
	taskCgroup = "/sys/fs/cgroup/task"
	etcDir     = "/run/etc"
	defaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	logChunk   = 16 << 10
)

// Main is the guest agent's entry point as PID 1 of the VM. It never
// returns; on a fatal error it powers the VM off.
func Main() {
	a := &agent{containers: map[string]*container{}, execs: map[uint64]*process{}, waits: map[int]chan unix.WaitStatus{}}
	if err := a.boot(); err != nil {
		fatal(err)
	}
	a.serve()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vessel-guest: "+format+"\n", args...)
}

func fatal(err error) {
	logf("fatal: %v", err)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

type agent struct {
	conn  *guestproto.Conn
	port  *os.File
	out   chan guestproto.Msg
	hello chan struct{} // closed on the first hello

	mu         sync.Mutex
	cfg        *guestproto.Config
	ready      bool
	setupErr   string
	containers map[string]*container
	execs      map[uint64]*process

	// reapMu is held while starting a process and while reaping, so that
	// a process is registered in waits before it can be reaped.
	reapMu sync.Mutex
	waits  map[int]chan unix.WaitStatus
}

type container struct {
	spec      guestproto.Container
	root      string
	cgroup    string
	started   bool
	exited    bool
	code      int
	oom       bool
	exitedAt  time.Time
	pid       int
	oomBefore int64
}

type process struct {
	stdin *os.File
	// tty is the terminal's controlling side of an exec with a TTY: input
	// is written to it, sizes set on it, and its stdin is nil.
	tty *os.File
}
