// Package keyring is the control plane's auth.Keyring: access keys kept in
// the store under credentials/<accessKeyID>, each secret sealed with
// AES-256-GCM under the master key (auth.Sealer), so that control plane
// replicas sharing one store share the keys, and the store's bytes never
// hold a secret in clear.
//
// Lookups, made on every signed request, read a cache fed by the store's
// watch. A change made through this Keyring applies to its cache before Put
// or Delete returns; a change made by another replica applies when the
// watch delivers it, except that a key the cache does not hold is read from
// the store, so that a key created through another replica verifies at
// once. While the watch is not running (before Run, or between a broken
// watch and the next listing) lookups read the store.
//
// Bootstrap makes an installation's one admin key, at the fixed access key
// ID AdminKeyID with a create-only write, so that of replicas starting
// together on one store exactly one makes it and every other saves that
// same key (read from the store, unsealed with the shared master key) as
// its machine's local admin key (auth.Local, sealed for the CLI). It also
// moves the keys of a legacy plaintext credentials.json into the keyring
// (then removes the file), and refreshes a local admin key rotated through
// another replica.
//
// It imports auth, errdefs and store only.
//
// Usage:
//
//	sealer, _, err := auth.LoadMasterKey(local.MasterKeyPath(), true)
//	ring, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer})
//	go ring.Run(ctx)
//	adminKey, created, err := keyring.Bootstrap(ctx, ring, local, log)
//	srv, err := server.New(server.Config{Store: st, Keyring: ring, Keys: []auth.Key{adminKey}})
package keyring
