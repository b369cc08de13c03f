package server

import (
	"context"
	"sync/atomic"
	"time"

	"vessel.dev/vessel/internal/store"
)

// timedStore measures each call of the store it wraps
// (vessel_store_request_duration_seconds).
type timedStore struct {
	store.Store
	m   *metrics
	own *ownWrites
}

// ownWrites is what a replica knows of its own writes: the revision of
// the last one, and whether it deleted something since catchUp last
// looked (a deletion returns no revision).
type ownWrites struct {
	rev     atomic.Int64
	deleted atomic.Bool
}

// wrote records a write of this replica at rev.
func (o *ownWrites) wrote(rev int64) {
	for {
		old := o.rev.Load()
		if rev <= old || o.rev.CompareAndSwap(old, rev) {
			return
		}
	}
}

func (s timedStore) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.storeSeconds.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func (s timedStore) Get(ctx context.Context, key string) (kv store.KV, err error) {
	start := time.Now()
	defer func() { s.observe("get", start, err) }()
	return s.Store.Get(ctx, key)
}

func (s timedStore) List(ctx context.Context, prefix string) (kvs []store.KV, rev int64, err error) {
	start := time.Now()
	defer func() { s.observe("list", start, err) }()
	return s.Store.List(ctx, prefix)
}

func (s timedStore) Put(ctx context.Context, key string, value []byte, expectedRevision int64) (rev int64, err error) {
	start := time.Now()
	defer func() { s.observe("put", start, err) }()
	rev, err = s.Store.Put(ctx, key, value, expectedRevision)
	if err == nil {
		s.own.wrote(rev)
	}
	return rev, err
}

func (s timedStore) Delete(ctx context.Context, key string, expectedRevision int64) (err error) {
	start := time.Now()
	defer func() { s.observe("delete", start, err) }()
	err = s.Store.Delete(ctx, key, expectedRevision)
	if err == nil {
		s.own.deleted.Store(true)
	}
	return err
}

func (s timedStore) Watch(ctx context.Context, prefix string, afterRevision int64) (ch <-chan store.Event, err error) {
	start := time.Now()
	defer func() { s.observe("watch", start, err) }()
	return s.Store.Watch(ctx, prefix, afterRevision)
}
