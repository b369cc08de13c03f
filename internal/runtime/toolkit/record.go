package toolkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
)

// Record is what every back end keeps of a sandbox, in
// <Store.Dir>/<id>/sandbox.json: its spec (with the defaults filled in),
// whether Create finished, and its containers' starts and restarts. A
// back end's own record embeds it and adds its fields beside these (the
// JSON stays flat).
type Record struct {
	Spec      runtime.Spec    `json:"spec"`
	CreatedAt time.Time       `json:"createdAt"`
	Ready     bool            `json:"ready"` // Create finished
	Started   map[string]bool `json:"started,omitempty"`
	// Restarts counts each container's restarts (runtime.Restarter).
	Restarts map[string]int `json:"restarts,omitempty"`
	// Warm marks a warm sandbox no task has claimed (runtime.Warmer):
	// its Spec is Warm's, with no containers.
	Warm bool `json:"warm,omitempty"`
	// Home is the ID the sandbox was made under, when it is not Spec.ID:
	// a claimed warm sandbox keeps its warm ID's directory, cgroup and
	// the OCI runtime's IDs (processes that run depend on them), and is
	// known by its task's ID through Store's mapping (Store.Claim).
	Home string `json:"home,omitempty"`
}

// HomeID is the ID the sandbox's directory and cgroup are named by:
// Home for a claimed warm sandbox, else Spec.ID.
func (rec *Record) HomeID() string {
	if rec.Home != "" {
		return rec.Home
	}
	return rec.Spec.ID
}

// Sandbox is a back end's record of a sandbox: a Record, usually
// embedded, and what the back end keeps beside it.
type Sandbox interface {
	// Base returns the record's common part.
	Base() *Record
}

// Base implements Sandbox.
func (rec *Record) Base() *Record { return rec }

// Container returns the spec of the sandbox's container name.
func (rec *Record) Container(name string) (runtime.ContainerSpec, bool) {
	for _, c := range rec.Spec.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return runtime.ContainerSpec{}, false
}

// Names lists the sandbox's containers' names, in the spec's order.
func (rec *Record) Names() []string {
	var names []string
	for _, c := range rec.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// CountRestart counts one more restart of container name.
func (rec *Record) CountRestart(name string) {
	if rec.Restarts == nil {
		rec.Restarts = map[string]int{}
	}
	rec.Restarts[name]++
}

// Info is what List reports of the sandbox: its ID, a copy of its labels
// and each container's Started and Restarts, completed by state (which
// may be nil) with what the back end knows beyond the record (its exit).
func (rec *Record) Info(state func(c *runtime.ContainerState)) runtime.SandboxInfo {
	info := runtime.SandboxInfo{ID: rec.Spec.ID, Labels: map[string]string{}, Warm: rec.Warm}
	for k, v := range rec.Spec.Labels {
		info.Labels[k] = v
	}
	containers := rec.Spec.Containers
	if rec.Warm {
		containers = nil // primed ahead: its claim's containers
	}
	for _, c := range containers {
		cs := runtime.ContainerState{Name: c.Name, Started: rec.Started[c.Name], Restarts: rec.Restarts[c.Name]}
		if state != nil {
			state(&cs)
		}
		info.Containers = append(info.Containers, cs)
	}
	return info
}

// Store keeps a back end's sandbox records, one directory per sandbox
// under Dir, and serialises what changes a sandbox with a lock per
// sandbox. Set Dir (and Reserved) before the first call; a Store is safe
// for concurrent use.
type Store struct {
	// Dir holds one directory per sandbox, named by its ID.
	Dir string
	// Reserved are entries of Dir that are no sandbox (an OCI runtime's
	// state, a cache): Load finds no sandbox there, Make refuses them as
	// IDs, IDs skips them. Entries whose name starts with a dot are
	// skipped too.
	Reserved []string

	locks Locks
}

// SandboxDir is sandbox id's directory: <Dir>/<id>, or for a claimed
// warm sandbox the warm sandbox's directory its task's ID maps to.
func (s *Store) SandboxDir(id string) string {
	p := filepath.Join(s.Dir, id)
	if s.reachable(id) {
		if target, err := os.Readlink(p); err == nil && s.reachable(target) {
			return filepath.Join(s.Dir, target)
		}
	}
	return p
}

// Home is the ID sandbox id's directory is named by: the warm sandbox's
// for a claimed one (the name of its cgroup and of the OCI runtime's
// objects made ahead), else id itself.
func (s *Store) Home(id string) string { return filepath.Base(s.SandboxDir(id)) }

// The mapping of a claimed warm sandbox: <Dir>/<task ID> is a symbolic
// link to the warm sandbox's directory (a name in Dir), made before the
// record there becomes the task's (Claim). The record decides: a link
// whose target's record is not its task's (a Claim that crashed before
// its record was written, or a Delete after it removed the directory)
// is stale, names no sandbox, and goes when its ID is made again.

// staleLink reports whether <Dir>/<id> is a mapping that names no sandbox.
func (s *Store) staleLink(id string) bool {
	p := filepath.Join(s.Dir, id)
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return false
	}
	var rec Record
	return s.Load(id, &rec) != nil
}

// Claim makes task ID taskID map to warm sandbox warmID's directory and
// rewrites the record there as rec (whose Spec.ID is taskID and Home
// warmID): the link first, synced, then the record, atomically, which is
// the commit. A crash before the record is written leaves the warm
// sandbox as it was and a stale link; after, the task's sandbox. An
// existing taskID is an error of kind errdefs.ErrAlreadyExists. The
// caller holds both sandboxes' locks and has checked warmID's record.
func (s *Store) Claim(warmID string, rec Sandbox) error {
	b := rec.Base()
	taskID := b.Spec.ID
	if !s.reachable(taskID) {
		return errdefs.InvalidArgument("sandbox ID %q is reserved; choose another", taskID)
	}
	if b.Home != warmID || taskID == warmID {
		return fmt.Errorf("claim of warm sandbox %s: the record's home is %q, its ID %q", warmID, b.Home, taskID)
	}
	link := filepath.Join(s.Dir, taskID)
	if s.staleLink(taskID) {
		if err := os.Remove(link); err != nil {
			return err
		}
	}
	if err := os.Symlink(warmID, link); err != nil {
		if os.IsExist(err) {
			return errdefs.AlreadyExists("sandbox %s already exists", taskID)
		}
		return err
	}
	if err := fsutil.SyncDir(s.Dir); err != nil {
		os.Remove(link)
		return err
	}
	if err := s.Save(rec); err != nil {
		os.Remove(link)
		return err
	}
	return nil
}

// Unlink removes sandbox id's mapping to a warm sandbox's directory, if
// it has one (Delete does once the directory is gone).
func (s *Store) Unlink(id string) error {
	p := filepath.Join(s.Dir, id)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return os.Remove(p)
	}
	return nil
}

// Lock serialises what changes sandbox id (Create, Start, Restart,
// Delete); it blocks until the lock is free and returns the function
// that frees it.
func (s *Store) Lock(id string) (unlock func()) { return s.locks.Lock(id) }

func (s *Store) path(id string) string { return filepath.Join(s.SandboxDir(id), "sandbox.json") }

// reachable reports whether id names an entry of Dir that may hold a
// sandbox: one path element, not reserved.
func (s *Store) reachable(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\x00") && !slices.Contains(s.Reserved, id)
}

// Make makes the directory of rec's sandbox and writes its record there
// first, so that a Delete can clean up after a Create that fails or
// crashes half-way. An existing sandbox (or directory) is an error of
// kind errdefs.ErrAlreadyExists, a reserved ID one of kind
// errdefs.ErrInvalidArgument. The caller holds the sandbox's lock.
func (s *Store) Make(rec Sandbox) error {
	id := rec.Base().Spec.ID
	if !s.reachable(id) {
		return errdefs.InvalidArgument("sandbox ID %q is reserved; choose another", id)
	}
	dir := s.SandboxDir(id)
	if s.staleLink(id) {
		dir = filepath.Join(s.Dir, id)
		if err := os.Remove(dir); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return errdefs.AlreadyExists("sandbox %s already exists", id)
		}
		return err
	}
	if err := s.Save(rec); err != nil {
		os.RemoveAll(dir)
		return err
	}
	return nil
}

// Exists reports whether sandbox id has a directory (its own, or a warm
// sandbox's it claimed).
func (s *Store) Exists(id string) bool {
	if !s.reachable(id) || s.staleLink(id) {
		return false
	}
	_, err := os.Lstat(filepath.Join(s.Dir, id))
	return err == nil
}

// Save writes the sandbox's record atomically (a temporary file, synced,
// then renamed).
func (s *Store) Save(rec Sandbox) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.path(rec.Base().Spec.ID), data, "")
}

// Load reads sandbox id's record into rec; an error of kind
// errdefs.ErrNotFound when there is none. Started is never nil.
func (s *Store) Load(id string, rec Sandbox) error {
	if !s.reachable(id) {
		return runtime.SandboxNotFound(id)
	}
	data, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return runtime.SandboxNotFound(id)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, rec); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	// A warm sandbox's directory, once claimed, holds its task's record:
	// the warm ID names nothing any more (nor does a stale mapping).
	if b := rec.Base(); b.Spec.ID != id {
		return runtime.SandboxNotFound(id)
	}
	if b := rec.Base(); b.Started == nil {
		b.Started = map[string]bool{}
	}
	return nil
}

// LoadContainer is Load, with an error of kind errdefs.ErrNotFound also
// when the sandbox has no container name.
func (s *Store) LoadContainer(id, name string, rec Sandbox) error {
	if err := s.Load(id, rec); err != nil {
		return err
	}
	// A warm sandbox's containers (primed ahead) are its claim's.
	if _, ok := rec.Base().Container(name); !ok || rec.Base().Warm {
		return runtime.ContainerNotFound(id, name)
	}
	return nil
}

// IDs lists the sandboxes with a directory in Dir and the task IDs that
// map to a claimed warm sandbox's, sorted (reserved and hidden entries
// left out); the caller loads their records, which finds nothing for a
// claimed warm sandbox's own ID or a stale mapping.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if (e.IsDir() || e.Type()&os.ModeSymlink != 0) && !strings.HasPrefix(e.Name(), ".") && s.reachable(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Locks is a lock per key (a sandbox ID), made on first use and dropped
// once nobody holds or waits for it. The zero value is ready to use.
type Locks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Lock blocks until key's lock is free, takes it, and returns the
// function that frees it.
func (l *Locks) Lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*keyLock{}
	}
	k := l.locks[key]
	if k == nil {
		k = &keyLock{}
		l.locks[key] = k
	}
	k.refs++
	l.mu.Unlock()
	k.mu.Lock()
	return func() {
		k.mu.Unlock()
		l.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
}
