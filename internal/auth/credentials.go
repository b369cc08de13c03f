package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// CredentialsFile is the name, inside the data directory, of the local
// admin key: the key the CLI on the control plane's machine signs with,
// its secret sealed under the master key (see Local).
const CredentialsFile = "admin-key.json"

// LegacyCredentialsFile is where versions before sealed keys kept their
// keys in clear: a JSON list of {"accessKeyId", "secretAccessKey"}. The
// server moves its keys into the keyring and removes it (see Local).
const LegacyCredentialsFile = "credentials.json"

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

// LoadOrCreate returns the local admin key of dataDir (see Local), with
// the master key in dataDir: if neither it nor a legacy credentials file
// exists, it creates dataDir (mode 0700), the master key and a new key
// sealed in <dataDir>/admin-key.json, and created is true. A legacy
// credentials file is read, not migrated (keyring.Bootstrap migrates it).
// The returned slice belongs to the caller.
func LoadOrCreate(dataDir string) (keys []Key, created bool, err error) {
	k, created, err := Local{DataDir: dataDir}.LoadOrCreate()
	if err != nil {
		return nil, false, err
	}
	return []Key{k}, created, nil
}

func loadLegacy(path string) ([]Key, error) {
	data, err := readSecretFile(path, 1<<20)
	if err != nil {
		return nil, err
	}
	var keys []Key
	dec := json.NewDecoder(bytes.NewReader(data))
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

// Load returns the local admin key of dataDir (see Local.Load), as a
// one-key slice, without creating anything. A missing key is an error of
// kind errdefs.ErrNotFound that says how to get one.
func Load(dataDir string) ([]Key, error) {
	k, err := Local{DataDir: dataDir}.Load()
	if err != nil {
		return nil, err
	}
	return []Key{k}, nil
}
