package store

import (
	"bytes"
	"context"
	"fmt"

	"vessel.dev/vessel/internal/errdefs"
)

// Copy copies every record of src into dst, which must be empty, and then
// reads dst back and checks it record by record against src. It returns how
// many records it copied.
//
// Records keep their keys and values; their revisions are dst's. Nothing
// must write to src meanwhile (its owner is stopped). Copy fails with an
// error of kind errdefs.ErrAlreadyExists, before writing anything, if dst
// holds a record; a copy that fails midway leaves what it wrote, each
// record whole, and a second Copy refuses it as not empty.
func Copy(ctx context.Context, dst, src Store) (int, error) {
	kvs, _, err := src.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("copy: listing the source: %w", err)
	}
	have, _, err := dst.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("copy: listing the destination: %w", err)
	}
	if len(have) > 0 {
		return 0, errdefs.AlreadyExists("copy: the destination is not empty (%d records, the first %q); copy only into an empty one", len(have), have[0].Key)
	}
	for i, kv := range kvs {
		if _, err := dst.Put(ctx, kv.Key, kv.Value, MustNotExist); err != nil {
			return i, fmt.Errorf("copy: record %d of %d, %q: %w", i+1, len(kvs), kv.Key, err)
		}
	}
	got, _, err := dst.List(ctx, "")
	if err != nil {
		return len(kvs), fmt.Errorf("copy: reading the destination back: %w", err)
	}
	if len(got) != len(kvs) {
		return len(kvs), fmt.Errorf("copy: the destination holds %d records after copying %d: something else writes to it", len(got), len(kvs))
	}
	for i, kv := range kvs {
		if got[i].Key != kv.Key || !bytes.Equal(got[i].Value, kv.Value) {
			return len(kvs), fmt.Errorf("copy: record %d of the destination is %q (%d bytes), want %q (%d bytes) as in the source", i+1, got[i].Key, len(got[i].Value), kv.Key, len(kv.Value))
		}
	}
	return len(kvs), nil
}
