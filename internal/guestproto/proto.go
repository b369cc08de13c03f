package guestproto

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// PortName is the virtio-serial port of the control channel; the guest finds
// it as /dev/vportNpM whose /sys/class/virtio-ports/*/name says so (there is
// no udev to make /dev/virtio-ports/vessel.ctl).
const PortName = "vessel.ctl"

// Operations and events of the control protocol. Each message is one JSON
// line of Msg. The host (the monitor) speaks first with OpHello; the guest
// sends nothing before it, because QEMU drops what the guest writes while
// no client is connected to the socket.
const (
	// Host to guest.
	OpHello = "hello" // Config on the first one; the guest answers EvReady or EvState
	OpStart = "start" // Container; answered by EvReply
	// OpRestart starts an exited container again (same root and writable
	// layer); answered by EvReply, then EvStarted and, later, EvExit.
	OpRestart = "restart"
	OpSignal  = "signal" // Container, Signal; answered by EvReply
	OpExec    = "exec"   // Container, Args, Env, Stdin, TTY, Width, Height; EvReply, EvOutput..., EvExecExit
	OpStdin   = "stdin"  // ID, Data (an empty Data with EOF closes stdin)
	OpResize  = "resize" // ID, Width, Height: an exec's terminal size
	// OpStats asks for the counters of Container's cgroup in the guest
	// (all containers' with no Container); answered by EvReply with Usage.
	OpStats = "stats"

	// Guest to host.
	EvReady    = "ready"     // the sandbox is set up (Error if it could not be)
	EvState    = "state"     // State: every container, sent on a later hello
	EvReply    = "reply"     // ID, Error
	EvLog      = "log"       // Container, Stream, Data, Partial
	EvStarted  = "started"   // Container
	EvExit     = "exit"      // Container, Code, OOMKilled, Time
	EvOutput   = "output"    // ID, Stream, Data (exec output)
	EvExecExit = "exec-exit" // ID, Code
	// EvStall carries, in Error, the guest's dump of a set-up (the first
	// hello's or a claim's) still running after StallAfter: its
	// goroutines, its threads' kernel stacks, processes in D state. The
	// host only stores it, for a person to read.
	EvStall = "stall"
)

// Msg is one line of the control protocol; the fields used depend on Op.
type Msg struct {
	Op        string           `json:"op"`
	ID        uint64           `json:"id,omitempty"`
	Container string           `json:"c,omitempty"`
	Stream    string           `json:"s,omitempty"`
	Data      []byte           `json:"d,omitempty"`
	Partial   bool             `json:"p,omitempty"`
	EOF       bool             `json:"eof,omitempty"`
	Code      int              `json:"code,omitempty"`
	OOMKilled bool             `json:"oom,omitempty"`
	Time      time.Time        `json:"t,omitzero"`
	Signal    int              `json:"sig,omitempty"`
	Args      []string         `json:"args,omitempty"`
	Env       []string         `json:"env,omitempty"`
	Stdin     bool             `json:"stdin,omitempty"`
	TTY       bool             `json:"tty,omitempty"`
	Width     uint16           `json:"w,omitempty"`
	Height    uint16           `json:"h,omitempty"`
	Error     string           `json:"error,omitempty"`
	Config    *Config          `json:"config,omitempty"`
	State     []ContainerState `json:"state,omitempty"`
	Usage     *Usage           `json:"usage,omitempty"`
}

// Usage is what a container (or all of them) has used so far, from its
// cgroup in the guest: CPU time in nanoseconds, memory in bytes (the
// limit 0 when none), and the kernel's memory.stat counters.
type Usage struct {
	CPU       int64            `json:"cpu"`
	CPUUser   int64            `json:"cpuUser"`
	CPUSystem int64            `json:"cpuSystem"`
	Memory    int64            `json:"mem"`
	MemoryMax int64            `json:"memMax,omitempty"`
	Limit     int64            `json:"limit,omitempty"`
	MemStat   map[string]int64 `json:"memStat,omitempty"`
}

// Config is what the guest needs to set the sandbox up, sent with the first
// OpHello.
type Config struct {
	// Warm boots a guest for a task not known yet (runtime.Warmer): the
	// guest sets up its network and writable disk only, and takes the
	// task's configuration from a later hello whose Config is not Warm
	// (the claim): its hostname, image disks, /etc files, volumes, size
	// and containers. A guest takes one claim; later hellos get EvState.
	Warm     bool   `json:"warm,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// MilliCPU, MemoryMiB and PidsLimit are enforced inside the guest with
	// a cgroup of all containers (the VM has MilliCPU rounded up as vCPUs
	// and MemoryMiB plus the guest's own overhead as memory).
	MilliCPU  int64 `json:"milliCPU"`
	MemoryMiB int64 `json:"memoryMiB"`
	PidsLimit int64 `json:"pidsLimit"`
	// Net is nil for a sandbox with loopback only.
	Net *NetConfig `json:"net,omitempty"`
	// Etc holds hosts, hostname and resolv.conf, bind-mounted read-only
	// into every container.
	Etc map[string][]byte `json:"etc,omitempty"`
	// Volumes are made before the containers, which mount them with
	// Container.Mounts (volumes.go).
	Volumes    []Volume    `json:"volumes,omitempty"`
	Containers []Container `json:"containers"`
}

// NetConfig is eth0's configuration.
type NetConfig struct {
	Address string `json:"address"` // CIDR, e.g. 10.89.3.7/24
	Gateway string `json:"gateway,omitempty"`
}

// Container is one container of the sandbox. Its root is an overlay of the
// read-only image disk whose virtio-blk serial is Disk, under an upper
// directory on the writable disk (serial "rw").
type Container struct {
	Name       string   `json:"name"`
	Disk       string   `json:"disk"`
	Args       []string `json:"args"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	NofileSoft uint64   `json:"nofileSoft,omitempty"`
	NofileHard uint64   `json:"nofileHard,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	// Security is the container's confinement (runtime.Security as the
	// guest applies it, to its main process and every exec).
	Security Security `json:"security"`
}

// Security is what the guest gives a container's processes, as runc does
// on the host: exactly Capabilities as bounding, effective and permitted
// set (none inherited or ambient), no_new_privs, the seccomp filter,
// pivot_root into its root, a minimal /dev, masked and read-only /proc
// and /sys paths, and its own mount, PID, IPC and UTS namespaces.
type Security struct {
	// Capabilities are capability numbers (linux/capability.h); the host
	// resolves the names and the default set.
	Capabilities []int `json:"capabilities"`
	// Seccomp is the compiled filter (classic BPF for x86_64) the host
	// made of the runtime's seccomp profile; loaded last before exec.
	Seccomp        []SockFilter `json:"seccomp,omitempty"`
	ReadOnlyRootfs bool         `json:"readOnlyRootfs,omitempty"`
	// RunAsNonRoot fails the start (with RunAsNonRootError) when the
	// user resolves to uid 0.
	RunAsNonRoot       bool     `json:"runAsNonRoot,omitempty"`
	SupplementalGroups []uint32 `json:"supplementalGroups,omitempty"`
	// Init runs the guest binary as PID 1 of the container ("vessel-init"),
	// which runs the command as its child, forwards signals to it and
	// reaps zombies.
	Init bool `json:"init,omitempty"`
	// MaskedPaths and ReadonlyPaths are runtime.MaskedPaths and
	// runtime.ReadonlyPaths.
	MaskedPaths   []string `json:"maskedPaths,omitempty"`
	ReadonlyPaths []string `json:"readonlyPaths,omitempty"`
}

// SockFilter is one classic BPF instruction (struct sock_filter).
type SockFilter struct {
	Code uint16 `json:"c"`
	Jt   uint8  `json:"t"`
	Jf   uint8  `json:"f"`
	K    uint32 `json:"k"`
}

// RunAsNonRootError is the start's error for a container that must not
// run as root and would: the kubelet's message.
const RunAsNonRootError = "container has runAsNonRoot and image will run as root"

// ContainerState is a container's state as the guest knows it.
type ContainerState struct {
	Name      string    `json:"name"`
	Started   bool      `json:"started"`
	Exited    bool      `json:"exited"`
	Code      int       `json:"code"`
	OOMKilled bool      `json:"oom,omitempty"`
	ExitedAt  time.Time `json:"exitedAt,omitzero"`
}

// MaxMsg bounds one message line read from a peer that is not trusted
// (the monitor reading a guest). The guest's messages are small: log lines
// of at most 16 KiB and exec output of 32 KiB, base64-encoded in JSON.
const MaxMsg = 1 << 20

// MaxConfigMsg bounds the lines the guest reads from the host: the hello
// carries the sandbox's configuration with its volumes' files (at most
// 16 MiB, base64-encoded).
const MaxConfigMsg = 64 << 20

// ErrMsgTooLong is returned by Recv for a line over the Conn's limit; the
// line has been read and dropped, and the next Recv reads the next one.
var ErrMsgTooLong = fmt.Errorf("%w: over the size limit", ErrBadMsg)

// ErrBadMsg is the kind of Recv's errors for one line that was dropped
// (over the limit, or not a message); the stream itself is still good.
var ErrBadMsg = errors.New("control channel: message dropped")

// Conn reads and writes messages on a stream; Send is safe for concurrent
// use.
type Conn struct {
	mu  sync.Mutex
	w   io.Writer
	enc *json.Encoder
	r   *bufio.Reader
	max int
}

// NewConn returns a Conn on r and w that reads lines of at most MaxMsg
// bytes.
func NewConn(r io.Reader, w io.Writer) *Conn { return NewConnLimit(r, w, MaxMsg) }

// NewConnLimit returns a Conn that reads lines of at most max bytes.
func NewConnLimit(r io.Reader, w io.Writer, max int) *Conn {
	return &Conn{w: w, enc: json.NewEncoder(w), r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Send writes one message.
func (c *Conn) Send(m Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(m)
}

// Recv reads one message. A line over the limit is read to its end
// without being kept, and Recv returns ErrMsgTooLong for it.
func (c *Conn) Recv() (Msg, error) {
	var m Msg
	var line []byte
	tooLong := false
	for {
		chunk, err := c.r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > c.max {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return m, err
		}
		break
	}
	if tooLong {
		return m, ErrMsgTooLong
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return Msg{}, fmt.Errorf("%w: %v", ErrBadMsg, err)
	}
	return m, nil
}

// StallAfter is how long a guest's set-up runs before the guest sends
// EvStall; the host's wait for the set-up is far longer.
const StallAfter = 15 * time.Second

// MaxStall bounds EvStall's dump.
const MaxStall = 256 << 10
