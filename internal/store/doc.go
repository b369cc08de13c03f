// Package store is Vessel's storage interface: a small, ordered key-value
// store with revisions and watches. It knows nothing of what it stores (the
// control plane keeps JSON documents under prefixes such as "tasks/") nor of
// replication. Back ends live in sub-packages: bolt (the embedded default, a
// bbolt file in the data directory) and etcd (an etcd cluster, under a
// prefix). storetest is the conformance suite every back end must pass.
// Copy moves every record of one store into another, empty one.
//
// This package must not import any other Vessel package except errdefs.
//
// Usage:
//
//	s, _ := bolt.Open(bolt.Config{Path: filepath.Join(dataDir, "vessel.db")})
//	rev, err := s.Put(ctx, "tasks/abc", data, store.MustNotExist)
//	kv, err := s.Get(ctx, "tasks/abc")
//	_, err = s.Put(ctx, "tasks/abc", newData, kv.Revision) // errdefs.ErrConflict if changed meanwhile
package store
