package store

import (
	"context"
	"errors"
)

// ErrFenced is the kind of error a fenced write fails with when its fence
// no longer holds: the leadership that made the write is over (a successor
// may already lead), so the write was refused and nothing changed. Compare
// with errors.Is or IsFenced; it is not a conflict to retry.
var ErrFenced = errors.New("fenced out: leadership lost")

// IsFenced reports whether err is of kind ErrFenced.
func IsFenced(err error) bool { return errors.Is(err, ErrFenced) }

// Fence is a condition a distributed store checks in the same transaction
// as a write: the key Key (an absolute key of the back end, such as an
// election key, outside the store's own key space) must exist and have
// been created at revision Revision. A leader's election key is such a
// fence: once its lease expires the key is gone, and every write fenced by
// it is refused.
type Fence struct {
	Key      string
	Revision int64
}

type fenceKey struct{}

// WithFence returns a context whose Put and Delete calls are fenced by f
// on a store that supports fences (etcd). A single-process store (bbolt)
// has no other writer to fence out and ignores it. The controllers run
// with such a context; API requests do not, so that their writes, by any
// replica, stay unfenced.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence of ctx, if it has one.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}
