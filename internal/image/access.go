package image

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"

	"vessel.dev/vessel/internal/fsutil"
)

// access records who has shown the right to use a cached image: the
// registry served it anonymously (or it was imported on the host), or it
// accepted one of these credentials for it. A record without access (from
// before it was kept) is treated as private to no one: its next user must
// show the registry its credentials.
type access struct {
	// Public: pulled anonymously, or imported on the host.
	Public bool `json:"public,omitempty"`
	// Credentials are keyed hashes of registry, username and password
	// (never the secret itself), most recent last.
	Credentials []string `json:"credentials,omitempty"`
}

// maxCredentials bounds the credentials remembered per image; the oldest
// are forgotten first (their next use is checked with the registry again).
const maxCredentials = 32

// grant is who a successful pull or import shows to have access.
type grant struct {
	public bool
	cred   string // credential hash; "" for anonymous
	local  bool   // imported on the host by its operator
}

// allows says whether g may use an image with access a without asking the
// registry.
func (a *access) allows(g grant) bool {
	if a == nil {
		return false
	}
	return a.Public || (g.cred != "" && slices.Contains(a.Credentials, g.cred))
}

// with returns a plus g (a is not changed).
func (a *access) with(g grant) *access {
	out := &access{}
	if a != nil {
		out.Public = a.Public
		out.Credentials = slices.Clone(a.Credentials)
	}
	if g.public {
		out.Public = true
	}
	if g.cred != "" {
		out.Credentials = slices.DeleteFunc(out.Credentials, func(c string) bool { return c == g.cred })
		out.Credentials = append(out.Credentials, g.cred)
		if n := len(out.Credentials); n > maxCredentials {
			out.Credentials = out.Credentials[n-maxCredentials:]
		}
	}
	return out
}

// proven returns what of the cache g may use without fetching it from its
// registry: the configs and layers of images g may use. Everything else
// that is cached (a private image's config or layers, named by another
// image's manifest or config) must come from g's own registry before g
// gets it: content is shared by digest, and knowing a digest (or a whole
// manifest) is no proof of access. Imports by the host's operator may use
// everything. The caller holds s.gc shared.
func (s *Store) proven(g grant) (func(d string) bool, error) {
	if g.local {
		return func(string) bool { return true }, nil
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	ok := map[string]bool{}
	for _, r := range recs {
		if r.Access.allows(g) {
			ok[r.ConfigDigest] = true
			for _, l := range r.Layers {
				ok[l.DiffID] = true
			}
		}
	}
	return func(d string) bool { return ok[d] }, nil
}

// key names g in the Store's memory of who unpacked which layer.
func (g grant) key() string {
	if g.cred != "" {
		return g.cred
	}
	return "public"
}

// grantFor is who a pull of r with auth is: anonymous pulls are public.
func (s *Store) grantFor(r name.Reference, a Auth) grant {
	if a.Username == "" && a.Password == "" {
		return grant{public: true}
	}
	mac := hmac.New(sha256.New, s.accessKey)
	for _, part := range []string{r.Context().RegistryStr(), a.Username, a.Password} {
		fmt.Fprintf(mac, "%d:%s", len(part), part)
	}
	return grant{cred: "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil))}
}

// loadAccessKey reads (or creates) the key that credential hashes are
// keyed with, so that a copy of the records alone does not allow guessing
// passwords offline against a plain hash.
func loadAccessKey(root, tmp string) ([]byte, error) {
	p := filepath.Join(root, "access.key")
	b, err := os.ReadFile(p)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(p, b, tmp); err != nil {
		return nil, err
	}
	return b, os.Chmod(p, 0o600)
}
