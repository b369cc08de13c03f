package server

import (
	"context"
	"time"

	"vessel.dev/vessel/internal/store"
)

// timedStore measures each call of the store it wraps
// (vessel_store_request_duration_seconds).
type timedStore struct {
	store.Store
	m *metrics
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
	return s.Store.Put(ctx, key, value, expectedRevision)
}

func (s timedStore) Delete(ctx context.Context, key string, expectedRevision int64) (err error) {
	start := time.Now()
	defer func() { s.observe("delete", start, err) }()
	return s.Store.Delete(ctx, key, expectedRevision)
}

func (s timedStore) Watch(ctx context.Context, prefix string, afterRevision int64) (ch <-chan store.Event, err error) {
	start := time.Now()
	defer func() { s.observe("watch", start, err) }()
	return s.Store.Watch(ctx, prefix, afterRevision)
}
