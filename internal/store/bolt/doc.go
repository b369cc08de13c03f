// Package bolt is the embedded back end of store.Store: one bbolt file in
// the data directory, written with bbolt's default fsync on every commit, so
// a change whose Put or Delete has returned survives a crash or kill -9.
//
// It owns the file's layout: a "kv" bucket mapping each key to the 8-byte
// big-endian revision of its last write followed by the value, and a "meta"
// bucket holding the store-wide revision counter, which grows by one on
// every Put and Delete and survives restarts. It also owns the in-memory
// watch machinery: a ring of the last Config.WatchHistory changes, from
// which Watch replays, and a fan-out to live watchers, each with a buffer of
// Config.WatchBuffer changes. A watcher that falls further behind has its
// channel closed rather than slowing writers; it must List and watch again.
// The history is not persisted: after a restart, Watch accepts only the
// current revision or later.
//
// This package must not import any Vessel package except store and errdefs.
//
// Usage:
//
//	s, err := bolt.Open(bolt.Config{Path: filepath.Join(dataDir, "vessel.db")})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	kvs, rev, err := s.List(ctx, "tasks/")
//	events, err := s.Watch(ctx, "tasks/", rev)
package bolt
