package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"vessel.dev/vessel/internal/errdefs"
)

// MasterKeyFile is the default name of the master key file inside the data
// directory.
const MasterKeyFile = "master.key"

// MasterKeySize is the size of a master key: an AES-256 key.
const MasterKeySize = 32

// Sealer encrypts secrets at rest with AES-256-GCM under a master key kept
// apart from what it seals. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a MasterKeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != MasterKeySize {
		return nil, errdefs.InvalidArgument("auth: master key has %d bytes; it must have %d (AES-256)", len(key), MasterKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("auth: master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("auth: master key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad (which must be given again to Open,
// e.g. the access key ID the secret belongs to). The result is a random
// nonce followed by the ciphertext and its tag.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("auth: generate nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned for the same aad. A wrong master key,
// other aad or altered bytes are an error of kind
// errdefs.ErrInvalidArgument.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errdefs.InvalidArgument("sealed secret is %d bytes, shorter than a nonce and a tag", len(sealed))
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, errdefs.InvalidArgument("sealed secret does not open with this master key (sealed under another master key, or altered)")
	}
	return out, nil
}

// LoadMasterKey reads the master key file at path and returns its Sealer.
// With create, a missing file is made (MasterKeySize random bytes, mode
// 0600, its directory 0700 if missing) and created is true. A file that
// group or others may access, or of the wrong size, is an error of kind
// errdefs.ErrInvalidArgument naming the file; a missing file without
// create is of kind errdefs.ErrNotFound.
func LoadMasterKey(path string, create bool) (s *Sealer, created bool, err error) {
	key, err := readSecretFile(path, MasterKeySize+1)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, false, errdefs.NotFound("no master key at %s: start `vessel server` once with this data directory, or pass --encryption-key-file", path)
		}
		key = make([]byte, MasterKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, false, fmt.Errorf("auth: generate master key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("auth: create the master key's directory: %w", err)
		}
		if err := writeFileAtomic(path, key, false); err != nil {
			return nil, false, err
		}
		created = true
	} else if err != nil {
		return nil, false, err
	}
	if len(key) != MasterKeySize {
		return nil, false, errdefs.InvalidArgument("auth: master key file %s holds %d bytes; a master key is exactly %d random bytes", path, len(key), MasterKeySize)
	}
	s, err = NewSealer(key)
	return s, created, err
}

// readSecretFile reads at most limit bytes of a file that must be a
// regular file accessible by its owner only.
func readSecretFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, errdefs.InvalidArgument("auth: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, errdefs.InvalidArgument(
			"auth: %s has mode %04o and is accessible by group or others; it holds secret keys, so restrict it with: chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", path, err)
	}
	return data, nil
}

// writeFileAtomic writes data to path with mode 0600 through a temporary
// file, fsynced, renamed into place. Without replace an existing path is
// an error of kind errdefs.ErrAlreadyExists.
func writeFileAtomic(path string, data []byte, replace bool) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("auth: create a temporary file beside %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("auth: chmod %s: %w", tmp.Name(), err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("auth: write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("auth: sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("auth: close %s: %w", tmp.Name(), err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); err == nil {
		os.Remove(tmp.Name())
	} else if errors.Is(err, fs.ErrExist) {
		os.Remove(tmp.Name())
		return errdefs.AlreadyExists("auth: %s already exists", path)
	}
	if err != nil {
		return fmt.Errorf("auth: put %s into place: %w", path, err)
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}
