package keyring

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// AdminKeyID is the access key ID of an installation's admin key: the one
// key Bootstrap makes, at this fixed ID so that making it is one
// create-only write that replicas starting together on one store cannot
// both win. Access key IDs are not secret (a request names its own in
// clear); the secret is random.
const AdminKeyID = "AKIAVESSELADMINFIRST"

// Bootstrap readies the keyring and the machine's local admin key at a
// server's start, and returns that key:
//
//   - the keys of a legacy plaintext credentials.json become admin keys in
//     the keyring (the first named "admin"), the first one the local admin
//     key, and the file is overwritten and removed;
//   - a local admin key is kept; if the keyring holds its access key ID
//     with another secret (rotated through another replica) the local copy
//     takes the stored secret; if the keyring lacks it (deleted) a warning
//     says the CLI here cannot sign with it;
//   - with no local admin key (a first start, or a replica new to a shared
//     store) the installation's admin key is saved as the local one: the
//     key at AdminKeyID, made here if no replica made it yet (then created
//     is true), or, in an installation made before AdminKeyID, its first
//     admin key (named "admin").
//
// Every replica given the same master key thus holds the same admin key.
// A stored key this Keyring's master key does not open is an *OpenError.
// Nothing here logs or returns a secret except in the returned key.
func Bootstrap(ctx context.Context, r *Keyring, local auth.Local, log *slog.Logger) (k auth.Key, created bool, err error) {
	if log == nil {
		log = slog.Default()
	}
	legacy, err := local.ReadLegacy()
	if err != nil {
		return auth.Key{}, false, err
	}
	if len(legacy) > 0 {
		if err := migrate(ctx, r, local, legacy, log); err != nil {
			return auth.Key{}, false, err
		}
	}
	k, err = local.Load()
	if err == nil {
		return keepLocal(ctx, r, local, k, log)
	}
	if !errdefs.IsNotFound(err) {
		return auth.Key{}, false, err
	}
	k, created, err = installationKey(ctx, r)
	if err != nil {
		return auth.Key{}, false, err
	}
	if err := local.Save(k); err != nil {
		return auth.Key{}, false, err
	}
	if created {
		log.Info("created the admin access key", "access_key_id", k.AccessKeyID, "name", k.Name, "file", local.KeyPath())
	} else {
		log.Info("saved the installation's admin access key from the store as this machine's", "access_key_id", k.AccessKeyID, "name", k.Name, "file", local.KeyPath())
	}
	return k, created, nil
}

// keepLocal checks the local admin key k against the keyring.
func keepLocal(ctx context.Context, r *Keyring, local auth.Local, k auth.Key, log *slog.Logger) (auth.Key, bool, error) {
	stored, err := r.Lookup(ctx, k.AccessKeyID)
	switch {
	case errdefs.IsNotFound(err):
		log.Warn("the local admin key is not in the keyring any more (deleted): the CLI on this machine cannot sign with it; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
			"access_key_id", k.AccessKeyID, "file", local.KeyPath())
		return k, false, nil
	case err != nil:
		return auth.Key{}, false, err
	case stored.SecretAccessKey != k.SecretAccessKey:
		if err := local.Save(stored); err != nil {
			return auth.Key{}, false, err
		}
		log.Info("the local admin key was rotated (through another replica): saved its current secret", "access_key_id", k.AccessKeyID, "file", local.KeyPath())
		return stored, false, nil
	}
	return k, false, nil
}

// installationKey returns the installation's admin key, making it at
// AdminKeyID (created true) if the store has none.
func installationKey(ctx context.Context, r *Keyring) (k auth.Key, created bool, err error) {
	k, err = r.Lookup(ctx, AdminKeyID)
	if err == nil || !errdefs.IsNotFound(err) {
		return k, false, err
	}
	keys, err := r.List(ctx)
	if err != nil {
		return auth.Key{}, false, err
	}
	if k, ok := earlierAdminKey(keys); ok {
		return k, false, nil
	}
	k, err = auth.NewKey()
	if err != nil {
		return auth.Key{}, false, err
	}
	k.AccessKeyID = AdminKeyID
	k.Name, k.Policy, k.CreatedAt = UniqueName(keys, "admin"), auth.PolicyAdmin, time.Now().UTC().Truncate(time.Second)
	err = r.Create(ctx, k)
	if errdefs.IsAlreadyExists(err) {
		// Another replica made it first: take that one.
		k, err = r.Lookup(ctx, AdminKeyID)
		return k, false, err
	}
	if err != nil {
		return auth.Key{}, false, err
	}
	return k, true, nil
}

// earlierAdminKey finds the first admin key of an installation made before
// AdminKeyID: an admin key named "admin", the name earlier versions gave
// the first one (the oldest if there are several).
func earlierAdminKey(keys []auth.Key) (auth.Key, bool) {
	var found []auth.Key
	for _, k := range keys {
		if k.Name == "admin" && k.HostID == "" && (k.Policy == auth.PolicyAdmin || k.Policy == "") {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return auth.Key{}, false
	}
	return slices.MinFunc(found, func(a, b auth.Key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.AccessKeyID, b.AccessKeyID)
	}), true
}

func migrate(ctx context.Context, r *Keyring, local auth.Local, legacy []auth.Key, log *slog.Logger) error {
	keys, err := r.List(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	for i, k := range legacy {
		if _, err := r.Lookup(ctx, k.AccessKeyID); err == nil {
			if i == 0 {
				legacy[0] = k
			}
			continue
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		if k.Name == "" {
			k.Name = UniqueName(keys, "admin")
		}
		if k.Policy == "" {
			k.Policy = auth.PolicyAdmin
		}
		if k.CreatedAt.IsZero() {
			k.CreatedAt = now
		}
		if err := r.Put(ctx, k); err != nil {
			return fmt.Errorf("keyring: migrating %s: %w", local.LegacyPath(), err)
		}
		keys = append(keys, k)
		legacy[i] = k
		log.Info("moved an access key from the plaintext credentials file into the keyring", "access_key_id", k.AccessKeyID, "name", k.Name, "policy", k.Policy)
	}
	if _, err := os.Stat(local.KeyPath()); errors.Is(err, fs.ErrNotExist) {
		if err := local.Save(legacy[0]); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := local.RemoveLegacy(); err != nil {
		return err
	}
	log.Info("removed the plaintext credentials file; its keys are sealed now", "file", local.LegacyPath(), "local_key", local.KeyPath())
	return nil
}

// UniqueName returns base, or base-2, base-3, ... whichever no key in keys
// is named yet.
func UniqueName(keys []auth.Key, base string) string {
	taken := func(n string) bool {
		return slices.ContainsFunc(keys, func(k auth.Key) bool { return k.Name == n })
	}
	if !taken(base) {
		return base
	}
	for i := 2; ; i++ {
		if n := base + "-" + strconv.Itoa(i); !taken(n) {
			return n
		}
	}
}
