package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

// Name is the runtime's name.
const Name = runtime.Sim

// Config configures a sim runtime.
type Config struct {
	// StateDir keeps one file per sandbox. Required.
	StateDir string
	// CreateDelay and StartDelay stand in for the work a real runtime does.
	CreateDelay time.Duration
	StartDelay  time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Runtime is the sim runtime.
type Runtime struct {
	cfg Config

	mu        sync.Mutex
	sandboxes map[string]*sandbox
}

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Restarter = (*Runtime)(nil)
	_ runtime.Warmer    = (*Runtime)(nil)
)

type containerState struct {
	Spec      runtime.ContainerSpec `json:"spec"`
	StartedAt time.Time             `json:"startedAt,omitzero"`
	Exit      *runtime.ExitStatus   `json:"exit,omitempty"`
	Restarts  int                   `json:"restarts,omitempty"`
}

type sandbox struct {
	ID         string                     `json:"id"`
	Labels     map[string]string          `json:"labels,omitempty"`
	Containers map[string]*containerState `json:"containers"`
	Order      []string                   `json:"order"`
	// Warm marks a warm sandbox no task has claimed (runtime.Warmer).
	Warm bool `json:"warm,omitempty"`

	// changed is closed and replaced whenever a container's state changes.
	changed chan struct{}
}

// New returns a sim runtime, loading the sandboxes left in StateDir by an
// earlier process.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errdefs.InvalidArgument("sim runtime: StateDir is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("sim runtime: %w", err)
	}
	r := &Runtime{cfg: cfg, sandboxes: map[string]*sandbox{}}
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("sim runtime: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(cfg.StateDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sim runtime: %w", err)
		}
		sb := &sandbox{}
		if err := json.Unmarshal(data, sb); err != nil {
			return nil, fmt.Errorf("sim runtime: sandbox file %s: %w", e.Name(), err)
		}
		sb.changed = make(chan struct{})
		r.sandboxes[sb.ID] = sb
	}
	return r, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return Name }

func (r *Runtime) path(id string) string { return filepath.Join(r.cfg.StateDir, id+".json") }

// save writes the sandbox file atomically; the caller holds r.mu.
func (r *Runtime) save(sb *sandbox) error {
	data, err := json.Marshal(sb)
	if err != nil {
		return err
	}
	tmp := r.path(sb.ID) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path(sb.ID))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Create implements runtime.Runtime. It applies the rules of every
// runtime (runtime.Spec.ValidateSimulated): a container needs neither
// image layers nor arguments here.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	if err := spec.ValidateSimulated(); err != nil {
		return err
	}
	if err := sleepCtx(ctx, r.cfg.CreateDelay); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(spec, false)
}

// addLocked records sandbox spec.ID (warm, or with spec's containers);
// r.mu is held.
func (r *Runtime) addLocked(spec runtime.Spec, warm bool) error {
	if _, ok := r.sandboxes[spec.ID]; ok {
		return errdefs.AlreadyExists("sandbox %s already exists", spec.ID)
	}
	sb := &sandbox{ID: spec.ID, Labels: spec.Labels, Containers: map[string]*containerState{},
		Warm: warm, changed: make(chan struct{})}
	for _, c := range spec.Containers {
		sb.Containers[c.Name] = &containerState{Spec: c}
		sb.Order = append(sb.Order, c.Name)
	}
	if err := r.save(sb); err != nil {
		return fmt.Errorf("sim runtime: %w", err)
	}
	r.sandboxes[spec.ID] = sb
	return nil
}

// WarmClass implements runtime.Warmer: a simulated sandbox serves any
// size and holds no memory.
func (r *Runtime) WarmClass() runtime.WarmClass { return runtime.WarmClass{} }

// Warm implements runtime.Warmer: the warm sandbox costs CreateDelay, as
// a sandbox does.
func (r *Runtime) Warm(ctx context.Context, spec runtime.Spec) error {
	if len(spec.Containers) > 0 {
		return errdefs.InvalidArgument("sim runtime: warm sandbox %s: a warm sandbox has no containers", spec.ID)
	}
	if err := sleepCtx(ctx, r.cfg.CreateDelay); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(spec, true)
}

// Claim implements runtime.Warmer: at no cost, the warm sandbox's record
// becomes the task's.
func (r *Runtime) Claim(ctx context.Context, warmID string, spec runtime.Spec) error {
	if err := spec.ValidateSimulated(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	warm, ok := r.sandboxes[warmID]
	if !ok || !warm.Warm {
		return errdefs.NotFound("no warm sandbox %s", warmID)
	}
	if err := r.addLocked(spec, false); err != nil {
		return err
	}
	delete(r.sandboxes, warmID)
	if err := os.Remove(r.path(warmID)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("sim runtime: %w", err)
	}
	return nil
}

func (r *Runtime) get(id, container string) (*sandbox, *containerState, error) {
	sb, ok := r.sandboxes[id]
	if !ok {
		return nil, nil, runtime.SandboxNotFound(id)
	}
	if container == "" {
		return sb, nil, nil
	}
	c, ok := sb.Containers[container]
	if !ok {
		return nil, nil, runtime.ContainerNotFound(id, container)
	}
	return sb, c, nil
}

// behaviour is what a container's arguments make it do.
type behaviour struct {
	exitCode      int           // for "exit N"
	exits         bool          // exits on its own
	after         time.Duration // ... after this long
	ignoreSIGTERM bool
}

func parse(args []string) behaviour {
	if len(args) >= 3 && (args[0] == "sh" || args[0] == "/bin/sh") && args[1] == "-c" {
		return parseScript(strings.Join(args[2:], " "))
	}
	if len(args) == 1 && args[0] == "ignore-sigterm" {
		return behaviour{ignoreSIGTERM: true}
	}
	b := behaviour{exits: true}
	if b.step(args) {
		return b
	}
	return behaviour{} // a service: runs until signalled
}

// parseScript reads a shell script as a sequence of statements separated by
// ";" or newlines: sleeps add up, "exit N" ends it, "trap ” TERM" ignores
// SIGTERM, a loop runs forever, and other commands take no time. A script
// that ends without "exit" exits 0.
func parseScript(script string) behaviour {
	b := behaviour{exits: true}
	for _, stmt := range strings.FieldsFunc(script, func(r rune) bool { return r == ';' || r == '\n' }) {
		f := strings.Fields(stmt)
		switch {
		case len(f) == 0:
		case strings.TrimSpace(stmt) == "trap '' TERM":
			b.ignoreSIGTERM = true
		case f[0] == "while" || f[0] == "for" || f[0] == "until":
			b.exits = false
			return b
		case f[0] == "exit":
			b.step(f)
			return b
		default:
			b.step(f)
		}
	}
	return b
}

// step applies one simple command; it reports whether it understood it.
func (b *behaviour) step(f []string) bool {
	switch {
	case len(f) == 2 && f[0] == "exit":
		n, err := strconv.Atoi(f[1])
		if err != nil {
			return false
		}
		b.exitCode = n & 0xff
		return true
	case len(f) == 1 && f[0] == "exit":
		return true
	case len(f) == 2 && f[0] == "sleep":
		secs, err := strconv.ParseFloat(f[1], 64)
		if err != nil || secs < 0 {
			b.exits = false // sleep infinity and friends
			return true
		}
		b.after += time.Duration(secs * float64(time.Second))
		return true
	case len(f) >= 1 && (f[0] == "true" || f[0] == "echo"):
		return true
	case len(f) >= 1 && f[0] == "false":
		b.exitCode = 1
		return true
	}
	return false
}

// settle records the exit of a container whose time has come; the caller
// holds r.mu. It reports whether anything changed.
func (r *Runtime) settle(sb *sandbox, c *containerState) bool {
	if c.Exit != nil || c.StartedAt.IsZero() {
		return false
	}
	b := parse(c.Spec.Args)
	if !b.exits {
		return false
	}
	at := c.StartedAt.Add(b.after)
	if r.cfg.Now().Before(at) {
		return false
	}
	c.Exit = &runtime.ExitStatus{Code: b.exitCode, ExitedAt: at}
	return true
}

func (r *Runtime) notify(sb *sandbox) {
	close(sb.changed)
	sb.changed = make(chan struct{})
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, id, container string) error {
	if err := sleepCtx(ctx, r.cfg.StartDelay); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, c, err := r.get(id, container)
	if err != nil {
		return err
	}
	if !c.StartedAt.IsZero() {
		return runtime.AlreadyStarted(id, container)
	}
	c.StartedAt = r.cfg.Now()
	r.settle(sb, c)
	if err := r.save(sb); err != nil {
		return fmt.Errorf("sim runtime: %w", err)
	}
	r.notify(sb)
	return nil
}

// Restart implements runtime.Restarter: the container's behaviour runs
// again from now.
func (r *Runtime) Restart(ctx context.Context, id, container string) error {
	if err := sleepCtx(ctx, r.cfg.StartDelay); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, c, err := r.get(id, container)
	if err != nil {
		return err
	}
	r.settle(sb, c)
	if c.StartedAt.IsZero() {
		return runtime.NeverStarted(id, container)
	}
	if c.Exit == nil {
		return runtime.StillRuns(id, container)
	}
	c.StartedAt, c.Exit = r.cfg.Now(), nil
	c.Restarts++
	r.settle(sb, c)
	if err := r.save(sb); err != nil {
		return fmt.Errorf("sim runtime: %w", err)
	}
	r.notify(sb)
	return nil
}

// Wait implements runtime.Runtime.
func (r *Runtime) Wait(ctx context.Context, id, container string) (runtime.ExitStatus, error) {
	for {
		r.mu.Lock()
		sb, c, err := r.get(id, container)
		if err != nil {
			r.mu.Unlock()
			return runtime.ExitStatus{}, err
		}
		if r.settle(sb, c) {
			if err := r.save(sb); err != nil {
				r.mu.Unlock()
				return runtime.ExitStatus{}, fmt.Errorf("sim runtime: %w", err)
			}
			r.notify(sb)
		}
		if c.Exit != nil {
			st := *c.Exit
			r.mu.Unlock()
			return st, nil
		}
		changed := sb.changed
		wake := time.Duration(-1)
		if b := parse(c.Spec.Args); b.exits && !c.StartedAt.IsZero() {
			wake = c.StartedAt.Add(b.after).Sub(r.cfg.Now())
		}
		r.mu.Unlock()
		if err := waitChange(ctx, changed, wake); err != nil {
			return runtime.ExitStatus{}, err
		}
	}
}

// waitChange blocks until changed is closed, ctx is done, or, when wake is
// not negative, wake has passed.
func waitChange(ctx context.Context, changed <-chan struct{}, wake time.Duration) error {
	var timer <-chan time.Time
	if wake >= 0 {
		t := time.NewTimer(wake)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-timer:
	}
	return nil
}

// Signal implements runtime.Runtime.
func (r *Runtime) Signal(ctx context.Context, id, container string, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, c, err := r.get(id, container)
	if err != nil {
		return err
	}
	r.settle(sb, c)
	if c.Exit != nil || c.StartedAt.IsZero() {
		return nil
	}
	switch sig {
	case syscall.SIGCHLD, syscall.SIGWINCH, syscall.SIGURG, syscall.SIGCONT:
		return nil
	case syscall.SIGTERM:
		if parse(c.Spec.Args).ignoreSIGTERM {
			return nil
		}
	}
	c.Exit = &runtime.ExitStatus{Code: 128 + int(sig), ExitedAt: r.cfg.Now()}
	if err := r.save(sb); err != nil {
		return fmt.Errorf("sim runtime: %w", err)
	}
	r.notify(sb)
	return nil
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, _, err := r.get(id, "")
	if err != nil {
		return err
	}
	if err := os.Remove(r.path(id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("sim runtime: %w", err)
	}
	delete(r.sandboxes, id)
	// Wake waiters: they will find the sandbox gone.
	close(sb.changed)
	sb.changed = make(chan struct{})
	return nil
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.SandboxInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.SandboxInfo, 0, len(r.sandboxes))
	for _, sb := range r.sandboxes {
		info := runtime.SandboxInfo{ID: sb.ID, Labels: map[string]string{}, Warm: sb.Warm}
		for k, v := range sb.Labels {
			info.Labels[k] = v
		}
		for _, name := range sb.Order {
			c := sb.Containers[name]
			r.settle(sb, c)
			st := runtime.ContainerState{Name: name, Started: !c.StartedAt.IsZero(), Restarts: c.Restarts}
			if c.Exit != nil {
				e := *c.Exit
				st.Exit = &e
			}
			info.Containers = append(info.Containers, st)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Simulated implements runtime.Simulated.
func (r *Runtime) Simulated() bool { return true }

var _ runtime.Execer = (*Runtime)(nil)

// Exec implements runtime.Execer: the command runs no process; it exits
// with the code its arguments say (as a container's do), at once.
func (r *Runtime) Exec(ctx context.Context, id, container string, p runtime.ExecProcess) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, c, err := r.get(id, container)
	if err != nil {
		return 0, err
	}
	r.settle(sb, c)
	if c.StartedAt.IsZero() || c.Exit != nil {
		return 0, errdefs.Conflict("container %q of sandbox %s is not running", container, id)
	}
	b := parse(p.Args)
	if !b.exits {
		return 0, errdefs.InvalidArgument("sim: exec of %v would never end; use exit N, true, false or sleep", p.Args)
	}
	return b.exitCode, nil
}
