package keyring

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Prefix is where keys are stored: Prefix + access key ID.
const Prefix = "credentials/"

// Config configures a Keyring.
type Config struct {
	// Store holds the sealed keys. Required.
	Store store.Store
	// Sealer seals and opens secrets: the master key. Required.
	Sealer *auth.Sealer
	Logger *slog.Logger
}

// Keyring implements auth.Keyring over the store.
type Keyring struct {
	st     store.Store
	sealer *auth.Sealer
	log    *slog.Logger

	mu sync.RWMutex
	// live is true while the watch is running and the cache follows the
	// store; otherwise Lookup reads the store.
	live bool
	keys map[string]entry
	// tombs are deleted keys, by the revision of their deletion (pending:
	// deleted here, the watch's event not seen yet), so that an older
	// event never brings a key back.
	tombs map[string]int64
}

type entry struct {
	key auth.Key
	rev int64
}

const pending = math.MaxInt64

var _ auth.Keyring = (*Keyring)(nil)

// New checks cfg and every stored key: a key the master key does not open
// is an *OpenError (of kind errdefs.ErrInvalidArgument) naming it, so that a
// wrong master key stops the server at start rather than locking users out
// one request at a time.
func New(ctx context.Context, cfg Config) (*Keyring, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errdefs.InvalidArgument("keyring: Store and Sealer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Keyring{st: cfg.Store, sealer: cfg.Sealer, log: cfg.Logger, keys: map[string]entry{}, tombs: map[string]int64{}}
	if _, err := r.List(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func storeKey(id string) string { return Prefix + id }

func (r *Keyring) open(kv store.KV) (auth.Key, error) {
	k, err := auth.OpenKey(r.sealer, kv.Value)
	if err != nil {
		return auth.Key{}, &OpenError{StoreKey: kv.Key, Err: err}
	}
	if storeKey(k.AccessKeyID) != kv.Key {
		return auth.Key{}, &OpenError{StoreKey: kv.Key, Err: errdefs.InvalidArgument("it holds access key %s", k.AccessKeyID)}
	}
	return k, nil
}

// Lookup implements auth.Keyring. A key in the cache is answered without
// blocking while the watch runs; a key the cache does not hold is read from
// the store, so that a key just created through another replica (whose
// event has not arrived yet) verifies at once.
func (r *Keyring) Lookup(ctx context.Context, id string) (auth.Key, error) {
	r.mu.RLock()
	live := r.live
	e, ok := r.keys[id]
	r.mu.RUnlock()
	if live && ok {
		return e.key, nil
	}
	if id == "" || strings.Contains(id, "/") {
		return auth.Key{}, errdefs.NotFound("unknown access key ID %s", id)
	}
	kv, err := r.st.Get(ctx, storeKey(id))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return auth.Key{}, errdefs.NotFound("unknown access key ID %s", id)
		}
		return auth.Key{}, err
	}
	k, err := r.open(kv)
	if err == nil && live {
		r.mu.Lock()
		r.applyPut(k, kv.Revision)
		r.mu.Unlock()
	}
	return k, err
}

// List implements auth.Keyring; it reads the store.
func (r *Keyring) List(ctx context.Context) ([]auth.Key, error) {
	kvs, _, err := r.st.List(ctx, Prefix)
	if err != nil {
		return nil, err
	}
	out := make([]auth.Key, 0, len(kvs))
	for _, kv := range kvs {
		k, err := r.open(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// Put implements auth.Keyring: the secret is sealed before it is stored.
func (r *Keyring) Put(ctx context.Context, k auth.Key) error {
	return r.put(ctx, k, store.AnyRevision)
}

// Create stores k, sealed, only if no key has its access key ID: one
// create-only write, so that of callers racing on one store exactly one
// succeeds and the others get an error of kind errdefs.ErrAlreadyExists.
func (r *Keyring) Create(ctx context.Context, k auth.Key) error {
	return r.put(ctx, k, store.MustNotExist)
}

func (r *Keyring) put(ctx context.Context, k auth.Key, expectedRevision int64) error {
	data, err := auth.SealKey(r.sealer, k)
	if err != nil {
		return err
	}
	rev, err := r.st.Put(ctx, storeKey(k.AccessKeyID), data, expectedRevision)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.applyPut(k, rev)
	r.mu.Unlock()
	return nil
}

// Delete implements auth.Keyring. The key stops verifying on this
// Keyring before Delete returns.
func (r *Keyring) Delete(ctx context.Context, id string) error {
	if id == "" || strings.Contains(id, "/") {
		return errdefs.NotFound("unknown access key ID %s", id)
	}
	err := r.st.Delete(ctx, storeKey(id), store.AnyRevision)
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("unknown access key ID %s", id)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.keys, id)
	if _, ok := r.tombs[id]; !ok {
		r.tombs[id] = pending
	}
	r.mu.Unlock()
	return nil
}

// applyPut records k at rev unless a newer write or deletion is known.
// r.mu must be held.
func (r *Keyring) applyPut(k auth.Key, rev int64) {
	if e, ok := r.keys[k.AccessKeyID]; ok && e.rev >= rev {
		return
	}
	if t, ok := r.tombs[k.AccessKeyID]; ok {
		if t >= rev {
			return
		}
		delete(r.tombs, k.AccessKeyID)
	}
	r.keys[k.AccessKeyID] = entry{key: k, rev: rev}
}

func (r *Keyring) apply(ev store.Event) {
	id := strings.TrimPrefix(ev.KV.Key, Prefix)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Type {
	case store.EventPut:
		k, err := r.open(ev.KV)
		if err != nil {
			r.log.Error("keyring: a stored key does not open; it cannot sign requests", "key", ev.KV.Key, "err", err)
			delete(r.keys, id)
			return
		}
		r.applyPut(k, ev.KV.Revision)
	case store.EventDelete:
		if e, ok := r.keys[id]; ok && e.rev < ev.KV.Revision {
			delete(r.keys, id)
		}
		if t, ok := r.tombs[id]; !ok || t == pending || t < ev.KV.Revision {
			r.tombs[id] = ev.KV.Revision
		}
	}
	// No event older than this one can come any more.
	for tid, t := range r.tombs {
		if t <= ev.KV.Revision {
			delete(r.tombs, tid)
		}
	}
}

// reset loads a listing at revision rev into the cache, keeping what was
// written through this Keyring after rev.
func (r *Keyring) reset(kvs []store.KV, rev int64) {
	keys := make(map[string]entry, len(kvs))
	for _, kv := range kvs {
		k, err := r.open(kv)
		if err != nil {
			r.log.Error("keyring: a stored key does not open; it cannot sign requests", "key", kv.Key, "err", err)
			continue
		}
		keys[k.AccessKeyID] = entry{key: k, rev: kv.Revision}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.keys {
		if e.rev > rev {
			keys[id] = e
		}
	}
	for id, t := range r.tombs {
		if t > rev {
			delete(keys, id)
		} else {
			delete(r.tombs, id)
		}
	}
	r.keys = keys
	r.live = true
}

func (r *Keyring) setLive(live bool) {
	r.mu.Lock()
	r.live = live
	r.mu.Unlock()
}

// Run keeps the cache following the store until ctx is done. Lookups read
// the store whenever the watch is down.
func (r *Keyring) Run(ctx context.Context) {
	defer r.setLive(false)
	for ctx.Err() == nil {
		kvs, rev, err := r.st.List(ctx, Prefix)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("keyring: listing keys failed", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		ch, err := r.st.Watch(ctx, Prefix, rev)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, errdefs.ErrUnavailable) {
				r.log.Error("keyring: watching keys failed", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		r.reset(kvs, rev)
		for ev := range ch {
			r.apply(ev)
		}
		r.setLive(false)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// OpenError is a stored key that does not open: sealed under another
// master key than this Keyring's, altered, or not a sealed key. It wraps
// the cause, of kind errdefs.ErrInvalidArgument.
type OpenError struct {
	// StoreKey is the store's key of the record.
	StoreKey string
	Err      error
}

func (e *OpenError) Error() string { return "keyring: " + e.StoreKey + ": " + e.Err.Error() }
func (e *OpenError) Unwrap() error { return e.Err }
