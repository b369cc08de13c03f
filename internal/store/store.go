package store

import (
	"context"
	"unicode/utf8"

	"vessel.dev/vessel/internal/errdefs"
)

// Revision preconditions for Put and Delete.
const (
	// AnyRevision makes Put and Delete unconditional.
	AnyRevision int64 = -1
	// MustNotExist makes Put succeed only if the key does not exist yet.
	MustNotExist int64 = 0
)

// KV is one stored value. Revision is the store-wide revision at which the
// value was last written; revisions only grow, and are never 0 for a stored
// value. Writes made at the same time may share a revision (see
// Event.More); writes made one after another never do.
//
// Values returned by a Store are shared: callers must not modify Value.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// EventType says what happened to a key.
type EventType int

const (
	// EventPut is a create or an update.
	EventPut EventType = iota + 1
	// EventDelete is a deletion; KV.Value is nil and KV.Revision is the
	// revision of the deletion.
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change seen by a watch.
type Event struct {
	Type EventType
	KV   KV
	// More says that the next event has the same revision. A distributed
	// store commits concurrent writes together, so several keys may change
	// at one revision; their events arrive one after another, all but the
	// last with More set. A watcher that waits for a revision has seen
	// all of it only at an event without More.
	More bool
}

// Store is an ordered key-value store with revisions.
//
// Keys are non-empty UTF-8 strings; "/" has no special meaning beyond being
// used in prefixes by convention. All methods are safe for concurrent use.
// An empty or malformed key, or a precondition below AnyRevision, is an
// error of kind errdefs.ErrInvalidArgument.
type Store interface {
	// Get returns the value of key. It does not block on other readers.
	// Returns an error of kind errdefs.ErrNotFound if the key does not exist.
	Get(ctx context.Context, key string) (KV, error)

	// List returns every key that starts with prefix, in key order, and the
	// store's current revision: the listing reflects every change up to and
	// including it, so Watch(ctx, prefix, rev) continues from it without
	// missing or repeating a change. An empty prefix lists everything. A
	// prefix that matches nothing returns an empty slice and no error.
	List(ctx context.Context, prefix string) ([]KV, int64, error)

	// Put writes value under key and returns the new revision.
	//
	// expectedRevision is a precondition: AnyRevision writes unconditionally;
	// MustNotExist requires that the key does not exist (else an error of
	// kind errdefs.ErrAlreadyExists); any positive value requires that the
	// key's current revision equals it (else errdefs.ErrConflict, or
	// errdefs.ErrNotFound if the key does not exist). The store keeps its own
	// copy of value.
	Put(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error)

	// Delete removes key. expectedRevision works as for Put (MustNotExist is
	// not meaningful and is treated as AnyRevision). Returns an error of kind
	// errdefs.ErrNotFound if the key does not exist.
	Delete(ctx context.Context, key string, expectedRevision int64) error

	// Watch returns a channel of the changes to keys under prefix made after
	// revision afterRevision (use the revision returned by List to watch
	// without missing or repeating a change). It does not block. Returns an
	// error of kind errdefs.ErrConflict if changes after afterRevision are no
	// longer kept (the caller must List again). The channel is closed when
	// ctx is done or the store is closed; it is closed too whenever the
	// store cannot send every change (a watcher that fell too far behind,
	// changes compacted before a distributed store could resume the watch),
	// and the watcher must then List and watch again: a change is never
	// skipped silently. Events
	// arrive in revision order (the changes of one revision one after
	// another, see Event.More). A negative afterRevision is an error of kind
	// errdefs.ErrInvalidArgument; one beyond the current revision is
	// accepted and only changes after it are sent.
	Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan Event, error)

	// Close releases the store. Later calls of the other methods return an
	// error of kind errdefs.ErrUnavailable; open watch channels are closed.
	// Closing again does nothing and returns nil.
	Close() error
}

// CheckKey returns an error of kind errdefs.ErrInvalidArgument unless key
// is a non-empty UTF-8 string, as every Store requires.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errdefs.InvalidArgument("key is empty; keys are non-empty UTF-8 strings such as \"tasks/abc\"")
	case !utf8.ValidString(key):
		return errdefs.InvalidArgument("key %q is not valid UTF-8", key)
	}
	return nil
}

// CheckExpectedRevision returns an error of kind
// errdefs.ErrInvalidArgument unless rev is a precondition Put and Delete
// accept: AnyRevision, MustNotExist or a revision.
func CheckExpectedRevision(rev int64) error {
	if rev < AnyRevision {
		return errdefs.InvalidArgument("expected revision %d: give store.AnyRevision (-1), store.MustNotExist (0) or a revision returned by the store", rev)
	}
	return nil
}
