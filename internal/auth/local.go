package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// SealedKey is a Key with its secret sealed: how keys are kept at rest, in
// the control plane's store and in the local admin key file.
type SealedKey struct {
	AccessKeyID string    `json:"accessKeyId"`
	Name        string    `json:"name,omitempty"`
	Policy      string    `json:"policy,omitempty"`
	Allow       []string  `json:"allow,omitempty"`
	HostID      string    `json:"hostId,omitempty"`
	CreatedAt   time.Time `json:"createdAt,omitzero"`
	// SealedSecret is the secret access key sealed by a Sealer, bound to
	// the access key ID.
	SealedSecret []byte `json:"sealedSecret"`
}

// sealAAD binds a sealed secret to its access key ID, so that a sealed
// secret moved onto another key does not open.
func sealAAD(accessKeyID string) []byte { return []byte("vessel/access-key/" + accessKeyID) }

// SealKey returns k as JSON with its secret sealed by s.
func SealKey(s *Sealer, k Key) ([]byte, error) {
	if err := validateKeys([]Key{k}); err != nil {
		return nil, err
	}
	sealed, err := s.Seal([]byte(k.SecretAccessKey), sealAAD(k.AccessKeyID))
	if err != nil {
		return nil, err
	}
	return json.Marshal(SealedKey{AccessKeyID: k.AccessKeyID, Name: k.Name, Policy: k.Policy,
		Allow: k.Allow, HostID: k.HostID, CreatedAt: k.CreatedAt, SealedSecret: sealed})
}

// OpenKey decodes what SealKey returned and unseals its secret with s. A
// malformed value, or one s cannot open, is an error of kind
// errdefs.ErrInvalidArgument.
func OpenKey(s *Sealer, data []byte) (Key, error) {
	var sk SealedKey
	if err := json.Unmarshal(data, &sk); err != nil {
		return Key{}, errdefs.InvalidArgument("sealed key is not valid JSON: %v", err)
	}
	if sk.AccessKeyID == "" {
		return Key{}, errdefs.InvalidArgument("sealed key has no accessKeyId")
	}
	secret, err := s.Open(sk.SealedSecret, sealAAD(sk.AccessKeyID))
	if err != nil {
		return Key{}, fmt.Errorf("access key %s: %w", sk.AccessKeyID, err)
	}
	return Key{AccessKeyID: sk.AccessKeyID, SecretAccessKey: string(secret), Name: sk.Name, Policy: sk.Policy,
		Allow: sk.Allow, HostID: sk.HostID, CreatedAt: sk.CreatedAt}, nil
}

// Local is the control plane machine's own credentials: the master key
// (<DataDir>/master.key unless MasterKeyFile says otherwise) and the local
// admin key, sealed under it in <DataDir>/admin-key.json. Both files are
// mode 0600 and refused when group or others may read them, so only the
// user who runs the server (root) can sign with the local admin key.
type Local struct {
	DataDir string
	// MasterKeyFile is where the master key is; "" means
	// <DataDir>/master.key.
	MasterKeyFile string
}

// MasterKeyPath is the master key file Local uses.
func (l Local) MasterKeyPath() string {
	if l.MasterKeyFile != "" {
		return l.MasterKeyFile
	}
	return filepath.Join(l.DataDir, MasterKeyFile)
}

// KeyPath is the local admin key file.
func (l Local) KeyPath() string { return filepath.Join(l.DataDir, CredentialsFile) }

// LegacyPath is the legacy plaintext credentials file.
func (l Local) LegacyPath() string { return filepath.Join(l.DataDir, LegacyCredentialsFile) }

func (l Local) check() error {
	if l.DataDir == "" {
		return errdefs.InvalidArgument("auth: data directory is empty: pass the directory that holds %s", CredentialsFile)
	}
	return nil
}

// Load returns the local admin key, unsealed with the master key. Where
// only a legacy plaintext credentials file exists (a server not yet
// started with this version) its first key is returned. Nothing is
// created; a missing key is an error of kind errdefs.ErrNotFound that says
// how to get one.
func (l Local) Load() (Key, error) {
	if err := l.check(); err != nil {
		return Key{}, err
	}
	data, err := readSecretFile(l.KeyPath(), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		legacy, lerr := loadLegacy(l.LegacyPath())
		if lerr == nil {
			return legacy[0], nil
		}
		if !errors.Is(lerr, fs.ErrNotExist) {
			return Key{}, lerr
		}
		return Key{}, errdefs.NotFound("no access key at %s: start `vessel server` once with that data directory, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", l.KeyPath())
	}
	if err != nil {
		return Key{}, err
	}
	s, _, err := LoadMasterKey(l.MasterKeyPath(), false)
	if err != nil {
		return Key{}, err
	}
	k, err := OpenKey(s, data)
	if err != nil {
		return Key{}, fmt.Errorf("auth: local admin key %s with master key %s: %w", l.KeyPath(), l.MasterKeyPath(), err)
	}
	return k, nil
}

// Save seals k under the master key (created if missing) and writes it as
// the local admin key, replacing any.
func (l Local) Save(k Key) error {
	if err := l.check(); err != nil {
		return err
	}
	s, _, err := LoadMasterKey(l.MasterKeyPath(), true)
	if err != nil {
		return err
	}
	data, err := SealKey(s, k)
	if err != nil {
		return err
	}
	return writeFileAtomic(l.KeyPath(), append(data, '\n'), true)
}

// LoadOrCreate returns the local admin key; if there is none (and no
// legacy file) it creates the data directory (0700), the master key and a
// new admin key named "admin", and created is true.
func (l Local) LoadOrCreate() (k Key, created bool, err error) {
	k, err = l.Load()
	if err == nil || !errdefs.IsNotFound(err) {
		return k, false, err
	}
	if err := os.MkdirAll(l.DataDir, 0o700); err != nil {
		return Key{}, false, fmt.Errorf("auth: create data directory %s: %w", l.DataDir, err)
	}
	k, err = NewKey()
	if err != nil {
		return Key{}, false, err
	}
	k.Name, k.Policy, k.CreatedAt = "admin", PolicyAdmin, time.Now().UTC().Truncate(time.Second)
	if err := l.Save(k); err != nil {
		return Key{}, false, err
	}
	return k, true, nil
}

// ReadLegacy returns the keys of the legacy plaintext credentials file, or
// nil if there is none.
func (l Local) ReadLegacy() ([]Key, error) {
	keys, err := loadLegacy(l.LegacyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return keys, err
}

// RemoveLegacy overwrites the legacy plaintext credentials file with zeros,
// syncs it and removes it. (On copy-on-write or journalling file systems
// the old blocks may survive the overwrite; the file is gone either way.)
func (l Local) RemoveLegacy() error {
	path := l.LegacyPath()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: open %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		f.Write(make([]byte, st.Size()))
		f.Sync()
	}
	f.Close()
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("auth: remove %s: %w", path, err)
	}
	return nil
}
