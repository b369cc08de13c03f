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
	info := runtime.SandboxInfo{ID: rec.Spec.ID, Labels: map[string]string{}}
	for k, v := range rec.Spec.Labels {
		info.Labels[k] = v
	}
	for _, c := range rec.Spec.Containers {
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

// SandboxDir is sandbox id's directory.
func (s *Store) SandboxDir(id string) string { return filepath.Join(s.Dir, id) }

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

// Exists reports whether sandbox id has a directory.
func (s *Store) Exists(id string) bool {
	if !s.reachable(id) {
		return false
	}
	_, err := os.Stat(s.SandboxDir(id))
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
	if _, ok := rec.Base().Container(name); !ok {
		return runtime.ContainerNotFound(id, name)
	}
	return nil
}

// IDs lists the sandboxes with a directory in Dir, sorted (reserved and
// hidden entries left out); the caller loads their records.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && s.reachable(e.Name()) {
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
