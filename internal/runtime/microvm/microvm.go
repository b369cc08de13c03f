package microvm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/runtime/microvm/monitor"
	"vessel.dev/vessel/internal/runtime/toolkit"
)

// Name is the runtime's name.
const Name = runtime.MicroVM

const (
	// qemuOverheadMiB is what the QEMU process may use beyond the guest's
	// memory (device emulation, the TCG translation cache) before its
	// cgroup's limit.
	qemuOverheadMiB = 256
	// guestOverheadMiB is the guest's memory beyond the task's: the
	// kernel, the initramfs and the agent. The containers are held to the
	// task's memory by a cgroup inside the guest.
	guestOverheadMiB = 128
	// execWait bounds how long alive waits for a process inside execve
	// to have its command line.
	execWait    = 5 * time.Second
	bootTimeout = 60 * time.Second
)

// Config configures the microvm runtime.
type Config struct {
	// StateDir holds one directory per sandbox and the cache of root
	// images and initramfs (<data-dir>/sandboxes/microvm). Required.
	StateDir string
	// QEMUPath is qemu-system-x86_64, found in PATH by default.
	QEMUPath string
	// KernelPath is the guest's ELF vmlinux (scripts/build-guest-kernel).
	// Required.
	KernelPath string
	// ModulesDir holds the guest kernel's modules and modules.order;
	// <dir of KernelPath>/modules by default.
	ModulesDir string
	// InitramfsPath, if set, is used as it is; otherwise the runtime builds
	// one from ModulesDir and GuestBinary and caches it in StateDir.
	InitramfsPath string
	// GuestBinary is the static vessel-guest binary: the VM's PID 1 and,
	// on the host, each VM's monitor. Required.
	GuestBinary string
	// Accel is "kvm", "tcg" or "" (probe KVM, fall back to tcg).
	Accel string
	// SkipBootProbe skips booting a probe VM in New.
	SkipBootProbe bool
	// QEMUUser is the unprivileged system user QEMU runs as once it has
	// opened its files (-runas); "vessel-qemu" by default, created (useradd
	// --system) when missing. "root" keeps QEMU root. When the user can
	// be neither found nor created QEMU stays root, with a warning.
	QEMUUser string
	// ConsoleMaxBytes caps the VM's console log (<sandbox>/console.log):
	// the monitor empties it when it grows past this; 1 MiB by default.
	ConsoleMaxBytes int64
	// Logger receives warnings; slog.Default() by default.
	Logger *slog.Logger
}

// DefaultQEMUUser is the system user QEMU runs as.
const DefaultQEMUUser = "vessel-qemu"

// qemuSandbox is QEMU's own seccomp filter: on, with obsolete calls and
// resource control (scheduler and affinity changes) denied. Denying
// privilege changes or process spawning would kill QEMU itself: it
// drops to QEMUUser (setuid) and daemonizes (fork) after loading the
// filter; once dropped it has no capabilities and no_new_privs is set.
const qemuSandbox = "on,obsolete=deny,resourcecontrol=deny"

// Runtime runs each sandbox in a QEMU microvm of its own.
type Runtime struct {
	cfg   Config
	log   *slog.Logger
	cg    *cgroups
	accel string
	// accelWhy is why accel was chosen (the KVM probe's answer).
	accelWhy   string
	initrdPath string
	mkfsErofs  string
	// qemuUser is the user QEMU drops to ("" = stays root).
	qemuUser string

	// store holds the sandboxes' records (one directory each in
	// StateDir, beside the cache) and their locks.
	store toolkit.Store

	imgMu sync.Mutex
	mu    sync.Mutex
	// netns remembers each sandbox's namespace for Leftovers after Delete.
	netns map[string]string
	// vms remembers the warm ID of each claimed sandbox's VM, for
	// Leftovers after Delete.
	vms map[string]string
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Execer    = (*Runtime)(nil)
	_ runtime.Restarter = (*Runtime)(nil)
)

var bootProbed sync.Map // key → error (nil once a probe VM booted)

// New checks the host (QEMU, kernel, guest binary, KVM), picks the
// accelerator, builds the initramfs and boots a probe VM to the guest
// agent (once per process and configuration). Errors of kind
// errdefs.ErrUnavailable say why this host cannot run it.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" || cfg.KernelPath == "" || cfg.GuestBinary == "" {
		return nil, errdefs.InvalidArgument("microvm runtime: StateDir, KernelPath and GuestBinary are required")
	}
	for _, p := range []*string{&cfg.StateDir, &cfg.KernelPath, &cfg.GuestBinary} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, errdefs.InvalidArgument("microvm runtime: %q: %v", *p, err)
		}
		*p = abs
	}
	if cfg.ModulesDir == "" {
		cfg.ModulesDir = filepath.Join(filepath.Dir(cfg.KernelPath), "modules")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QEMUPath == "" {
		cfg.QEMUPath = "qemu-system-x86_64"
	}
	if cfg.QEMUUser == "" {
		cfg.QEMUUser = DefaultQEMUUser
	}
	if cfg.ConsoleMaxBytes <= 0 {
		cfg.ConsoleMaxBytes = 1 << 20
	}
	q, err := exec.LookPath(cfg.QEMUPath)
	if err != nil {
		return nil, errdefs.Unavailable("microvm runtime: QEMU not found (install qemu-system-x86 or set QEMUPath): %v", err)
	}
	cfg.QEMUPath = q
	for _, f := range []string{cfg.KernelPath, cfg.GuestBinary} {
		if _, err := os.Stat(f); err != nil {
			return nil, errdefs.Unavailable("microvm runtime: %v (scripts/build-guest-kernel builds the kernel)", err)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errdefs.Unavailable("the microvm runtime needs root (cgroups, network namespaces)")
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger, netns: map[string]string{}, vms: map[string]string{},
		store: toolkit.Store{Dir: cfg.StateDir, Reserved: []string{"cache"}}}
	if cfg.QEMUUser != "root" {
		if err := ensureSystemUser(cfg.QEMUUser); err != nil {
			r.log.Warn("microvm: QEMU runs as root", "reason", err)
		} else {
			r.qemuUser = cfg.QEMUUser
		}
	}
	if r.mkfsErofs, err = exec.LookPath("mkfs.erofs"); err != nil {
		return nil, errdefs.Unavailable("microvm runtime: mkfs.erofs not found (install erofs-utils)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil, errdefs.Unavailable("microvm runtime: mkfs.ext4 not found (install e2fsprogs)")
	}
	if r.cg, err = detectCgroups(); err != nil {
		return nil, errdefs.Unavailable("microvm runtime: %v", err)
	}
	switch cfg.Accel {
	case AccelKVM, AccelTCG:
		r.accel, r.accelWhy = cfg.Accel, "the accelerator was set to "+cfg.Accel
	case AccelAuto:
		ok, why := probeKVM(cfg.QEMUPath, cfg.KernelPath)
		r.accelWhy = why
		if ok {
			r.accel = AccelKVM
		} else {
			r.accel, r.accelWhy = AccelTCG, "KVM does not work here ("+why+")"
			r.log.Warn("microvm: KVM does not work here; VMs run under TCG emulation (correct but many times slower than native)", "reason", why)
		}
	default:
		return nil, errdefs.InvalidArgument("microvm runtime: Accel %q: want kvm, tcg or empty", cfg.Accel)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("microvm runtime: %w", err)
	}
	r.removeClaimLeftovers()
	if r.initrdPath, err = r.initramfs(); err != nil {
		return nil, errdefs.Unavailable("microvm runtime: initramfs: %v", err)
	}
	if !cfg.SkipBootProbe {
		key := strings.Join([]string{cfg.QEMUPath, cfg.KernelPath, filepath.Base(r.initrdPath), r.accel}, "\x00")
		v, done := bootProbed.Load(key)
		if !done {
			perr := r.bootProbe()
			bootProbed.Store(key, perr)
			v = perr
		}
		if perr, _ := v.(error); perr != nil {
			return nil, errdefs.Unavailable("microvm runtime: a probe VM did not boot to the guest agent: %v", perr)
		}
	}
	return r, nil
}

// Accel returns the accelerator the runtime's VMs use, "kvm" or "tcg".
func (r *Runtime) Accel() string { return r.accel }

// Emulated says why the runtime's VMs run under emulation (TCG), many
// times slower than native: KVM failed its probe ("KVM does not work
// here (no /dev/kvm)", "... (a probe guest under KVM printed nothing in
// 3s: hung, killed)") or the accelerator was set to tcg. It is empty
// under KVM.
func (r *Runtime) Emulated() string {
	if r.accel == AccelKVM {
		return ""
	}
	return r.accelWhy
}

// bootProbe boots a VM with no container to the guest agent and removes
// it. Its sandbox is no spec Create accepts (no container, a hidden ID that
// List skips), so it is made with create.
func (r *Runtime) bootProbe() error {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	id := fmt.Sprintf(".probe-%d", os.Getpid())
	start := time.Now()
	err := r.create(ctx, runtime.Spec{ID: id, MilliCPU: 1000, MemoryMiB: 256, EphemeralStorageGiB: 1,
		LogDir: filepath.Join(r.cfg.StateDir, id+"-logs")}, false)
	if err == nil {
		r.log.Info("microvm: probe VM booted to the guest agent", "accel", r.accel, "took", time.Since(start).Round(time.Millisecond))
	}
	r.Delete(context.Background(), id)
	os.RemoveAll(filepath.Join(r.cfg.StateDir, id+"-logs"))
	return err
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return Name }

// record is a sandbox's file, <sandbox>/sandbox.json.
type record struct {
	toolkit.Record
	Accel string    `json:"accel"`
	Net   *netState `json:"net,omitempty"`
	Disks []vmDisk  `json:"disks,omitempty"`
	// Warm marks a warm sandbox (runtime.Warmer): a VM booted to its
	// guest agent for a task not known yet. Its Disks end with the
	// empty image slots a Claim fills.
	Warm bool `json:"warm,omitempty"`
	// ClaimedBy, on a warm sandbox's record, is the task a Claim is
	// giving it to. The claim counts once that task's record names this
	// VM (VM): a crash between the two leaves the sandbox warm.
	ClaimedBy string `json:"claimedBy,omitempty"`
	// VM, on the record of a task that claimed a warm sandbox, is the
	// warm ID the VM was booted under: the directory of its QEMU and
	// monitor files and its host cgroup, which are never renamed.
	VM string `json:"vm,omitempty"`
}

// vm is the ID that names the sandbox's VM directory and cgroup: its
// own, or the warm ID of a claimed warm sandbox.
func (rec *record) vm() string {
	if rec.VM != "" {
		return rec.VM
	}
	return rec.Spec.ID
}

func (r *Runtime) dir(id string) string { return r.store.SandboxDir(id) }

func (r *Runtime) save(rec *record) error { return r.store.Save(rec) }

// load reads sandbox id's record; with a container name, a sandbox
// without it is not found either. A warm sandbox that a task claimed is
// not found: it is known by the task's ID alone.
func (r *Runtime) load(id, container string) (*record, error) {
	rec := &record{}
	var err error
	if container == "" {
		err = r.store.Load(id, rec)
	} else {
		err = r.store.LoadContainer(id, container, rec)
	}
	if err == nil && rec.Warm && r.claimed(rec) {
		return nil, runtime.SandboxNotFound(id)
	}
	if err == nil && rec.VM != "" {
		r.mu.Lock()
		r.vms[id] = rec.VM
		r.mu.Unlock()
	}
	return rec, err
}

// Create implements runtime.Runtime: it builds the disks, takes eth0's
// address for the guest, starts QEMU (daemonized, in the sandbox's cgroup
// and network namespace) and the VM's monitor, and returns once the guest
// agent has set the sandbox up.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	return r.create(ctx, spec, false)
}

// create is Create without the spec's validation; with warm, it is
// Warm's: no containers, empty image slots, and a guest told to wait
// for its task.
func (r *Runtime) create(ctx context.Context, spec runtime.Spec, warm bool) (err error) {
	unlock := r.store.Lock(spec.ID)
	defer unlock()
	dir := r.dir(spec.ID)
	toolkit.FillDefaults(&spec)
	if spec.LogDir == "" {
		spec.LogDir = filepath.Join(dir, "logs")
	}
	rec := &record{Record: toolkit.Record{Spec: spec, CreatedAt: time.Now()}, Accel: r.accel, Warm: warm}
	if err := r.store.Make(rec); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			r.teardown(rec)
		}
	}()
	// Disks: the writable one, then one read-only root image per
	// distinct layer list.
	rw := filepath.Join(dir, "rw.img")
	if err := writableDisk(ctx, rw, spec.EphemeralStorageGiB); err != nil {
		return err
	}
	rec.Disks = []vmDisk{{Serial: "rw", Path: rw}}
	var gcfg guestproto.Config
	if warm {
		slots, err := makeImageSlots(dir)
		if err != nil {
			return err
		}
		rec.Disks = append(rec.Disks, slots...)
		gcfg = guestproto.Config{Warm: true, Hostname: spec.Hostname}
	} else {
		images, err := r.images(ctx, spec)
		if err != nil {
			return err
		}
		for i, img := range images {
			rec.Disks = append(rec.Disks, vmDisk{Serial: imageSerial(i), Path: img.path, ReadOnly: true})
		}
		if gcfg, err = guestConfig(spec, images); err != nil {
			return err
		}
	}
	mac := ""
	if spec.NetNSPath != "" {
		r.mu.Lock()
		r.netns[spec.ID] = spec.NetNSPath
		r.mu.Unlock()
		st, err := takeEth0(spec.NetNSPath)
		rec.Net = st // saved even when partly done, to give back on failure
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		mac = st.MAC
		gcfg.Net = guestNet(st)
	}
	if err := r.save(rec); err != nil {
		return err
	}
	mcfg := monitor.Config{Control: filepath.Join(dir, "ctl.sock"), Listen: filepath.Join(dir, "mon.sock"),
		LogDir: spec.LogDir, LogMaxBytes: spec.LogMaxBytes, ExitDir: filepath.Join(dir, "exits"),
		ConsoleLog: filepath.Join(dir, "console.log"), ConsoleMaxBytes: r.cfg.ConsoleMaxBytes,
		StartedDir: filepath.Join(dir, "started"), ReadyFile: filepath.Join(dir, "ready"),
		StallFile: filepath.Join(dir, "guest-stall.log"), Guest: gcfg}
	procs, err := r.startQEMU(ctx, rec, mac)
	if err != nil {
		return err
	}
	mcfg.CgroupProcs = procs
	data, _ := json.Marshal(mcfg)
	if err := os.WriteFile(filepath.Join(dir, "monitor.json"), data, 0o600); err != nil {
		return err
	}
	if spec.NetNSPath != "" {
		if err := attachTap(spec.NetNSPath); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	monDone, err := r.startMonitor(dir)
	if err != nil {
		return err
	}
	if err := r.waitReady(ctx, dir, monDone); err != nil {
		return err
	}
	rec.Ready = true
	return r.save(rec)
}

// image is one distinct image of a sandbox: its root image file and the
// key of its layer list.
type image struct{ key, path string }

// imageSerial is the virtio-blk serial of a sandbox's i-th image disk.
func imageSerial(i int) string { return fmt.Sprintf("img%d", i) }

// images builds (or finds in the cache) the root image of each distinct
// layer list of spec's containers, in the containers' order.
func (r *Runtime) images(ctx context.Context, spec runtime.Spec) ([]image, error) {
	var out []image
	seen := map[string]bool{}
	for _, c := range spec.Containers {
		key := imageKey(c.Layers)
		if seen[key] {
			continue
		}
		seen[key] = true
		img, err := r.rootImage(ctx, c.Layers)
		if err != nil {
			return nil, fmt.Errorf("container %s: root image: %w", c.Name, err)
		}
		out = append(out, image{key: key, path: img})
	}
	return out, nil
}

// guestConfig is the guest's configuration of spec's task, whose
// containers' images are disks imageSerial(i) for images[i]; Net is
// left to the caller.
func guestConfig(spec runtime.Spec, images []image) (guestproto.Config, error) {
	gcfg := guestproto.Config{Hostname: spec.Hostname, MilliCPU: spec.MilliCPU, MemoryMiB: spec.MemoryMiB, PidsLimit: spec.PidsLimit}
	diskOf := map[string]string{}
	for i, img := range images {
		diskOf[img.key] = imageSerial(i)
	}
	for _, c := range spec.Containers {
		sec, err := guestSecurity(c.Security)
		if err != nil {
			return gcfg, fmt.Errorf("container %s: %w", c.Name, err)
		}
		gcfg.Containers = append(gcfg.Containers, guestproto.Container{Name: c.Name, Disk: diskOf[imageKey(c.Layers)],
			Args: c.Args, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User,
			NofileSoft: c.NofileSoft, NofileHard: c.NofileHard, Security: sec})
	}
	var err error
	if gcfg.Etc, err = etcFiles(spec); err != nil {
		return gcfg, err
	}
	if gcfg.Volumes, err = guestVolumes(spec, gcfg.Containers); err != nil {
		return gcfg, err
	}
	return gcfg, nil
}

// etcFiles are the hosts, hostname and resolv.conf of the sandbox.
func etcFiles(spec runtime.Spec) (map[string][]byte, error) {
	out := map[string][]byte{}
	if spec.EtcDir != "" {
		for _, n := range []string{"hosts", "hostname", "resolv.conf"} {
			data, err := os.ReadFile(filepath.Join(spec.EtcDir, n))
			if err == nil {
				out[n] = data
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		return out, nil
	}
	host := spec.Hostname
	if host == "" {
		host = "localhost"
	}
	out["hosts"] = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	out["hostname"] = []byte(host + "\n")
	out["resolv.conf"] = []byte("")
	return out, nil
}

// inCgroupScript writes the shell into the cgroups of $VESSEL_CGROUP_PROCS
// and execs its arguments, so that everything the program allocates is
// charged to the sandbox.
const inCgroupScript = `for p in $VESSEL_CGROUP_PROCS; do echo $$ > "$p" || exit 1; done; exec "$@"`

// startQEMU runs QEMU daemonized, in the sandbox's cgroups (through
// inCgroupScript and nsenter into the network namespace); it returns the
// cgroups' procs files.
func (r *Runtime) startQEMU(ctx context.Context, rec *record, mac string) ([]string, error) {
	spec := rec.Spec
	dir := r.dir(spec.ID)
	vcpus := (spec.MilliCPU + 999) / 1000
	// Under KVM the host quota is the fractional vCPU. Under TCG one guest
	// vCPU costs a host CPU and more, so the host quota is whole vCPUs
	// and the fraction is enforced inside the guest (its cgroup).
	quota := spec.MilliCPU
	if r.accel == AccelTCG {
		quota = vcpus * 1000
	}
	memMiB := spec.MemoryMiB + guestOverheadMiB
	procs, err := r.cg.create(spec.ID, quota, (memMiB+qemuOverheadMiB)<<20, 512)
	if err != nil {
		return nil, err
	}
	args := r.qemuArgs(dir, vcpus, memMiB, rec.Disks, mac)
	cmd := append([]string{r.cfg.QEMUPath}, args...)
	if spec.NetNSPath != "" {
		cmd = append([]string{"nsenter", "--net=" + spec.NetNSPath, "--"}, cmd...)
	}
	c := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", inCgroupScript, "sh"}, cmd...)...)
	c.Env = append(os.Environ(), "VESSEL_CGROUP_PROCS="+strings.Join(procs, " "))
	c.Dir = dir
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("qemu: %w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	if pid := toolkit.ReadPid(filepath.Join(dir, "qemu.pid")); pid == 0 {
		return nil, fmt.Errorf("qemu wrote no pid file: %s", bytes.TrimSpace(out.Bytes()))
	}
	return procs, nil
}

// startMonitor starts the VM's monitor (the guest binary's "monitor"
// mode) in a session of its own, so that it outlives the agent; it joins
// the sandbox's cgroups itself (MonitorConfig.CgroupProcs), beside QEMU.
// The returned channel gets how the monitor ended, should it end.
func (r *Runtime) startMonitor(dir string) (<-chan error, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "monitor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c := exec.Command(r.cfg.GuestBinary, "monitor", filepath.Join(dir, "monitor.json"))
	c.Stdout, c.Stderr = logf, logf
	c.Dir = dir
	c.Env = []string{"GOGC=50"}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	// Reaped here while this process lives (init's after).
	done := make(chan error, 1)
	go func() {
		err := c.Wait()
		if err == nil {
			err = errors.New("exited")
		}
		done <- err
	}()
	return done, os.WriteFile(filepath.Join(dir, "monitor.pid"), []byte(strconv.Itoa(c.Process.Pid)), 0o600)
}

// errMonitorStopped is waitReady's error for a monitor that ended before
// the guest's answer.
var errMonitorStopped = errors.New("the VM's monitor stopped")

// waitReady waits for the guest's answer to the monitor's hello.
func (r *Runtime) waitReady(ctx context.Context, dir string, monDone <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "ready")); err == nil {
			if len(data) > 0 {
				return fmt.Errorf("guest: %s", data)
			}
			return nil
		}
		if !alive(toolkit.ReadPid(filepath.Join(dir, "qemu.pid")), dir+"/") {
			return fmt.Errorf("the VM stopped while booting; console: %s", tail(filepath.Join(dir, "console.log")))
		}
		select {
		case err := <-monDone:
			return fmt.Errorf("%w (%v): %s", errMonitorStopped, err, tail(filepath.Join(dir, "monitor.log")))
		case <-ctx.Done():
			return fmt.Errorf("the guest agent did not answer: %w; monitor: %s; console: %s%s; QEMU's control channel queues: %s; host: %s", ctx.Err(),
				tail(filepath.Join(dir, "monitor.log")), tail(filepath.Join(dir, "console.log")), stallExcerpt(dir), virtioQueues(dir), r.hostView(dir))
		case <-t.C:
		}
	}
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 1500 {
		data = data[len(data)-1500:]
	}
	return strings.TrimSpace(string(data))
}

// stallExcerpt is what the guest's stall dump (guest-stall.log, the
// monitor's StallFile) says of its set-up, for the error of a guest that
// did not answer: the goroutine in the set-up, the agent's threads'
// kernel stacks and the processes in D state, a few KiB at most; ""
// without a dump.
func stallExcerpt(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "guest-stall.log"))
	if err != nil {
		return ""
	}
	var out []string
	for _, block := range strings.Split(string(data), "\n\n") {
		if strings.Contains(block, "guest.(*agent).handle(") || strings.HasPrefix(block, "--- threads") ||
			strings.HasPrefix(block, "--- processes in D state") {
			out = append(out, block)
		}
	}
	ex := strings.Join(out, "\n\n")
	if len(ex) > 6000 {
		ex = ex[:6000]
	}
	return "; the guest's stall dump (guest-stall.log): " + ex
}

// alive reports whether pid runs (not a zombie) with mark in its command
// line (the sandbox's directory with a trailing slash: QEMU's and the
// monitor's name files in it), which guards against a reused pid. (toolkit.ProcessAlive matches the
// command name instead, which is the same for every QEMU.)
//
// A process that exec.Cmd.Start has just returned may still be inside
// execve: Start returns once the close-on-exec descriptors are closed,
// before the kernel has laid out the new program's arguments, and until
// then /proc/<pid>/cmdline reads empty (for milliseconds, longer with the
// binary out of the page cache and the CPUs busy). An empty command line
// of a running process is read again until it is set (execWait at most),
// not taken for a process that is gone.
func alive(pid int, mark string) bool {
	if pid <= 0 {
		return false
	}
	path := fmt.Sprintf("/proc/%d/cmdline", pid)
	for deadline := time.Now().Add(execWait); ; time.Sleep(5 * time.Millisecond) {
		if !toolkit.ProcessRunning(pid) {
			return false
		}
		cmdline, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		if len(cmdline) > 0 {
			return strings.Contains(string(cmdline), mark) && toolkit.ProcessRunning(pid)
		}
		if time.Now().After(deadline) {
			return false // a kernel thread, or a process that erased its arguments
		}
	}
}

// request sends one request to the VM's monitor and returns the connection
// for its answers.
func (r *Runtime) request(ctx context.Context, rec *record, m guestproto.Msg) (*guestproto.Conn, net.Conn, error) {
	id := rec.Spec.ID
	var d net.Dialer
	raw, err := d.DialContext(ctx, "unix", filepath.Join(r.dir(rec.vm()), "mon.sock"))
	if err != nil {
		return nil, nil, errdefs.Unavailable("sandbox %s: its VM monitor is not reachable: %v", id, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	conn := guestproto.NewConn(raw, raw)
	if err := conn.Send(m); err != nil {
		raw.Close()
		return nil, nil, err
	}
	return conn, raw, nil
}

// call is request for operations answered by one reply.
func (r *Runtime) call(ctx context.Context, rec *record, m guestproto.Msg) error {
	_, err := r.ask(ctx, rec, m)
	return err
}

// ask is call that returns the reply.
func (r *Runtime) ask(ctx context.Context, rec *record, m guestproto.Msg) (guestproto.Msg, error) {
	id := rec.Spec.ID
	conn, raw, err := r.request(ctx, rec, m)
	if err != nil {
		return guestproto.Msg{}, err
	}
	defer raw.Close()
	resp, err := conn.Recv()
	if err != nil {
		return resp, fmt.Errorf("sandbox %s: %s: %w", id, m.Op, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("sandbox %s: %s: %s", id, m.Op, resp.Error)
	}
	return resp, nil
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, id, container string) error {
	unlock := r.store.Lock(id)
	defer unlock()
	rec, err := r.load(id, container)
	if err != nil {
		return err
	}
	if rec.Started[container] {
		return runtime.AlreadyStarted(id, container)
	}
	if err := r.call(ctx, rec, guestproto.Msg{Op: guestproto.OpStart, Container: container}); err != nil {
		if strings.Contains(err.Error(), guestproto.RunAsNonRootError) {
			return errdefs.InvalidArgument("container %s of sandbox %s: %s", container, id, guestproto.RunAsNonRootError)
		}
		return err
	}
	rec.Started[container] = true
	return r.save(rec)
}

// Restart implements runtime.Restarter: the guest runs the exited
// container again on the same root and writable layer; the monitor
// appends its output to the same log. The exit file of the last run is
// removed first (and put back if the guest cannot restart it).
func (r *Runtime) Restart(ctx context.Context, id, container string) error {
	unlock := r.store.Lock(id)
	defer unlock()
	rec, err := r.load(id, container)
	if err != nil {
		return err
	}
	if !rec.Started[container] {
		return runtime.NeverStarted(id, container)
	}
	putBack, err := toolkit.SetAsideExit(r.exitFile(rec, container))
	if errors.Is(err, os.ErrNotExist) {
		return runtime.StillRuns(id, container)
	}
	if err != nil {
		return err
	}
	if err := r.call(ctx, rec, guestproto.Msg{Op: guestproto.OpRestart, Container: container}); err != nil {
		return putBack(err)
	}
	rec.CountRestart(container)
	return r.save(rec)
}

// exitFile is where the monitor writes container's exit (a
// guestproto.ContainerState).
func (r *Runtime) exitFile(rec *record, container string) string {
	return filepath.Join(r.dir(rec.vm()), "exits", container)
}

func (r *Runtime) exitOf(rec *record, container string) (*runtime.ExitStatus, error) {
	data, err := os.ReadFile(r.exitFile(rec, container))
	if err != nil {
		return nil, err
	}
	var s guestproto.ContainerState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &runtime.ExitStatus{Code: s.Code, OOMKilled: s.OOMKilled, ExitedAt: s.ExitedAt}, nil
}

// Wait implements runtime.Runtime: it polls the exit file the monitor
// writes, and checks now and then that the VM still runs.
func (r *Runtime) Wait(ctx context.Context, id, container string) (runtime.ExitStatus, error) {
	rec, err := r.load(id, container)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	dir := r.dir(rec.vm())
	return toolkit.WaitExit(ctx, func() (runtime.ExitStatus, bool, error) {
		st, err := r.exitOf(rec, container)
		if err != nil {
			return runtime.ExitStatus{}, false, nil
		}
		return *st, true, nil
	}, func() error {
		if _, err := os.Stat(dir); err != nil {
			return runtime.SandboxNotFound(id)
		}
		if !alive(toolkit.ReadPid(filepath.Join(dir, "qemu.pid")), dir+"/") {
			return errdefs.Unavailable("sandbox %s: its VM is not running", id)
		}
		return nil
	})
}

// Signal implements runtime.Runtime.
func (r *Runtime) Signal(ctx context.Context, id, container string, sig syscall.Signal) error {
	rec, err := r.load(id, container)
	if err != nil {
		return err
	}
	if _, err := r.exitOf(rec, container); err == nil {
		return nil
	}
	return r.call(ctx, rec, guestproto.Msg{Op: guestproto.OpSignal, Container: container, Signal: int(sig)})
}

// Exec implements runtime.Execer: the guest agent runs the command in the
// container's root and cgroup (on a pseudo-terminal of the guest's with
// p.TTY), relaying its input, output, terminal sizes and exit through the
// monitor.
func (r *Runtime) Exec(ctx context.Context, id, container string, p runtime.ExecProcess) (int, error) {
	rec, err := r.load(id, container)
	if err != nil {
		return -1, err
	}
	if len(p.Args) == 0 {
		return -1, errdefs.InvalidArgument("exec needs a command")
	}
	req := guestproto.Msg{Op: guestproto.OpExec, ID: 1, Container: container,
		Args: p.Args, Env: p.Env, Stdin: p.Stdin != nil, TTY: p.TTY}
	if p.TTY {
		select {
		case sz, ok := <-p.Resize:
			if ok {
				req.Width, req.Height = sz.Width, sz.Height
			}
		default:
		}
	}
	conn, raw, err := r.request(ctx, rec, req)
	if err != nil {
		return -1, err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	for {
		m, err := conn.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("sandbox %s: exec: %w", id, err)
		}
		switch m.Op {
		case guestproto.EvReply:
			if m.Error != "" {
				return -1, fmt.Errorf("sandbox %s: exec: %s", id, m.Error)
			}
			if p.TTY && p.Resize != nil {
				go func() {
					for {
						select {
						case sz, ok := <-p.Resize:
							if !ok || conn.Send(guestproto.Msg{Op: guestproto.OpResize, Width: sz.Width, Height: sz.Height}) != nil {
								return
							}
						case <-done:
							return
						}
					}
				}()
			}
			if p.Stdin != nil {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := p.Stdin.Read(buf)
						if n > 0 {
							if conn.Send(guestproto.Msg{Op: guestproto.OpStdin, Data: buf[:n]}) != nil {
								return
							}
						}
						if err != nil {
							conn.Send(guestproto.Msg{Op: guestproto.OpStdin, EOF: true})
							return
						}
					}
				}()
			}
		case guestproto.EvOutput:
			w := p.Stdout
			if m.Stream == "stderr" {
				w = p.Stderr
			}
			if w != nil {
				w.Write(m.Data)
			}
		case guestproto.EvExecExit:
			return m.Code, nil
		}
	}
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	unlock := r.store.Lock(id)
	defer unlock()
	rec, err := r.load(id, "")
	if err != nil {
		return err
	}
	return r.teardown(rec)
}

// teardown stops the VM and its monitor, gives eth0 back, removes the
// cgroups and the sandbox directory (never LogDir).
//
// A claimed warm sandbox's VM directory and cgroup are the warm ID's; its
// own directory, which holds only its record (the mapping), goes last,
// so that a teardown cut short is done again by the next Delete.
func (r *Runtime) teardown(rec *record) error {
	dir := r.dir(rec.vm())
	var errs []error
	for _, p := range []struct{ file, mark string }{{"qemu.pid", dir + "/"}, {"monitor.pid", dir + "/"}} {
		pid := toolkit.ReadPid(filepath.Join(dir, p.file))
		if !alive(pid, p.mark) {
			continue
		}
		syscall.Kill(pid, syscall.SIGKILL)
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid, p.mark) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid, p.mark) {
			errs = append(errs, fmt.Errorf("%s %d did not stop", p.file, pid))
		}
	}
	if err := giveBackEth0(rec.Net); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := r.cg.remove(rec.vm()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && rec.VM != "" {
		if err := os.RemoveAll(r.dir(rec.Spec.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) {
	ids, err := r.store.IDs()
	if err != nil {
		return nil, err
	}
	var out []runtime.SandboxInfo
	for _, id := range ids {
		rec, err := r.load(id, "")
		if err != nil || !rec.Ready {
			continue
		}
		info := rec.Info(func(st *runtime.ContainerState) {
			if _, err := os.Stat(filepath.Join(r.dir(rec.vm()), "started", st.Name)); err == nil {
				st.Started = true
			}
			if ex, err := r.exitOf(rec, st.Name); err == nil {
				st.Exit, st.Started = ex, true
			}
		})
		info.Warm = rec.Warm
		out = append(out, info)
	}
	return out, nil
}

// Leftovers lists what of sandbox id is still on the host: its directory,
// processes (QEMU, monitor) that mention it, cgroups, and br0/tap0 in its
// network namespace; for a task that claimed a warm sandbox, those of
// its VM's warm ID too. After Delete it must be empty.
func (r *Runtime) Leftovers(id string) []string {
	r.mu.Lock()
	vm := r.vms[id]
	r.mu.Unlock()
	out := r.leftovers(id)
	if vm != "" {
		out = append(out, r.leftovers(vm)...)
	}
	return out
}

func (r *Runtime) leftovers(id string) []string {
	var out []string
	dir := r.dir(id)
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "directory "+dir)
	}
	out = append(out, r.cg.leftovers(id)...)
	out = append(out, toolkit.ProcessesMentioning(func(cmdline string) bool { return strings.Contains(cmdline, dir+"/") })...)
	r.mu.Lock()
	ns := r.netns[id]
	r.mu.Unlock()
	if ns != "" {
		if _, err := os.Stat(ns); err == nil {
			out = append(out, netLeftovers(ns)...)
		}
	}
	return out
}
