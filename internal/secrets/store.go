package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
)

// KeyFile is the default name of the secrets key file inside the data
// directory: a key of its own, apart from the access keys' master key.
const KeyFile = "secrets.key"

// Prefix is where secrets are stored: Prefix + name.
const Prefix = "secrets/"

// ParameterPrefix is where parameters are stored: ParameterPrefix + name.
const ParameterPrefix = "parameters/"

// Config configures a Service.
type Config struct {
	// Store holds the sealed records. Required.
	Store store.Store
	// Sealer seals and opens values: the secrets key. Required.
	Sealer *auth.Sealer
	// Region and AccountID appear in ARNs. Required.
	Region    string
	AccountID string
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service is the secrets store with its APIs. It is safe for concurrent
// use.
type Service struct {
	cfg Config
	st  store.Store
	log *slog.Logger
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errdefs.InvalidArgument("secrets: Store and Sealer are required")
	}
	if cfg.Region == "" || len(cfg.AccountID) != 12 {
		return nil, errdefs.InvalidArgument("secrets: Region (got %q) and a 12-digit AccountID (got %q) are required", cfg.Region, cfg.AccountID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, st: cfg.Store, log: cfg.Logger}, nil
}

// apiError is an error with the wire exception name the API answers it
// with; its kind says the rest (errdefs).
type apiError struct {
	code string
	msg  string
	kind error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func newError(code string, kind error, format string, args ...any) error {
	return &apiError{code: code, kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Code returns the wire exception name of err, "" when it has none.
func Code(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	return ""
}

// update reads key, lets fn change its record (old is nil when the key
// does not exist) and writes the result guarded by the revision read, again
// from the start when another writer came first. fn returning nil deletes
// the key.
func update[R any](ctx context.Context, st store.Store, key string, fn func(old *R) (*R, error)) (*R, error) {
	for {
		var old *R
		rev := store.MustNotExist
		kv, err := st.Get(ctx, key)
		switch {
		case err == nil:
			old = new(R)
			if err := json.Unmarshal(kv.Value, old); err != nil {
				return nil, fmt.Errorf("secrets: record %s is damaged: %w", key, err)
			}
			rev = kv.Revision
		case !errdefs.IsNotFound(err):
			return nil, err
		}
		rec, err := fn(old)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			if old == nil {
				return nil, nil
			}
			err = st.Delete(ctx, key, rev)
		} else {
			var data []byte
			if data, err = json.Marshal(rec); err != nil {
				return nil, err
			}
			_, err = st.Put(ctx, key, data, rev)
		}
		if errdefs.IsConflict(err) || errdefs.IsAlreadyExists(err) || (errdefs.IsNotFound(err) && old != nil) {
			continue // another writer came first: read again
		}
		return rec, err
	}
}

// get reads and decodes key's record; a missing key is errdefs.ErrNotFound.
func get[R any](ctx context.Context, st store.Store, key string) (*R, error) {
	kv, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	r := new(R)
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("secrets: record %s is damaged: %w", key, err)
	}
	return r, nil
}

// list reads and decodes every record under prefix.
func list[R any](ctx context.Context, st store.Store, prefix string) ([]*R, error) {
	kvs, _, err := st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]*R, 0, len(kvs))
	for _, kv := range kvs {
		r := new(R)
		if err := json.Unmarshal(kv.Value, r); err != nil {
			return nil, fmt.Errorf("secrets: record %s is damaged: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// epoch is a time as JSON 1.1 writes timestamps: seconds since the epoch.
type epoch float64

func epochOf(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(float64(t.UnixMilli()) / 1000)
	return &e
}
