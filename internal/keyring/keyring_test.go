package keyring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/keyring"
	"vessel.dev/vessel/internal/store/bolt"
	"vessel.dev/vessel/internal/testutil"
)

var quiet = slog.New(slog.DiscardHandler)

func openStore(t *testing.T, dir string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(dir, "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRing(t *testing.T, ctx context.Context, st *bolt.Store, sealer *auth.Sealer) *keyring.Keyring {
	t.Helper()
	r, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: sealer, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// filesHold reports whether any file under dir contains s.
func filesHold(t *testing.T, dir, s string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(s)) {
				found = append(found, p)
			}
		}
		return nil
	})
	return found
}

func TestKeyringSealsAndFollowsTheStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	st := openStore(t, dir)
	sealer, _, err := auth.LoadMasterKey(filepath.Join(dir, auth.MasterKeyFile), true)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newRing(t, ctx, st, sealer), newRing(t, ctx, st, sealer)
	// a is not watching yet: lookups read the store.
	k, _ := auth.NewKey()
	k.Name, k.Policy = "ci", auth.PolicyOperator
	if err := a.Put(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Lookup(ctx, k.AccessKeyID); err != nil || got.SecretAccessKey != k.SecretAccessKey || got.Policy != auth.PolicyOperator {
		t.Fatalf("Lookup before Run = %+v, %v", got, err)
	}
	go a.Run(ctx)
	go b.Run(ctx)

	// Encrypted at rest: neither the store's value nor any file holds the
	// secret.
	kv, err := st.Get(ctx, keyring.Prefix+k.AccessKeyID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(kv.Value, []byte(k.SecretAccessKey)) {
		t.Fatalf("stored value holds the secret in clear: %s", kv.Value)
	}
	var sealed auth.SealedKey
	if err := json.Unmarshal(kv.Value, &sealed); err != nil || sealed.Name != "ci" || len(sealed.SealedSecret) == 0 {
		t.Fatalf("stored value %s: %v", kv.Value, err)
	}
	st.Close()
	if found := filesHold(t, dir, k.SecretAccessKey); len(found) > 0 {
		t.Fatalf("files hold the secret in clear: %v", found)
	}
	st = openStore(t, dir)
	a, b = newRing(t, ctx, st, sealer), newRing(t, ctx, st, sealer)
	go a.Run(ctx)
	go b.Run(ctx)

	// The other replica sees the key, a rotation and a deletion.
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := b.Lookup(ctx, k.AccessKeyID); err != nil {
			return fmt.Errorf("b does not see the key: %w", err)
		}
		return nil
	})
	rotated := k
	rotated.SecretAccessKey = "rotated-rotated-rotated-rotated-rotated0"
	if err := a.Put(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Lookup(ctx, k.AccessKeyID); got.SecretAccessKey != rotated.SecretAccessKey {
		t.Fatalf("a still holds the old secret right after rotating")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if got, _ := b.Lookup(ctx, k.AccessKeyID); got.SecretAccessKey != rotated.SecretAccessKey {
			return errors.New("b does not see the rotation")
		}
		return nil
	})
	if err := b.Delete(ctx, k.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, k.AccessKeyID); !errdefs.IsNotFound(err) {
		t.Fatalf("b still finds the key right after deleting it: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := a.Lookup(ctx, k.AccessKeyID); !errdefs.IsNotFound(err) {
			return fmt.Errorf("a does not see the deletion: Lookup = %v", err)
		}
		return nil
	})
	if err := b.Delete(ctx, k.AccessKeyID); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete: %v, want not found", err)
	}

	// Another master key does not open the store's keys: New refuses.
	if err := a.Put(ctx, k); err != nil {
		t.Fatal(err)
	}
	other, _, _ := auth.LoadMasterKey(filepath.Join(t.TempDir(), "other.key"), true)
	if _, err := keyring.New(ctx, keyring.Config{Store: st, Sealer: other}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("New with another master key: %v, want invalid argument", err)
	}
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	local := auth.Local{DataDir: dir}
	sealer, _, err := auth.LoadMasterKey(local.MasterKeyPath(), true)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, ctx, st, sealer)
	k, created, err := keyring.Bootstrap(ctx, r, local, quiet)
	if err != nil || !created || k.AccessKeyID != keyring.AdminKeyID || k.Name != "admin" || k.Policy != auth.PolicyAdmin {
		t.Fatalf("first Bootstrap = %+v, %v, %v", k, created, err)
	}
	if got, err := r.Lookup(ctx, k.AccessKeyID); err != nil || got.SecretAccessKey != k.SecretAccessKey {
		t.Fatalf("the admin key is not in the keyring: %v", err)
	}
	if got, err := local.Load(); err != nil || got.SecretAccessKey != k.SecretAccessKey {
		t.Fatalf("the local key: %+v, %v", got, err)
	}
	again, created, err := keyring.Bootstrap(ctx, r, local, quiet)
	if err != nil || created || again.AccessKeyID != k.AccessKeyID {
		t.Fatalf("second Bootstrap = %+v, %v, %v", again, created, err)
	}
	st.Close()
	if found := filesHold(t, dir, k.SecretAccessKey); len(found) > 0 {
		t.Fatalf("files hold the secret in clear: %v", found)
	}
}

func TestBootstrapMigratesPlaintextCredentials(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, _ := auth.NewKey()
	k2, _ := auth.NewKey()
	legacy, _ := json.Marshal([]auth.Key{k1, k2})
	if err := os.WriteFile(filepath.Join(dir, auth.LegacyCredentialsFile), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir)
	local := auth.Local{DataDir: dir}
	sealer, _, err := auth.LoadMasterKey(local.MasterKeyPath(), true)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, ctx, st, sealer)
	k, created, err := keyring.Bootstrap(ctx, r, local, quiet)
	if err != nil || created || k.AccessKeyID != k1.AccessKeyID || k.SecretAccessKey != k1.SecretAccessKey {
		t.Fatalf("Bootstrap = %+v, %v, %v; want the legacy file's first key", k, created, err)
	}
	keys, err := r.List(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keyring holds %d keys (%v), want the 2 legacy ones", len(keys), err)
	}
	names := map[string]string{}
	for _, k := range keys {
		if k.Policy != auth.PolicyAdmin {
			t.Errorf("migrated key %s has policy %q, want admin", k.AccessKeyID, k.Policy)
		}
		names[k.AccessKeyID] = k.Name
	}
	if names[k1.AccessKeyID] != "admin" || names[k2.AccessKeyID] != "admin-2" {
		t.Errorf("migrated names %v, want admin and admin-2", names)
	}
	if _, err := os.Stat(local.LegacyPath()); !os.IsNotExist(err) {
		t.Fatalf("the plaintext credentials file is still there: %v", err)
	}
	st.Close()
	for _, s := range []string{k1.SecretAccessKey, k2.SecretAccessKey} {
		if found := filesHold(t, dir, s); len(found) > 0 {
			t.Fatalf("files hold a migrated secret in clear: %v", found)
		}
	}
}
