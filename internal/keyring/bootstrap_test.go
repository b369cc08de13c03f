package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/etcd"
	"vessel.dev/vessel/internal/store/etcd/etcdtest"
)

// replicaStores returns, per store kind, a function that sets up one
// shared store and returns how each replica opens its own client of it:
// the bbolt store of one directory (one process shares its handle), or a
// three-member etcd (a client per replica, as separate servers have).
func replicaStores() map[string]func(t *testing.T) func() store.Store {
	return map[string]func(t *testing.T) func() store.Store{
		"bbolt": func(t *testing.T) func() store.Store {
			st := openStore(t, t.TempDir())
			return func() store.Store { return st }
		},
		"etcd": func(t *testing.T) func() store.Store {
			c := etcdtest.Start(t, 3)
			prefix := "/vessel-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "/"
			return func() store.Store {
				t.Helper()
				st, err := etcd.Open(t.Context(), etcd.Config{Endpoints: c.Endpoints(), Prefix: prefix, Logger: quiet})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
		},
	}
}

// TestBootstrapReplicasRace: replicas starting at once on one store, each
// with its own data directory and its own Keyring, all given the same
// master key file, end with one admin key: the same access key ID and
// secret returned and saved locally by every one, exactly one of them
// having created it, and one key in the store. A replica given another
// master key fails, naming the key it cannot open, and writes nothing.
func TestBootstrapReplicasRace(t *testing.T) {
	const n = 8
	for name, setUp := range replicaStores() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			client := setUp(t)
			stores := make([]store.Store, n)
			for i := range stores {
				stores[i] = client()
			}
			keyFile := filepath.Join(t.TempDir(), "shared.key")
			sealer, _, err := auth.LoadMasterKey(keyFile, true)
			if err != nil {
				t.Fatal(err)
			}
			// One replica has another master key; its Keyring opens on
			// the empty store, and it bootstraps after the others.
			wrongLocal := auth.Local{DataDir: t.TempDir(), MasterKeyFile: filepath.Join(t.TempDir(), "other.key")}
			wrongSealer, _, err := auth.LoadMasterKey(wrongLocal.MasterKeyPath(), true)
			if err != nil {
				t.Fatal(err)
			}
			wrongRing := newRingOn(t, ctx, stores[0], wrongSealer)

			locals := make([]auth.Local, n)
			rings := make([]*keyring.Keyring, n)
			for i := range n {
				locals[i] = auth.Local{DataDir: t.TempDir(), MasterKeyFile: keyFile}
				rings[i] = newRingOn(t, ctx, stores[i], sealer)
			}
			type result struct {
				key     auth.Key
				created bool
				err     error
			}
			results := make([]result, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					k, created, err := keyring.Bootstrap(ctx, rings[i], locals[i], quiet)
					results[i] = result{k, created, err}
				})
			}
			close(start)
			wg.Wait()

			creators := 0
			for i, r := range results {
				if r.err != nil {
					t.Fatalf("replica %d: Bootstrap: %v", i, r.err)
				}
				if r.created {
					creators++
				}
				if r.key.AccessKeyID != results[0].key.AccessKeyID || r.key.SecretAccessKey != results[0].key.SecretAccessKey {
					t.Errorf("replica %d got access key %s, replica 0 got %s (or their secrets differ)", i, r.key.AccessKeyID, results[0].key.AccessKeyID)
				}
				if r.key.Policy != auth.PolicyAdmin || r.key.Name != "admin" {
					t.Errorf("replica %d got key %s named %q with policy %q, want admin and admin", i, r.key.AccessKeyID, r.key.Name, r.key.Policy)
				}
				got, err := locals[i].Load()
				if err != nil || got.AccessKeyID != r.key.AccessKeyID || got.SecretAccessKey != r.key.SecretAccessKey {
					t.Errorf("replica %d saved locally %s (%v), want %s", i, got.AccessKeyID, err, r.key.AccessKeyID)
				}
			}
			if creators != 1 {
				t.Errorf("%d replicas say they created the admin key, want exactly 1", creators)
			}
			keys, err := rings[0].List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 {
				var ids []string
				for _, k := range keys {
					ids = append(ids, k.AccessKeyID+" "+k.Name)
				}
				t.Fatalf("the store holds %d keys %v, want the one admin key", len(keys), ids)
			}

			// A replica started again keeps the key; none is made.
			again, created, err := keyring.Bootstrap(ctx, rings[1], locals[1], quiet)
			if err != nil || created || again.AccessKeyID != results[0].key.AccessKeyID {
				t.Errorf("Bootstrap again = %s, created %v, %v; want %s", again.AccessKeyID, created, err, results[0].key.AccessKeyID)
			}

			// Another master key: the stored admin key does not open.
			_, _, err = keyring.Bootstrap(ctx, wrongRing, wrongLocal, quiet)
			var oe *keyring.OpenError
			if !errors.As(err, &oe) || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "does not open with this master key") {
				t.Fatalf("Bootstrap with another master key: %v; want an OpenError saying the key does not open", err)
			}
			if _, err := wrongLocal.Load(); !errdefs.IsNotFound(err) {
				t.Errorf("the replica with another master key saved a local key: %v", err)
			}
			if _, err := keyring.New(ctx, keyring.Config{Store: stores[0], Sealer: wrongSealer, Logger: quiet}); !errors.As(err, &oe) {
				t.Errorf("New with another master key: %v; want an OpenError", err)
			}
			if keys, err := rings[0].List(ctx); err != nil || len(keys) != 1 {
				t.Errorf("after the failed Bootstrap the store holds %d keys (%v), want 1", len(keys), err)
			}
		})
	}
}

func newRingOn(t *testing.T, ctx context.Context, st store.Store, sealer *auth.Sealer) *keyring.Keyring {
	t.Helper()
	r, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// logBuffer is a logger whose output the test reads once the calls that
// log have returned.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	b := &bytes.Buffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// sharedKeyRing is a Keyring on a bbolt store under a master key file that
// replicas' Locals share.
func sharedKeyRing(t *testing.T) (*keyring.Keyring, string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "shared.key")
	sealer, _, err := auth.LoadMasterKey(keyFile, true)
	if err != nil {
		t.Fatal(err)
	}
	return newRingOn(t, t.Context(), openStore(t, t.TempDir()), sealer), keyFile
}

// TestBootstrapEarlierInstallation: replicas of a version that made an
// admin key per replica ("admin", "admin-2", "admin-3", each the local key
// of one) keep theirs; a replica new to the store takes the first one,
// "admin"; no key is made or deleted. Nothing logs a secret.
func TestBootstrapEarlierInstallation(t *testing.T) {
	ctx := t.Context()
	r, keyFile := sharedKeyRing(t)
	var earlier []auth.Key
	var locals []auth.Local
	for i, name := range []string{"admin", "admin-2", "admin-3"} {
		k, _ := auth.NewKey()
		k.Name, k.Policy, k.CreatedAt = name, auth.PolicyAdmin, time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC)
		if err := r.Put(ctx, k); err != nil {
			t.Fatal(err)
		}
		local := auth.Local{DataDir: t.TempDir(), MasterKeyFile: keyFile}
		if err := local.Save(k); err != nil {
			t.Fatal(err)
		}
		earlier, locals = append(earlier, k), append(locals, local)
	}
	log, out := logBuffer()
	for i, local := range locals {
		k, created, err := keyring.Bootstrap(ctx, r, local, log)
		if err != nil || created || k.AccessKeyID != earlier[i].AccessKeyID || k.SecretAccessKey != earlier[i].SecretAccessKey {
			t.Errorf("replica %d: Bootstrap = %s, created %v, %v; want its own key %s", i, k.AccessKeyID, created, err, earlier[i].AccessKeyID)
		}
	}
	fresh := auth.Local{DataDir: t.TempDir(), MasterKeyFile: keyFile}
	k, created, err := keyring.Bootstrap(ctx, r, fresh, log)
	if err != nil || created || k.AccessKeyID != earlier[0].AccessKeyID || k.SecretAccessKey != earlier[0].SecretAccessKey {
		t.Fatalf("new replica: Bootstrap = %s (%s), created %v, %v; want the first admin key %s", k.AccessKeyID, k.Name, created, err, earlier[0].AccessKeyID)
	}
	if got, err := fresh.Load(); err != nil || got.AccessKeyID != earlier[0].AccessKeyID {
		t.Errorf("new replica's local key %s, %v; want %s", got.AccessKeyID, err, earlier[0].AccessKeyID)
	}
	if keys, err := r.List(ctx); err != nil || len(keys) != 3 {
		t.Errorf("the store holds %d keys (%v), want the 3 earlier ones", len(keys), err)
	}
	for _, k := range earlier {
		if strings.Contains(out.String(), k.SecretAccessKey) {
			t.Fatalf("the log holds a secret:\n%s", out)
		}
	}
}

// TestBootstrapLocalKeyChanged: a local admin key rotated through another
// replica takes the stored secret (so `vessel credentials` prints a key
// that works); a deleted one is kept, with a warning naming it.
func TestBootstrapLocalKeyChanged(t *testing.T) {
	ctx := t.Context()
	r, keyFile := sharedKeyRing(t)
	a := auth.Local{DataDir: t.TempDir(), MasterKeyFile: keyFile}
	b := auth.Local{DataDir: t.TempDir(), MasterKeyFile: keyFile}
	k, created, err := keyring.Bootstrap(ctx, r, a, quiet)
	if err != nil || !created || k.AccessKeyID != keyring.AdminKeyID {
		t.Fatalf("first Bootstrap = %s, created %v, %v", k.AccessKeyID, created, err)
	}
	if _, _, err := keyring.Bootstrap(ctx, r, b, quiet); err != nil {
		t.Fatal(err)
	}

	rotated := k
	rotated.SecretAccessKey = "cm90YXRlZC1yb3RhdGVkLXJvdGF0ZWQtcm90YXRl"
	if err := r.Put(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	log, out := logBuffer()
	got, created, err := keyring.Bootstrap(ctx, r, b, log)
	if err != nil || created || got.SecretAccessKey != rotated.SecretAccessKey {
		t.Fatalf("Bootstrap after a rotation = %v, %v; want the rotated secret", created, err)
	}
	if saved, err := b.Load(); err != nil || saved.SecretAccessKey != rotated.SecretAccessKey {
		t.Fatalf("the local key after a rotation: %v; want the rotated secret saved", err)
	}
	if !strings.Contains(out.String(), "rotated") || strings.Contains(out.String(), rotated.SecretAccessKey) || strings.Contains(out.String(), k.SecretAccessKey) {
		t.Errorf("log after a rotation (want a note, no secret):\n%s", out)
	}

	if err := r.Delete(ctx, k.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	log, out = logBuffer()
	got, created, err = keyring.Bootstrap(ctx, r, a, log)
	if err != nil || created || got.AccessKeyID != k.AccessKeyID {
		t.Fatalf("Bootstrap after a deletion = %s, %v, %v; want the local key kept", got.AccessKeyID, created, err)
	}
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "deleted") || !strings.Contains(out.String(), k.AccessKeyID) {
		t.Errorf("no warning naming the deleted local key:\n%s", out)
	}
	if keys, err := r.List(ctx); err != nil || len(keys) != 0 {
		t.Errorf("Bootstrap with a local key made a key: %d keys, %v", len(keys), err)
	}
}
