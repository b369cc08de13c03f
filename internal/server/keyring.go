package server

import (
	"context"
	"slices"
	"strings"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// prefixHostKeys holds hosts' credentials when the control plane was given
// fixed Keys rather than a Keyring: hostkeys/<access key ID>.
const prefixHostKeys = "hostkeys/"

// hostKeyring is the Keyring of a control plane configured with fixed
// Keys (tests and programs that embed the server; `vessel server` uses the
// sealed keyring of internal/keyring): those keys and the keys created
// through the API, in memory, plus the host credentials that joins create,
// kept in the store so that they survive a restart.
type hostKeyring struct {
	fixed *auth.StaticKeyring
	store store.Store
}

var _ auth.Keyring = (*hostKeyring)(nil)

func (r *hostKeyring) Lookup(ctx context.Context, id string) (auth.Key, error) {
	if k, err := r.fixed.Lookup(ctx, id); err == nil {
		return k, nil
	}
	var k auth.Key
	if _, err := getJSON(ctx, r.store, prefixHostKeys+id, &k); err != nil {
		if errdefs.IsNotFound(err) {
			return auth.Key{}, errdefs.NotFound("unknown access key ID %s", id)
		}
		return auth.Key{}, err
	}
	return k, nil
}

func (r *hostKeyring) List(ctx context.Context) ([]auth.Key, error) {
	out, err := r.fixed.List(ctx)
	if err != nil {
		return nil, err
	}
	hk, _, _, err := listJSON[auth.Key](ctx, r.store, prefixHostKeys)
	if err != nil {
		return nil, err
	}
	out = append(out, hk...)
	slices.SortFunc(out, func(a, b auth.Key) int { return strings.Compare(a.AccessKeyID, b.AccessKeyID) })
	return out, nil
}

func (r *hostKeyring) Put(ctx context.Context, k auth.Key) error {
	if k.Policy != auth.PolicyHost {
		return r.fixed.Put(ctx, k)
	}
	_, err := putJSON(ctx, r.store, prefixHostKeys+k.AccessKeyID, k, store.AnyRevision)
	return err
}

func (r *hostKeyring) Delete(ctx context.Context, id string) error {
	if err := r.fixed.Delete(ctx, id); err == nil {
		return nil
	}
	err := r.store.Delete(ctx, prefixHostKeys+id, store.AnyRevision)
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("unknown host access key ID %s", id)
	}
	return err
}
