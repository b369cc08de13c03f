package auth

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// CredentialsFile is the name of the credentials file inside the data
// directory.
const CredentialsFile = "credentials.json"

// Key is one access key: an AWS-style access key ID and its secret, who
// holds it and what it may do.
type Key struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	// Name says who holds the key: a person or tool, or "host/<id>".
	Name string `json:"name,omitempty"`
	// Policy is one of Policies; empty means PolicyAdmin.
	Policy string `json:"policy,omitempty"`
	// Allow lists the actions of a PolicyCustom key.
	Allow []string `json:"allow,omitempty"`
	// HostID binds a PolicyHost key to the one host it identifies.
	HostID    string    `json:"hostId,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

// LoadOrCreate reads the keys in <dataDir>/credentials.json. If the file does
// not exist it creates dataDir (mode 0700) if needed, generates one key, and
// writes the file atomically with mode 0600; created is then true.
//
// A credentials file that group or others may access is refused with an
// error of kind errdefs.ErrInvalidArgument that names the file and the chmod
// that fixes it; so is a file that does not hold a non-empty JSON list of
// keys. The returned slice belongs to the caller.
func LoadOrCreate(dataDir string) (keys []Key, created bool, err error) {
	if dataDir == "" {
		return nil, false, errdefs.InvalidArgument("auth: data directory is empty: pass the directory that holds %s", CredentialsFile)
	}
	path := filepath.Join(dataDir, CredentialsFile)
	keys, err = load(path)
	if err == nil {
		return keys, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}

	k, err := NewKey()
	if err != nil {
		return nil, false, err
	}
	keys = []Key{k}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("auth: create data directory %s: %w", dataDir, err)
	}
	if err := writeAtomic(path, keys); err != nil {
		return nil, false, err
	}
	return keys, true, nil
}

func load(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: stat %s: %w", path, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, errdefs.InvalidArgument(
			"auth: credentials file %s has mode %04o and is accessible by group or others; it holds secret keys, so restrict it with: chmod 600 %s",
			path, perm, path)
	}
	var keys []Key
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&keys); err != nil {
		return nil, errdefs.InvalidArgument("auth: credentials file %s is not a JSON list of {\"accessKeyId\", \"secretAccessKey\"} objects: %v", path, err)
	}
	if err := validateKeys(keys); err != nil {
		return nil, fmt.Errorf("auth: credentials file %s: %w", path, err)
	}
	return keys, nil
}

func validateKeys(keys []Key) error {
	if len(keys) == 0 {
		return errdefs.InvalidArgument("no access keys: at least one {\"accessKeyId\", \"secretAccessKey\"} is required")
	}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if k.AccessKeyID == "" || k.SecretAccessKey == "" {
			return errdefs.InvalidArgument("key %d: accessKeyId and secretAccessKey must both be non-empty", i)
		}
		if strings.ContainsAny(k.AccessKeyID, "/ \t\r\n,=") {
			return errdefs.InvalidArgument("key %d: access key ID %q contains '/', ',', '=' or whitespace, which SigV4 credential scopes cannot carry", i, k.AccessKeyID)
		}
		if seen[k.AccessKeyID] {
			return errdefs.InvalidArgument("key %d: access key ID %s appears more than once", i, k.AccessKeyID)
		}
		seen[k.AccessKeyID] = true
	}
	return nil
}

func writeAtomic(path string, keys []Key) (err error) {
	data, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: encode credentials: %w", err)
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+CredentialsFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("auth: create temporary credentials file: %w", err)
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
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: rename credentials file into place: %w", err)
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// NewKey generates a key shaped like AWS's: an access key ID of "AKIA" and 16
// base32 characters, and a 40-character base64 secret, both from crypto/rand.
func NewKey() (Key, error) {
	var id [10]byte  // 80 bits -> 16 base32 characters
	var sec [30]byte // 240 bits -> 40 base64 characters
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("auth: generate access key ID: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Key{}, fmt.Errorf("auth: generate secret access key: %w", err)
	}
	return Key{
		AccessKeyID:     "AKIA" + base32.StdEncoding.EncodeToString(id[:]),
		SecretAccessKey: base64.StdEncoding.EncodeToString(sec[:]),
	}, nil
}

// ExportLines returns shell lines that point the aws CLI and the AWS SDKs at
// a Vessel endpoint with key k, ending in a comment that shows a first
// command to try.
func ExportLines(k Key, endpoint, region string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "export AWS_ACCESS_KEY_ID=%s\n", shellQuote(k.AccessKeyID))
	fmt.Fprintf(&b, "export AWS_SECRET_ACCESS_KEY=%s\n", shellQuote(k.SecretAccessKey))
	fmt.Fprintf(&b, "export AWS_DEFAULT_REGION=%s\n", shellQuote(region))
	fmt.Fprintf(&b, "# then try: aws ecs list-clusters --endpoint-url %s\n", endpoint)
	return b.String()
}

// shellQuote leaves values made of safe characters alone (generated keys
// always are) and single-quotes anything else.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+/=-_.:,@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Load reads the keys in <dataDir>/credentials.json without creating
// anything. A missing file is an error of kind errdefs.ErrNotFound that says
// how to get keys.
func Load(dataDir string) ([]Key, error) {
	path := filepath.Join(dataDir, CredentialsFile)
	keys, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("no access keys at %s: start `vessel server` once with that data directory, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", path)
	}
	return keys, err
}
