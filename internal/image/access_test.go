package image

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"vessel.dev/vessel/internal/errdefs"
)

// privateRepos asks for basic auth (any of users) on repositories under
// private/ and counts every request.
func privateRepos(users map[string]string, requests *atomic.Int32) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			if strings.HasPrefix(r.URL.Path, "/v2/private/") {
				if u, p, ok := r.BasicAuth(); !ok || users[u] != p || p == "" {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestCachedPrivateImageNeedsCredentials: an image pulled with credentials
// is served from the cache only to callers whose credentials pulled it or
// that the registry accepts for it; anonymous pulls and public images are
// served to all; nothing of the secret is stored.
func TestCachedPrivateImageNeedsCredentials(t *testing.T) {
	var requests atomic.Int32
	rg := newTestRegistry(t, privateRepos(map[string]string{"alice": "s3cret", "bob": "pw2"}, &requests))
	alice := Auth{Username: "alice", Password: "s3cret"}
	private, public := rg.host+"/private/app:v1", rg.host+"/public/app:v1"
	push(t, private, twoLayerImage(t), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	push(t, public, buildImage(t, v1.Config{Cmd: []string{"true"}}, tarLayer(t, reg("pub", "x"))))

	root := t.TempDir()
	s := openStore(t, root)
	ctx := context.Background()
	img, err := s.Pull(ctx, private, PullOptions{Auth: alice})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, public, PullOptions{}); err != nil {
		t.Fatal(err)
	}

	prefer := func(ref string, a Auth) (*Image, error) {
		return s.Pull(ctx, ref, PullOptions{Auth: a, PreferCached: true})
	}
	rg.reset()
	for _, a := range []Auth{{}, {Username: "alice", Password: "wrong"}, {Username: "mallory", Password: "x"}} {
		_, err := prefer(private, a)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("cached private image with credentials %q: %v; want the registry's 401 refusal", a.Username, err)
		}
		t.Logf("user %q: %v", a.Username, err)
	}
	// The same image by digest is no back door.
	if _, err := prefer(rg.host+"/private/app@"+img.Digest, Auth{}); err == nil {
		t.Fatal("the cached private image was served by digest without credentials")
	}
	if n := rg.blobGETs(); n != 0 {
		t.Errorf("refusals fetched %d blobs", n)
	}

	// The credentials that pulled it: straight from the cache.
	requests.Store(0)
	if got, err := prefer(private, alice); err != nil || got.Digest != img.Digest {
		t.Fatalf("alice: %+v, %v", got, err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("alice's cached image cost %d registry requests, want 0", n)
	}
	// Other credentials the registry accepts: one manifest check, no blob.
	if got, err := prefer(private, Auth{Username: "bob", Password: "pw2"}); err != nil || got.Digest != img.Digest {
		t.Fatalf("bob: %+v, %v", got, err)
	}
	if n := rg.blobGETs(); n != 0 {
		t.Errorf("bob's check fetched %d blobs, want 0", n)
	}
	requests.Store(0)
	if _, err := prefer(private, Auth{Username: "bob", Password: "pw2"}); err != nil || requests.Load() != 0 {
		t.Errorf("bob again: %v after %d requests; want the cache", err, requests.Load())
	}
	// A public image: everyone, no request.
	if got, err := prefer(public, Auth{}); err != nil || requests.Load() != 0 {
		t.Errorf("public image: %+v, %v after %d requests", got, err, requests.Load())
	}

	// Nothing of the secrets is stored.
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "/layers/") {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, secret := range []string{"s3cret", "pw2"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s holds the password %q", p, secret)
			}
		}
		return nil
	})

	// Registry gone: the cache serves only those already shown to have
	// access, even to a plain Pull's offline fallback.
	rg.srv.Close()
	for _, o := range []PullOptions{{}, {PreferCached: true}, {Auth: Auth{Username: "alice", Password: "wrong"}}} {
		if _, err := s.Pull(ctx, private, o); !errdefs.IsUnavailable(err) {
			t.Errorf("offline pull of the private image with %+v: %v; want unavailable", o, err)
		}
	}
	s2 := openStore(t, root) // what was granted is kept on disk
	for _, o := range []PullOptions{{Auth: alice}, {Auth: alice, PreferCached: true}, {Auth: Auth{Username: "bob", Password: "pw2"}}} {
		if got, err := s2.Pull(ctx, private, o); err != nil || got.Digest != img.Digest {
			t.Errorf("offline pull of the private image with %q: %v", o.Auth.Username, err)
		}
	}
	if _, err := s2.Pull(ctx, public, PullOptions{}); err != nil {
		t.Errorf("offline pull of the public image: %v", err)
	}
}

// TestImportedImageIsUsableByAll: an image imported on the host is served
// to every caller, whatever its registry would say.
func TestImportedImageIsUsableByAll(t *testing.T) {
	var requests atomic.Int32
	rg := newTestRegistry(t, privateRepos(map[string]string{"alice": "s3cret"}, &requests))
	ref := rg.host + "/private/app:v1"
	p := filepath.Join(t.TempDir(), "app.tar")
	tag, _ := name.NewTag(ref)
	if err := tarball.WriteToFile(p, tag, twoLayerImage(t)); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, t.TempDir())
	if _, err := s.Import(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), ref, PullOptions{PreferCached: true}); err != nil {
		t.Fatalf("imported image: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("imported image cost %d registry requests", n)
	}
}

// TestCredentialsStayWithTheirRegistry: blobs redirected to another host
// (blob storage) are fetched without the registry's Authorization header.
func TestCredentialsStayWithTheirRegistry(t *testing.T) {
	var inner http.Handler // the registry itself, behind its auth
	var mu sync.Mutex
	var storageAuth, registryAuth []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawQuery = r.URL.Query().Get("blob"), ""
		r2.Header.Del("Authorization")
		inner.ServeHTTP(w, r2)
	}))
	t.Cleanup(storage.Close)
	redirecting := func(h http.Handler) http.Handler {
		inner = h
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				mu.Lock()
				registryAuth = append(registryAuth, r.Header.Get("Authorization"))
				mu.Unlock()
				http.Redirect(w, r, storage.URL+"/object?blob="+url.QueryEscape(r.URL.Path), http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	rg := newTestRegistry(t, func(h http.Handler) http.Handler { return requireBasic("alice", "s3cret")(redirecting(h)) })
	ref := rg.host + "/private/app:v1"
	// A layer larger than MaxManifestSize: the redirected blob is still
	// read as a blob.
	img := buildImage(t, v1.Config{}, tarLayer(t, reg("big", randomBody(t, 16<<10))), tarLayer(t, reg("small", "x")))
	push(t, ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))

	s, err := Open(Config{Root: t.TempDir(), MaxManifestSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), ref, PullOptions{Auth: Auth{Username: "alice", Password: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(storageAuth) < 3 || len(registryAuth) != len(storageAuth) {
		t.Fatalf("%d blob requests to the registry, %d to storage; want every blob redirected", len(registryAuth), len(storageAuth))
	}
	for i, a := range storageAuth {
		if a != "" {
			t.Errorf("storage request %d carried Authorization %q", i, a)
		}
		if !strings.HasPrefix(registryAuth[i], "Basic ") {
			t.Errorf("registry blob request %d carried Authorization %q, want the credentials", i, registryAuth[i])
		}
	}
}

// TestCachedLayerNeedsItsContent: a private image's layers are not handed
// to an image that merely names their diff IDs in its config: a cached
// layer no image the caller may use holds is checked against the blob the
// caller's own registry serves.
func TestCachedLayerNeedsItsContent(t *testing.T) {
	var requests atomic.Int32
	rg := newTestRegistry(t, privateRepos(map[string]string{"alice": "s3cret"}, &requests))
	secret := buildImage(t, v1.Config{Cmd: []string{"true"}}, tarLayer(t, reg("secret", "the private layer")))
	push(t, rg.host+"/private/app:v1", secret, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	secretCfg, err := secret.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	// The attacker's image: its own layer blob, but a config claiming the
	// private layer's diff ID.
	decoy := buildImage(t, v1.Config{Cmd: []string{"true"}}, tarLayer(t, reg("decoy", "x")))
	cf, err := decoy.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = secretCfg.RootFS.DiffIDs
	rawCfg, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(rg.host + "/public/evil")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, static.NewLayer(rawCfg, types.OCIConfigJSON)); err != nil {
		t.Fatal(err)
	}
	cfgHash, cfgSize, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		t.Fatal(err)
	}
	pushEdited(t, rg.host+"/public/evil:v1", decoy, func(m *v1.Manifest) {
		m.Config.Digest, m.Config.Size = cfgHash, cfgSize
	})

	s := openStore(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Pull(ctx, rg.host+"/private/app:v1", PullOptions{Auth: Auth{Username: "alice", Password: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	img, err := s.Pull(ctx, rg.host+"/public/evil:v1", PullOptions{})
	if err == nil {
		b, _ := os.ReadFile(filepath.Join(img.Layers[0], "secret"))
		t.Fatalf("the attacker's image was served the private layer (secret = %q)", b)
	}
	t.Logf("refused: %v", err)
	if _, err := s.Get(ctx, rg.host+"/public/evil:v1"); !errdefs.IsNotFound(err) {
		t.Errorf("the attacker's image was recorded: %v", err)
	}
	// An image that really holds the same layer may share it.
	push(t, rg.host+"/public/same:v1", secret)
	if _, err := s.Pull(ctx, rg.host+"/public/same:v1", PullOptions{}); err != nil {
		t.Errorf("public image with the same layer: %v", err)
	}
}

// TestCachedConfigNeedsItsContent: a private image's config (its
// environment may hold secrets) is not read from the cache for an image
// that merely names its digest, even when every layer is public.
func TestCachedConfigNeedsItsContent(t *testing.T) {
	var requests atomic.Int32
	rg := newTestRegistry(t, privateRepos(map[string]string{"alice": "s3cret"}, &requests))
	base := tarLayer(t, reg("base", "public base layer"))
	secret := buildImage(t, v1.Config{Cmd: []string{"true"}, Env: []string{"API_KEY=the-private-key"}}, base)
	push(t, rg.host+"/private/app:v1", secret, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	public := buildImage(t, v1.Config{Cmd: []string{"true"}}, base)
	// The attacker's registry (the test registry shares blobs between
	// repositories, so a second one): the public image, and a manifest of
	// the public layer with the private config's digest, which this
	// registry cannot serve.
	evil := newTestRegistry(t, nil)
	push(t, evil.host+"/public/base:v1", public)
	secretManifest, err := secret.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	pushEdited(t, evil.host+"/public/evil:v1", public, func(m *v1.Manifest) { m.Config = secretManifest.Config })

	s := openStore(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Pull(ctx, rg.host+"/private/app:v1", PullOptions{Auth: Auth{Username: "alice", Password: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, evil.host+"/public/base:v1", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := s.Pull(ctx, evil.host+"/public/evil:v1", PullOptions{})
	if err == nil {
		t.Fatalf("the attacker's image was served the private config (env %q)", img.Config.Env)
	}
	t.Logf("refused: %v", err)
}
