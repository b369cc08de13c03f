package secrets

import (
	"log/slog"
	"time"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/awsjson"
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

func newError(code string, kind error, format string, args ...any) error {
	return awsjson.NewError(code, kind, format, args...)
}

// Code returns the wire exception name of err, "" when it has none.
func Code(err error) string { return awsjson.Code(err) }

// epoch is a time as JSON 1.1 writes timestamps: seconds since the epoch.
type epoch float64

func epochOf(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(float64(t.UnixMilli()) / 1000)
	return &e
}
