// Package etcd is the distributed back end of store.Store: every record is
// an etcd key under a prefix (Config.Prefix, default "/vessel/"), so that
// several installations can share one etcd cluster, reached through etcd's
// own client (go.etcd.io/etcd/client/v3).
//
// It owns the mapping of the store's contract onto etcd: a record's
// revision is the etcd key's mod revision and the store's revision is the
// cluster's (shared by every prefix, so revisions grow by more than one when
// others write); preconditions are etcd transactions comparing the key's
// create or mod revision; reads are linearizable; List pages through the
// prefix at one revision; requests made at the same time are committed
// together, reads in one read-only transaction and writes in one
// transaction of nested ones, each with its own comparisons (batch.go), so
// that concurrent writes may share a revision and their events carry
// store.Event.More; Watch is an etcd watch from afterRevision+1 that
// the client resumes on another member after a disconnection, and whose
// channel is closed when etcd can no longer send every change (compaction,
// a member without a leader): the caller lists again, as with any store.
// Every call is bounded by Config.RequestTimeout, so that a cluster that has
// lost its quorum gives an error of kind errdefs.ErrUnavailable naming the
// store rather than a hang. It never compacts: that is the etcd operator's
// choice (etcd's --auto-compaction-*), since the history is shared by every
// prefix.
//
// Leadership among the control plane's replicas lives here too (Elector):
// each replica campaigns with etcd's concurrency package, holding a session
// on a lease of ElectorConfig.Lease; the candidate whose key under
// "<prefix>leader/" is oldest leads. Each term's context carries a
// store.Fence, the leader's election key and its create revision, and Put
// and Delete made with that context are transactions that also compare it:
// once the lease is gone (the leader died, paused or was cut off) the key
// is gone, and the old leader's writes fail with store.ErrFenced even if it
// has not noticed yet.
//
// This package must not import any Vessel package except store and errdefs.
//
// Usage:
//
//	s, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{"https://10.0.0.1:2379"}, TLS: tlsConfig})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	kvs, rev, err := s.List(ctx, "tasks/")
//	events, err := s.Watch(ctx, "tasks/", rev)
package etcd
