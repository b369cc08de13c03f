package builtin

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/gvisor"
	"vessel.dev/vessel/internal/runtime/microvm"
	"vessel.dev/vessel/internal/runtime/runc"
	"vessel.dev/vessel/internal/runtime/sim"
)

// Host is what the back ends need to be built on this machine. Empty
// fields take the defaults each says.
type Host struct {
	// DataDir is the host's data directory; each runtime keeps its state
	// in DataDir/sandboxes/<name>. Required.
	DataDir string
	// Logger receives the runtimes' warnings.
	Logger *slog.Logger
	// CacheDir is where the project's scripts build heavy tools (runsc,
	// the guest kernel); DefaultCacheDir() by default.
	CacheDir string
	// RunscPath is gVisor's runsc; the newest one scripts/build-runsc put
	// in CacheDir by default.
	RunscPath string
	// GuestKernel is the micro-VM guest's ELF vmlinux; the newest one
	// scripts/build-guest-kernel put in CacheDir by default.
	GuestKernel string
	// GuestBinary is the static vessel-guest binary; vessel-guest next to
	// this executable by default.
	GuestBinary string
	// MicroVMAccel is the micro-VM accelerator: "kvm", "tcg", or empty to
	// probe KVM and fall back to emulation.
	MicroVMAccel string
	// SimCreateDelay and SimStartDelay are the time the sim runtime takes
	// to create a sandbox and to start a container.
	SimCreateDelay, SimStartDelay time.Duration
}

// Backend is one runtime this build has.
type Backend struct {
	// Name is the runtime's name, one of runtime.Names.
	Name string
	// New builds the runtime on h, or says why it does not work here. On
	// success works is the probe report's word on it, "works" and how it
	// isolates tasks.
	New func(h Host) (rt runtime.Runtime, works string, err error)
}

// Probed is what a host's probe found of one runtime.
type Probed struct {
	// Name is the runtime's name.
	Name string
	// Runtime is the runtime built on this host; nil when it does not
	// work here.
	Runtime runtime.Runtime
	// Line is the host's report line for it: "<name>: works (<how>)",
	// "<name>: works, emulated (...)" or "<name>: unavailable: <why>".
	Line string
	// Emulated, when not empty, says why the runtime works here only
	// under emulation, many times slower than native (a micro-VM where
	// KVM does not work): Default passes it over while a runtime at
	// native speed works; tasks still get it by name.
	Emulated string
}

// emulator is a runtime that may run its workloads under emulation
// (microvm under TCG); Emulated says why, or is empty at native speed.
type emulator interface {
	Emulated() string
}

// Probe builds b on h and says what it found: the runtime (nil if it
// does not work here), the line a host reports for it and whether it runs
// only emulated.
func (b Backend) Probe(h Host) Probed {
	rt, works, err := b.New(h)
	if err != nil {
		return Probed{Name: b.Name, Line: b.Name + ": unavailable: " + err.Error()}
	}
	p := Probed{Name: b.Name, Runtime: rt, Line: b.Name + ": " + works}
	if e, ok := rt.(emulator); ok {
		p.Emulated = e.Emulated()
	}
	return p
}

// Default is the runtime for tasks that name none, from what the probe
// found of each runtime (in Backends order, strongest first): the
// strongest that works at native speed and runs the task's processes —
// microvm where KVM works, else gvisor, else runc — and only when none
// does, the strongest that works at all (an emulated micro-VM before sim,
// which runs no process). It is empty when nothing works.
func Default(found []Probed) string {
	for _, p := range found {
		if p.Runtime != nil && p.Emulated == "" && p.Name != sim.Name {
			return p.Name
		}
	}
	for _, p := range found {
		if p.Runtime != nil {
			return p.Name
		}
	}
	return ""
}

// Backends are the runtimes this build has, one per name in
// runtime.Names and in its order, strongest isolation first.
var Backends = []Backend{
	{Name: microvm.Name, New: newMicroVM},
	{Name: gvisor.Name, New: newGVisor},
	{Name: runc.Name, New: newRunc},
	{Name: sim.Name, New: newSim},
}

// Lookup returns the Backend named name.
func Lookup(name string) (Backend, bool) {
	for _, b := range Backends {
		if b.Name == name {
			return b, true
		}
	}
	return Backend{}, false
}

func (h Host) stateDir(name string) string {
	return filepath.Join(h.DataDir, "sandboxes", name)
}

func (h Host) cacheDir() string {
	if h.CacheDir != "" {
		return h.CacheDir
	}
	return DefaultCacheDir()
}

func newMicroVM(h Host) (runtime.Runtime, string, error) {
	kernel := h.GuestKernel
	if kernel == "" {
		kernel = newestMatch(filepath.Join(h.cacheDir(), "guest-kernel", "*", "vmlinux"))
	}
	if kernel == "" {
		return nil, "", fmt.Errorf("no guest kernel: build it with scripts/build-guest-kernel, or pass --guest-kernel")
	}
	guest := h.GuestBinary
	if guest == "" {
		if exe, err := os.Executable(); err == nil {
			guest = filepath.Join(filepath.Dir(exe), "vessel-guest")
		}
	}
	if _, err := os.Stat(guest); err != nil {
		return nil, "", fmt.Errorf("no guest agent binary at %s: build it with CGO_ENABLED=0 go build -o bin/vessel-guest ./cmd/vessel-guest, or pass --guest-binary", guest)
	}
	rt, err := microvm.New(microvm.Config{StateDir: h.stateDir(microvm.Name), KernelPath: kernel,
		GuestBinary: guest, Accel: h.MicroVMAccel, Logger: h.Logger})
	if err != nil {
		return nil, "", err
	}
	if why := rt.Emulated(); why != "" {
		return rt, "works, emulated (TCG, many times slower than native) because " + why +
			", so not chosen by default: tasks get it by name (one QEMU micro-VM per task with its own kernel)", nil
	}
	return rt, "works, one QEMU micro-VM per task with its own kernel, under KVM", nil
}

func newGVisor(h Host) (runtime.Runtime, string, error) {
	runsc := h.RunscPath
	if runsc == "" {
		runsc = newestMatch(filepath.Join(h.cacheDir(), "runsc", "*", "runsc"))
	}
	if runsc == "" {
		return nil, "", fmt.Errorf("no runsc: build it with scripts/build-runsc, or pass --runsc")
	}
	rt, err := gvisor.New(gvisor.Config{StateDir: h.stateDir(gvisor.Name), RunscPath: runsc, Logger: h.Logger})
	if err != nil {
		return nil, "", err
	}
	return rt, "works (runsc, a user-space kernel per task)", nil
}

func newRunc(h Host) (runtime.Runtime, string, error) {
	rt, err := runc.New(runc.Config{StateDir: h.stateDir(runc.Name), Logger: h.Logger})
	if err != nil {
		return nil, "", err
	}
	return rt, "works (namespaces, cgroups, seccomp)", nil
}

func newSim(h Host) (runtime.Runtime, string, error) {
	rt, err := sim.New(sim.Config{StateDir: h.stateDir(sim.Name),
		CreateDelay: h.SimCreateDelay, StartDelay: h.SimStartDelay})
	if err != nil {
		return nil, "", err
	}
	return rt, "works (no isolation: sandboxes run no process)", nil
}

// DefaultCacheDir is where the project's scripts build heavy tools:
// $VESSEL_CACHE, else .cache next to the directory holding this binary
// (bin/vessel → .cache).
func DefaultCacheDir() string {
	if d := os.Getenv("VESSEL_CACHE"); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return ".cache"
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), ".cache")
}

// newestMatch returns the last path matching pattern, or "".
func newestMatch(pattern string) string {
	m, _ := filepath.Glob(pattern)
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}
