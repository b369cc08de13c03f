package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"vessel.dev/vessel/internal/fsutil"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"vessel.dev/vessel/internal/errdefs"
)

// Default limits on what a registry or an archive may make the store read.
const (
	// DefaultMaxLayerSize bounds one layer, compressed and uncompressed.
	DefaultMaxLayerSize int64 = 10 << 30
	// DefaultMaxImageSize bounds one image: the sum of its compressed
	// layers, and the sum of what its layers unpack to.
	DefaultMaxImageSize int64 = 32 << 30
	// DefaultMaxManifestSize bounds a manifest, an index, an image config
	// and any other registry answer read into memory (4 MiB, as registries
	// accept).
	DefaultMaxManifestSize int64 = 4 << 20
	// DefaultMaxLayerEntries bounds the number of entries of one layer.
	DefaultMaxLayerEntries = 1 << 20
	// DefaultConcurrency is how many layers of an image are fetched and
	// unpacked at once.
	DefaultConcurrency = 3
)

// Fixed limits on a layer entry's name, as the kernel's (NAME_MAX,
// PATH_MAX), and on its depth.
const (
	MaxNameLength = 255  // bytes in one path component
	MaxPathLength = 4096 // bytes in an entry's path or a symlink's target
	MaxPathDepth  = 256  // components in an entry's path
)

// Config configures a Store.
type Config struct {
	// Root is the cache directory, e.g. <data-dir>/images. Required. It is
	// created (0700) if missing. One Store per Root: a second process using
	// the same Root at the same time is not supported.
	Root string
	// Logger receives warnings about neutralised layer entries and offline
	// fallbacks. Default: discard.
	Logger *slog.Logger
	// MaxLayerSize bounds each layer's compressed size (checked against
	// the manifest before any byte is fetched) and uncompressed size
	// (decompression bombs). Default DefaultMaxLayerSize.
	MaxLayerSize int64
	// MaxImageSize bounds the sum of an image's compressed layer sizes
	// (checked before fetching) and the sum of what its layers unpack to.
	// Default DefaultMaxImageSize.
	MaxImageSize int64
	// MaxManifestSize bounds manifests, indexes and image configs (their
	// declared size is checked before they are fetched, and reads stop at
	// it whatever the registry sends), and every other registry answer read
	// into memory. Default DefaultMaxManifestSize.
	MaxManifestSize int64
	// MaxLayerEntries bounds the number of entries in one layer. Default
	// DefaultMaxLayerEntries.
	MaxLayerEntries int
	// Platform picked from multi-platform indexes, "os/arch[/variant]".
	// Default "linux/amd64".
	Platform string
	// Transport for registry requests (proxies, custom CAs). Default
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Concurrency is how many layers are fetched and unpacked at once.
	// Default DefaultConcurrency.
	Concurrency int
}

// Store is the host's image cache. It is safe for concurrent use.
type Store struct {
	root        string
	log         *slog.Logger
	limit       int64 // MaxLayerSize
	imageLimit  int64 // MaxImageSize
	metaLimit   int64 // MaxManifestSize
	maxEntries  int   // MaxLayerEntries
	platform    v1.Platform
	transport   http.RoundTripper
	concurrency int
	accessKey   []byte // keys credential hashes
	// unpackedBy holds "<diffID> <grant key>" for the layers this
	// process unpacked from a registry for that caller.
	unpackedBy sync.Map

	// gc is held shared by Pull and Import and exclusively by Remove, so
	// that Remove never deletes a layer an unfinished pull is about to
	// record.
	gc    sync.RWMutex
	locks keyedLocks
}

// ImageConfig is the part of an image's config that a runtime needs.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Image is a cached image. Values returned by the Store are the caller's
// own; changing them changes nothing in the cache.
type Image struct {
	// Ref is the normalised reference (index.docker.io/library/busybox:latest),
	// or the manifest digest for an imported image that had no name.
	Ref string
	// Digest is the manifest digest, "sha256:<hex>".
	Digest string
	// Size is the sum of the compressed layer sizes (what a pull transfers).
	Size   int64
	Config ImageConfig
	// Layers are absolute paths of unpacked, read-only layer directories,
	// bottom layer first. As overlayfs lowerdirs they go in reverse order
	// (lowerdir=top:...:bottom).
	Layers []string
}

// record is the JSON stored under Root/images/ for one reference.
type record struct {
	Ref          string        `json:"ref"`
	Digest       string        `json:"digest"`
	ConfigDigest string        `json:"configDigest"`
	Size         int64         `json:"size"`
	Config       ImageConfig   `json:"config"`
	Layers       []layerRecord `json:"layers"`
	Stored       time.Time     `json:"stored"`
	// Blobs lists every blob this image keeps in Root/blobs (manifest,
	// config and compressed layers; imported docker tarballs keep none of
	// their layers' blobs).
	Blobs []string `json:"blobs,omitempty"`
	// Access says who may use the image from the cache without asking
	// the registry.
	Access *access `json:"access,omitempty"`
}

type layerRecord struct {
	Digest    string `json:"digest"` // compressed, as in the manifest
	DiffID    string `json:"diffID"` // uncompressed; names the unpacked directory
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
}

// Open prepares the cache directories under cfg.Root and removes what an
// earlier crash left half done.
func Open(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, errdefs.InvalidArgument("image store: Config.Root is required (e.g. <data-dir>/images)")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, errdefs.InvalidArgument("image store: Config.Root %q: %v", cfg.Root, err)
	}
	for _, l := range []struct {
		name string
		v    *int64
		def  int64
	}{
		{"MaxLayerSize", &cfg.MaxLayerSize, DefaultMaxLayerSize},
		{"MaxImageSize", &cfg.MaxImageSize, DefaultMaxImageSize},
		{"MaxManifestSize", &cfg.MaxManifestSize, DefaultMaxManifestSize},
	} {
		if *l.v < 0 {
			return nil, errdefs.InvalidArgument("image store: Config.%s %d is negative; use 0 for the default (%d)", l.name, *l.v, l.def)
		}
		if *l.v == 0 {
			*l.v = l.def
		}
	}
	if cfg.MaxLayerEntries < 0 {
		return nil, errdefs.InvalidArgument("image store: Config.MaxLayerEntries %d is negative; use 0 for the default (%d)", cfg.MaxLayerEntries, DefaultMaxLayerEntries)
	}
	if cfg.MaxLayerEntries == 0 {
		cfg.MaxLayerEntries = DefaultMaxLayerEntries
	}
	if cfg.Platform == "" {
		cfg.Platform = "linux/amd64"
	}
	plat, err := v1.ParsePlatform(cfg.Platform)
	if err != nil || plat.OS == "" || plat.Architecture == "" {
		return nil, errdefs.InvalidArgument("image store: Config.Platform %q is not of the form os/arch[/variant], e.g. linux/amd64", cfg.Platform)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	s := &Store{
		root:        root,
		log:         cfg.Logger,
		limit:       cfg.MaxLayerSize,
		imageLimit:  cfg.MaxImageSize,
		metaLimit:   cfg.MaxManifestSize,
		maxEntries:  cfg.MaxLayerEntries,
		platform:    *plat,
		transport:   &limitTransport{inner: cfg.Transport, limit: cfg.MaxManifestSize, blobLimit: max(cfg.MaxLayerSize, cfg.MaxManifestSize)},
		concurrency: cfg.Concurrency,
	}
	for _, d := range []string{"", "blobs/sha256", "layers/sha256", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	// Anything in tmp is an unfinished download, unpack or import.
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("image store: clean up %s: %w", e.Name(), err)
		}
	}
	if err := s.sweep(); err != nil {
		return nil, fmt.Errorf("image store: remove unused layers and blobs: %w", err)
	}
	if s.accessKey, err = loadAccessKey(root, s.tmpDir()); err != nil {
		return nil, fmt.Errorf("image store: access key: %w", err)
	}
	return s, nil
}

func (s *Store) tmpDir() string { return filepath.Join(s.root, "tmp") }

var hexRE = regexp.MustCompile(`^[a-f0-9]{64}$`)

// digestHex checks that d is "sha256:<64 hex>" and returns the hex part, so
// that a digest from a manifest can never name a path outside the cache.
func digestHex(d string) (string, error) {
	alg, h, ok := strings.Cut(d, ":")
	if !ok || alg != "sha256" || !hexRE.MatchString(h) {
		return "", errdefs.InvalidArgument("digest %q is not of the form sha256:<64 lowercase hex digits> (only sha256 is supported)", d)
	}
	return h, nil
}

func (s *Store) blobPath(d string) (string, error) {
	h, err := digestHex(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, "blobs", "sha256", h), nil
}

func (s *Store) layerPath(diffID string) (string, error) {
	h, err := digestHex(diffID)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, "layers", "sha256", h), nil
}

func (s *Store) recordPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.root, "images", hex.EncodeToString(sum[:])+".json")
}

// normalise turns a user's reference into the form records are keyed by.
func normalise(ref string, opts ...name.Option) (name.Reference, error) {
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, errdefs.InvalidArgument("image reference %q is not valid (%v); expected e.g. busybox, registry.example.com/team/app:1.2 or app@sha256:<digest>", ref, err)
	}
	return r, nil
}

func isDigest(ref string) bool {
	_, err := digestHex(ref)
	return err == nil
}

func (s *Store) image(rec *record) *Image {
	img := &Image{
		Ref:    rec.Ref,
		Digest: rec.Digest,
		Size:   rec.Size,
		Config: ImageConfig{
			Entrypoint: slices.Clone(rec.Config.Entrypoint),
			Cmd:        slices.Clone(rec.Config.Cmd),
			Env:        slices.Clone(rec.Config.Env),
			WorkingDir: rec.Config.WorkingDir,
			User:       rec.Config.User,
		},
	}
	for _, l := range rec.Layers {
		p, _ := s.layerPath(l.DiffID) // validated when the record was written
		img.Layers = append(img.Layers, p)
	}
	return img
}

func (s *Store) readRecord(p string) (*record, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("image record %s is corrupt: %w", filepath.Base(p), err)
	}
	for _, l := range rec.Layers {
		if _, err := digestHex(l.DiffID); err != nil {
			return nil, fmt.Errorf("image record %s is corrupt: %w", filepath.Base(p), err)
		}
	}
	return &rec, nil
}

func (s *Store) writeRecord(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.recordPath(rec.Ref), b, s.tmpDir())
}

func (s *Store) records() ([]*record, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, err
	}
	var recs []*record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, err := s.readRecord(filepath.Join(s.root, "images", e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b *record) int { return strings.Compare(a.Ref, b.Ref) })
	return recs, nil
}

// lookup finds the records ref names: a reference in any form Docker
// accepts, or a manifest digest "sha256:<hex>" (every reference to it).
func (s *Store) lookup(ref string) ([]*record, error) {
	if isDigest(ref) {
		recs, err := s.records()
		if err != nil {
			return nil, err
		}
		var out []*record
		for _, r := range recs {
			if r.Digest == ref {
				out = append(out, r)
			}
		}
		if len(out) == 0 {
			return nil, errdefs.NotFound("no cached image has manifest digest %s; pull or import it first", ref)
		}
		return out, nil
	}
	r, err := normalise(ref)
	if err != nil {
		return nil, err
	}
	rec, err := s.readRecord(s.recordPath(r.Name()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("image %s is not in the cache; pull or import it first", r.Name())
	}
	if err != nil {
		return nil, err
	}
	return []*record{rec}, nil
}

// Get returns the cached image ref names (short or normalised form, or a
// manifest digest). It does not block on the network, and does not check
// who may use the image: it is for the host's operator (listing,
// inspecting); an image for a task is asked for with Pull and
// PullOptions.PreferCached. It returns an error
// of kind errdefs.ErrNotFound if the image is not cached or one of its
// layers has gone missing from disk.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	img := s.image(recs[0])
	for _, l := range img.Layers {
		if _, err := os.Stat(l); err != nil {
			return nil, errdefs.NotFound("image %s: unpacked layer %s is missing from the cache; pull the image again", recs[0].Ref, filepath.Base(l))
		}
	}
	return img, nil
}

// List returns every cached image, sorted by reference.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.image(r))
	}
	return out, nil
}

// Remove removes the reference ref (or, for a manifest digest, every
// reference to it), then deletes the unpacked layers and blobs that no
// remaining image uses. It waits for running pulls and imports to finish.
// It returns errdefs.ErrNotFound if nothing matches. The caller must make
// sure no running sandbox still has the layers mounted.
func (s *Store) Remove(ctx context.Context, ref string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	recs, err := s.lookup(ref)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := os.Remove(s.recordPath(r.Ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove image %s: %w", r.Ref, err)
		}
	}
	rest, err := s.records()
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	usedLayers, usedBlobs := map[string]bool{}, map[string]bool{}
	for _, r := range rest {
		for _, l := range r.Layers {
			usedLayers[l.DiffID] = true
		}
		for _, b := range r.Blobs {
			usedBlobs[b] = true
		}
	}
	for _, r := range recs {
		for _, l := range r.Layers {
			if usedLayers[l.DiffID] {
				continue
			}
			p, err := s.layerPath(l.DiffID)
			if err != nil {
				continue
			}
			// Move it aside first so a half-deleted layer never looks
			// complete; RemoveAll does not follow symlinks.
			tmp := filepath.Join(s.tmpDir(), "rm-"+filepath.Base(p))
			if err := os.Rename(p, tmp); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("remove layer %s: %w", l.DiffID, err)
			}
			if err := os.RemoveAll(tmp); err != nil {
				return fmt.Errorf("remove layer %s: %w", l.DiffID, err)
			}
			usedLayers[l.DiffID] = true // removed; don't try twice
		}
		for _, b := range r.Blobs {
			if usedBlobs[b] {
				continue
			}
			if p, err := s.blobPath(b); err == nil {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove blob %s: %w", b, err)
				}
			}
		}
	}
	s.log.Info("removed image", "ref", ref)
	return nil
}

// sweep deletes the unpacked layers and blobs that no image record uses:
// what a refused or failed pull unpacked before it failed. The caller holds
// s.gc exclusively, so no pull is between unpacking and recording.
func (s *Store) sweep() error {
	recs, err := s.records()
	if err != nil {
		return err
	}
	usedLayers, usedBlobs := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		for _, l := range r.Layers {
			if h, err := digestHex(l.DiffID); err == nil {
				usedLayers[h] = true
			}
		}
		for _, b := range r.Blobs {
			if h, err := digestHex(b); err == nil {
				usedBlobs[h] = true
			}
		}
	}
	for _, kind := range []struct {
		dir  string
		used map[string]bool
	}{{"layers", usedLayers}, {"blobs", usedBlobs}} {
		dir := filepath.Join(s.root, kind.dir, "sha256")
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if kind.used[e.Name()] {
				continue
			}
			// Moved aside first so that a half-deleted layer never looks
			// complete; RemoveAll does not follow symlinks.
			tmp := filepath.Join(s.tmpDir(), "rm-"+e.Name())
			if err := os.Rename(filepath.Join(dir, e.Name()), tmp); err != nil {
				return err
			}
			if err := os.RemoveAll(tmp); err != nil {
				return err
			}
			s.log.Debug("removed unused cache entry", "kind", kind.dir, "digest", "sha256:"+e.Name())
		}
	}
	return nil
}

// sweepIfIdle sweeps now if no pull or import is running; otherwise the
// next Open or idle failure does.
func (s *Store) sweepIfIdle() {
	if !s.gc.TryLock() {
		return
	}
	defer s.gc.Unlock()
	if err := s.sweep(); err != nil {
		s.log.Warn("removing unused layers and blobs", "err", err)
	}
}

// keyedLocks is a set of mutexes by key whose waits honour a context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// hashingReader feeds everything read through a SHA-256 hash.
type hashingReader struct {
	r io.Reader
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func newHashingReader(r io.Reader) *hashingReader {
	return &hashingReader{r: r, h: sha256.New()}
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashingReader) digest() string {
	return "sha256:" + hex.EncodeToString(h.h.Sum(nil))
}
