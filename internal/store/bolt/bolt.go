package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Defaults for Config.
const (
	DefaultWatchHistory = 10000
	DefaultWatchBuffer  = 1024
	DefaultTimeout      = 2 * time.Second
)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("revision")
)

// Config says where the store lives and how much it keeps for watches.
type Config struct {
	// Path is the bbolt file; it is created if missing. Required.
	Path string
	// WatchHistory is how many recent changes are kept in memory so that
	// Watch can start from an earlier revision. Default DefaultWatchHistory.
	WatchHistory int
	// WatchBuffer is how many changes a watcher may fall behind before its
	// channel is closed. Default DefaultWatchBuffer.
	WatchBuffer int
	// Timeout is how long Open waits for the file lock held by another
	// process. Default DefaultTimeout.
	Timeout time.Duration
}

// Store is the bbolt back end of store.Store. Create it with Open.
type Store struct {
	path    string
	db      *bbolt.DB
	history int
	buffer  int

	// life guards closed: every method holds it for reading, Close for
	// writing, so Close waits for calls in flight.
	life    sync.RWMutex
	closed  bool
	closing chan struct{} // closed by Close; stops watcher goroutines

	// write serialises write transactions together with publishing their
	// events, so that events are published in revision order.
	write sync.Mutex
	// pending are writes waiting for the next commit: whoever takes write
	// commits every pending write in one transaction (one fsync), so that
	// concurrent writers share the cost of the disk flush.
	pendMu  sync.Mutex
	pending []*writeOp

	// mu guards the history ring, histFrom and watchers.
	mu sync.Mutex
	// ring holds the last changes, oldest first, at most history of them.
	ring     []store.Event
	ringHead int // index of the oldest event in ring once it is full
	// histFrom is the revision after which every change is in ring.
	histFrom int64
	watchers map[*watcher]struct{}
}

var _ store.Store = (*Store)(nil)

type watcher struct {
	prefix string
	after  int64
	live   chan store.Event // closed by whoever removes the watcher from Store.watchers
}

// Open opens or creates the bbolt file at cfg.Path. It fails with an error
// of kind errdefs.ErrInvalidArgument if cfg is incomplete or wrong, and of
// kind errdefs.ErrUnavailable if another process holds the file longer than
// cfg.Timeout.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errdefs.InvalidArgument("bolt store: Config.Path is empty; give the path of the database file, e.g. <data dir>/vessel.db")
	}
	if cfg.WatchHistory < 0 {
		return nil, errdefs.InvalidArgument("bolt store: Config.WatchHistory is %d; give 0 for the default (%d) or a positive number", cfg.WatchHistory, DefaultWatchHistory)
	}
	if cfg.WatchBuffer < 0 {
		return nil, errdefs.InvalidArgument("bolt store: Config.WatchBuffer is %d; give 0 for the default (%d) or a positive number", cfg.WatchBuffer, DefaultWatchBuffer)
	}
	if cfg.Timeout < 0 {
		return nil, errdefs.InvalidArgument("bolt store: Config.Timeout is %v; give 0 for the default (%v) or a positive duration", cfg.Timeout, DefaultTimeout)
	}
	if cfg.WatchHistory == 0 {
		cfg.WatchHistory = DefaultWatchHistory
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = DefaultWatchBuffer
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}

	db, err := bbolt.Open(cfg.Path, 0o600, &bbolt.Options{Timeout: cfg.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, errdefs.Unavailable("bolt store: %s is locked by another process (waited %v)", cfg.Path, cfg.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt store: open %s: %w", cfg.Path, err)
	}
	var rev int64
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketKV); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		rev, err = readRev(meta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt store: initialise %s: %w", cfg.Path, err)
	}
	return &Store{
		path:     cfg.Path,
		db:       db,
		history:  cfg.WatchHistory,
		buffer:   cfg.WatchBuffer,
		closing:  make(chan struct{}),
		histFrom: rev,
		watchers: make(map[*watcher]struct{}),
	}, nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.begin(ctx); err != nil {
		return store.KV{}, err
	}
	defer s.life.RUnlock()
	if err := checkKey(key); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return errdefs.NotFound("key %q not found", key)
		}
		var err error
		kv, err = decode(key, v)
		return err
	})
	return kv, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, 0, err
	}
	defer s.life.RUnlock()
	kvs := []store.KV{}
	var rev int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		if rev, err = readRev(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decode(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return kvs, rev, nil
}

// Put implements store.Store. It returns once the change is on disk.
func (s *Store) Put(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := store.CheckExpectedRevision(expectedRevision); err != nil {
		return 0, err
	}
	if int64(len(value)) > bbolt.MaxValueSize-8 {
		return 0, errdefs.InvalidArgument("value for key %q is %d bytes; at most %d are accepted", key, len(value), bbolt.MaxValueSize-8)
	}
	// buf is the store's own copy: written to bbolt and, after the commit,
	// shared read-only by watch events.
	buf := make([]byte, 8+len(value))
	copy(buf[8:], value)

	var rev int64
	err := s.commit(func(tx *bbolt.Tx) (store.Event, error) {
		kvb := tx.Bucket(bucketKV)
		cur := kvb.Get([]byte(key))
		switch {
		case expectedRevision == store.MustNotExist && cur != nil:
			return store.Event{}, errdefs.AlreadyExists("key %q already exists at revision %d; put with its revision to update it", key, curRev(cur))
		case expectedRevision > 0 && cur == nil:
			return store.Event{}, errdefs.NotFound("key %q not found; put with store.MustNotExist to create it", key)
		case expectedRevision > 0 && curRev(cur) != expectedRevision:
			return store.Event{}, errdefs.Conflict("key %q is at revision %d, not the expected %d; get it again and retry", key, curRev(cur), expectedRevision)
		}
		var err error
		if rev, err = bumpRev(tx); err != nil {
			return store.Event{}, err
		}
		binary.BigEndian.PutUint64(buf[:8], uint64(rev))
		if err := kvb.Put([]byte(key), buf); err != nil {
			return store.Event{}, err
		}
		return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: buf[8:], Revision: rev}}, nil
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// Delete implements store.Store. It returns once the change is on disk.
func (s *Store) Delete(ctx context.Context, key string, expectedRevision int64) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := checkKey(key); err != nil {
		return err
	}
	if err := store.CheckExpectedRevision(expectedRevision); err != nil {
		return err
	}
	return s.commit(func(tx *bbolt.Tx) (store.Event, error) {
		kvb := tx.Bucket(bucketKV)
		cur := kvb.Get([]byte(key))
		if cur == nil {
			return store.Event{}, errdefs.NotFound("key %q not found", key)
		}
		if expectedRevision > 0 && curRev(cur) != expectedRevision {
			return store.Event{}, errdefs.Conflict("key %q is at revision %d, not the expected %d; get it again and retry", key, curRev(cur), expectedRevision)
		}
		rev, err := bumpRev(tx)
		if err != nil {
			return store.Event{}, err
		}
		if err := kvb.Delete([]byte(key)); err != nil {
			return store.Event{}, err
		}
		return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, Revision: rev}}, nil
	})
}

// writeOp is one write waiting for a commit. apply checks its
// preconditions before it changes anything, so that a failed write leaves
// the shared transaction as it found it (but for the revision counter,
// whose gaps are harmless).
type writeOp struct {
	apply func(tx *bbolt.Tx) (store.Event, error)
	ev    store.Event
	err   error
	done  chan struct{}
}

// commit applies one write as part of the next group commit and returns
// once it is on disk and its event published. Writes are applied and
// published in the order they joined the group, so revisions and events
// stay in order.
func (s *Store) commit(apply func(tx *bbolt.Tx) (store.Event, error)) error {
	op := &writeOp{apply: apply, done: make(chan struct{})}
	s.pendMu.Lock()
	s.pending = append(s.pending, op)
	s.pendMu.Unlock()

	s.write.Lock()
	s.pendMu.Lock()
	batch := s.pending
	s.pending = nil
	s.pendMu.Unlock()
	if len(batch) > 0 { // else an earlier leader committed op already
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for _, o := range batch {
				o.ev, o.err = o.apply(tx)
			}
			return nil
		})
		for _, o := range batch {
			if err != nil && o.err == nil {
				o.err = err
			}
			if o.err == nil {
				s.publish(o.ev)
			}
			close(o.done)
		}
	}
	s.write.Unlock()
	<-op.done
	return op.err
}

// Watch implements store.Store.
//
// Changes after afterRevision that are still in the in-memory history
// (Config.WatchHistory changes; none survive a restart) are sent first, then
// live ones. Each watcher may fall Config.WatchBuffer changes behind; beyond
// that its channel is closed after the changes already buffered, and
// writers never wait for it.
func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan store.Event, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	if afterRevision < 0 {
		return nil, errdefs.InvalidArgument("watch after revision %d: revisions are 0 or more; use the revision returned by List", afterRevision)
	}
	w := &watcher{prefix: prefix, after: afterRevision, live: make(chan store.Event, s.buffer)}
	s.mu.Lock()
	if afterRevision < s.histFrom {
		from := s.histFrom
		s.mu.Unlock()
		return nil, errdefs.Conflict("watch after revision %d: changes up to revision %d are no longer kept (the store keeps the last %d changes, and none from before it was opened); list again and watch from the revision List returns", afterRevision, from, s.history)
	}
	var replay []store.Event
	s.eachInRing(func(ev store.Event) {
		if ev.KV.Revision > afterRevision && strings.HasPrefix(ev.KV.Key, prefix) {
			replay = append(replay, ev)
		}
	})
	s.watchers[w] = struct{}{}
	s.mu.Unlock()

	out := make(chan store.Event)
	go s.forward(ctx, w, replay, out)
	return out, nil
}

// forward sends the replayed changes and then the live ones to out, until
// ctx is done, the store closes or the watcher is dropped for falling behind.
func (s *Store) forward(ctx context.Context, w *watcher, replay []store.Event, out chan<- store.Event) {
	defer close(out)
	defer s.drop(w)
	send := func(ev store.Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-s.closing:
		}
		return false
	}
	for _, ev := range replay {
		if !send(ev) {
			return
		}
	}
	for {
		select {
		case ev, ok := <-w.live:
			if !ok || !send(ev) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// drop removes w from the watchers, closing its live channel, unless that
// has been done already.
func (s *Store) drop(w *watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watchers[w]; ok {
		delete(s.watchers, w)
		close(w.live)
	}
}

// publish records a committed change and hands it to the watchers. Callers
// hold s.write, so changes are published in revision order.
func (s *Store) publish(ev store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) < s.history {
		s.ring = append(s.ring, ev)
	} else {
		s.histFrom = s.ring[s.ringHead].KV.Revision
		s.ring[s.ringHead] = ev
		s.ringHead = (s.ringHead + 1) % len(s.ring)
	}
	for w := range s.watchers {
		if ev.KV.Revision <= w.after || !strings.HasPrefix(ev.KV.Key, w.prefix) {
			continue
		}
		select {
		case w.live <- ev:
		default: // fallen too far behind
			delete(s.watchers, w)
			close(w.live)
		}
	}
}

// eachInRing calls f for every event in the ring, oldest first. Callers hold s.mu.
func (s *Store) eachInRing(f func(store.Event)) {
	for i := range s.ring {
		f(s.ring[(s.ringHead+i)%len(s.ring)])
	}
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Lock()
	for w := range s.watchers {
		delete(s.watchers, w)
		close(w.live)
	}
	s.ring = nil
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt store: close %s: %w", s.path, err)
	}
	return nil
}

// begin checks ctx and takes s.life for reading; callers release it unless
// begin returns an error.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return errdefs.Unavailable("bolt store %s is closed", s.path)
	}
	return nil
}

func checkKey(key string) error {
	if len(key) > bbolt.MaxKeySize {
		return errdefs.InvalidArgument("key is %d bytes; at most %d are accepted", len(key), bbolt.MaxKeySize)
	}
	return store.CheckKey(key)
}

// Values are stored as the 8-byte big-endian revision of their last write
// followed by the value itself.

func curRev(v []byte) int64 { return int64(binary.BigEndian.Uint64(v[:8])) }

// decode copies a stored value out of bbolt's memory, which is only valid
// inside the transaction.
func decode(key string, v []byte) (store.KV, error) {
	if len(v) < 8 {
		return store.KV{}, fmt.Errorf("bolt store: value of key %q is %d bytes, too short to hold a revision: database is corrupt", key, len(v))
	}
	return store.KV{Key: key, Value: bytes.Clone(v[8:]), Revision: curRev(v)}, nil
}

func readRev(meta *bbolt.Bucket) (int64, error) {
	v := meta.Get(keyRev)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("bolt store: revision counter is %d bytes, not 8: database is corrupt", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// bumpRev increments the store's revision inside tx and returns the new one.
func bumpRev(tx *bbolt.Tx) (int64, error) {
	meta := tx.Bucket(bucketMeta)
	rev, err := readRev(meta)
	if err != nil {
		return 0, err
	}
	rev++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return rev, meta.Put(keyRev, b[:])
}
