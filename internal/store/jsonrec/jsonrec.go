// Package jsonrec reads and writes records kept as JSON in a
// store.Store: one decoded record (Get), every record under a prefix
// (List), and a read-modify-write guarded by the record's revision
// (Update). It imports errdefs and store only; the stores of the control
// plane's APIs (internal/secrets, internal/cwlogs) use it.
package jsonrec

import (
	"context"
	"encoding/json"
	"fmt"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// Update reads key, lets fn change its record (old is nil when the key
// does not exist) and writes the result guarded by the revision read, again
// from the start when another writer came first. fn returning nil deletes
// the key.
func Update[R any](ctx context.Context, st store.Store, key string, fn func(old *R) (*R, error)) (*R, error) {
	for {
		var old *R
		rev := store.MustNotExist
		kv, err := st.Get(ctx, key)
		switch {
		case err == nil:
			old = new(R)
			if err := json.Unmarshal(kv.Value, old); err != nil {
				return nil, fmt.Errorf("record %s is damaged: %w", key, err)
			}
			rev = kv.Revision
		case !errdefs.IsNotFound(err):
			return nil, err
		}
		rec, err := fn(old)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			if old == nil {
				return nil, nil
			}
			err = st.Delete(ctx, key, rev)
		} else {
			var data []byte
			if data, err = json.Marshal(rec); err != nil {
				return nil, err
			}
			_, err = st.Put(ctx, key, data, rev)
		}
		if errdefs.IsConflict(err) || errdefs.IsAlreadyExists(err) || (errdefs.IsNotFound(err) && old != nil) {
			continue // another writer came first: read again
		}
		return rec, err
	}
}

// Get reads and decodes key's record; a missing key is errdefs.ErrNotFound.
func Get[R any](ctx context.Context, st store.Store, key string) (*R, error) {
	kv, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	r := new(R)
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("record %s is damaged: %w", key, err)
	}
	return r, nil
}

// List reads and decodes every record under prefix.
func List[R any](ctx context.Context, st store.Store, prefix string) ([]*R, error) {
	kvs, _, err := st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]*R, 0, len(kvs))
	for _, kv := range kvs {
		r := new(R)
		if err := json.Unmarshal(kv.Value, r); err != nil {
			return nil, fmt.Errorf("record %s is damaged: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}
