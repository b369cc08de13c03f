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
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// Bootstrap readies the keyring and the machine's local admin key at a
// server's start, and returns that key:
//
//   - the keys of a legacy plaintext credentials.json become admin keys in
//     the keyring (the first named "admin"), the first one the local admin
//     key, and the file is overwritten and removed;
//   - with no local admin key (a first start, or a new replica on a shared
//     store) a new admin key is made, stored and sealed locally: created
//     is then true.
//
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
		if _, lerr := r.Lookup(ctx, k.AccessKeyID); errdefs.IsNotFound(lerr) {
			log.Warn("the local admin key is not in the keyring any more (deleted): the CLI on this machine cannot sign with it; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
				"access_key_id", k.AccessKeyID, "file", local.KeyPath())
		}
		return k, false, nil
	}
	if !errdefs.IsNotFound(err) {
		return auth.Key{}, false, err
	}
	keys, err := r.List(ctx)
	if err != nil {
		return auth.Key{}, false, err
	}
	k, err = auth.NewKey()
	if err != nil {
		return auth.Key{}, false, err
	}
	k.Name, k.Policy, k.CreatedAt = UniqueName(keys, "admin"), auth.PolicyAdmin, time.Now().UTC().Truncate(time.Second)
	if err := r.Put(ctx, k); err != nil {
		return auth.Key{}, false, err
	}
	if err := local.Save(k); err != nil {
		return auth.Key{}, false, err
	}
	log.Info("created the admin access key", "access_key_id", k.AccessKeyID, "name", k.Name, "file", local.KeyPath())
	return k, true, nil
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
