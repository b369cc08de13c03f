package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"vessel.dev/vessel/internal/fsutil"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

// Auth holds registry credentials. The zero value pulls anonymously. They
// are sent as HTTP basic auth, or exchanged for a bearer token when the
// registry answers with a Bearer challenge.
type Auth struct {
	Username, Password string
}

// Progress reports how far a pull has come. Bytes are compressed bytes;
// layers already in the cache count as done at once.
type Progress struct {
	LayersDone, LayersTotal int
	BytesDone, BytesTotal   int64
}

// PullOptions tunes one Pull.
type PullOptions struct {
	Auth Auth
	// Insecure talks plain HTTP to the registry (a test registry on
	// 127.0.0.1, which go-containerregistry also treats as plain HTTP by
	// itself).
	Insecure bool
	// PreferCached returns the cached image without asking the registry
	// when these credentials (or anonymous access) have already been shown
	// to pull it. A cached image that other credentials pulled is served
	// only once the registry accepts these for its manifest, so that a
	// private image never reaches a caller that could not pull it itself.
	PreferCached bool
	// Progress, if set, is called as bytes arrive, one call at a time,
	// from the pulling goroutines. It must not block.
	Progress func(Progress)
}

// source says how an image's layers are read.
type source int

const (
	// fromBlobs: layers' compressed blobs are unpacked as they are read
	// and kept in the cache, both only once the blob matches its digest
	// (stream.go); a blob already cached is unpacked from there.
	// Registries and OCI layouts.
	fromBlobs source = iota
	// fromUncompressed: layers are unpacked straight from their
	// uncompressed stream; no blob is kept. docker save tarballs, whose
	// layers are stored uncompressed.
	fromUncompressed
)

// Pull resolves ref at its registry (for an index, the Store's platform),
// downloads the layers that are not cached yet, unpacks them, and records
// the image. It blocks until done or ctx ends. A second Pull of a cached
// image fetches only the manifest (nothing with PreferCached, when these
// credentials have shown access before). If the registry cannot be reached
// (a network error or a 5xx answer) and ref is cached, the cached image is
// returned to callers that have shown access to it before (anonymously,
// with the same credentials, or it was imported); a refusal (401, 403,
// 404) is never papered over by the cache.
//
// Errors: errdefs.ErrInvalidArgument for a malformed reference, refused
// credentials or an unsafe layer (errors.As *UnsafeLayerError);
// errdefs.ErrNotFound if the registry has no such image;
// errdefs.ErrUnavailable if the registry is unreachable and ref is not
// cached; errdefs.ErrLimitExceeded for a layer over MaxLayerSize. The
// returned Image is the caller's.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := normalise(ref, nopts...)
	if err != nil {
		return nil, err
	}
	img, err := s.pull(ctx, r, o)
	if err != nil {
		// Drop what a refused or failed pull unpacked before it failed.
		s.sweepIfIdle()
	}
	return img, err
}

func (s *Store) pull(ctx context.Context, r name.Reference, o PullOptions) (*Image, error) {
	s.gc.RLock()
	defer s.gc.RUnlock()

	auth := authn.Anonymous
	if o.Auth.Username != "" || o.Auth.Password != "" {
		// Given to the registry client for r's registry alone: it sends
		// them only to that host, never along a redirect to another.
		auth = &authn.Basic{Username: o.Auth.Username, Password: o.Auth.Password}
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithPlatform(s.platform),
		remote.WithTransport(s.transport),
	}
	g := s.grantFor(r, o.Auth)
	if o.PreferCached {
		if img, err := s.cached(ctx, r, g, ropts); img != nil || err != nil {
			return img, err
		}
	}
	img, err := remote.Image(r, ropts...)
	if err != nil {
		return s.pullFailed(ctx, r, g, err)
	}
	return s.add(ctx, r.Name(), img, fromBlobs, o.Progress, g)
}

// cached returns the cached image r if g may use it: at once if g has
// shown access before, else once the registry serves g the cached
// manifest (by digest, so a moved tag does not matter). It returns nil,
// nil when the image is not cached or the registry no longer has that
// manifest (the caller then pulls). A refusal is an error as a pull's.
func (s *Store) cached(ctx context.Context, r name.Reference, g grant, ropts []remote.Option) (*Image, error) {
	recs, err := s.lookup(r.Name())
	if err != nil {
		return nil, nil
	}
	rec := recs[0]
	img, err := s.Get(ctx, r.Name())
	if err != nil || img.Digest != rec.Digest {
		return nil, nil
	}
	if rec.Access.allows(g) {
		return img, nil
	}
	// Its own credentials (or none) against the registry: a manifest GET.
	_, err = remote.Get(r.Context().Digest(rec.Digest), ropts...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return s.pullFailed(ctx, r, g, err)
	}
	if err := s.grant(ctx, r.Name(), rec.Digest, g); err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Name(), err)
	}
	s.log.Info("cached image served after the registry accepted the caller's credentials", "ref", r.Name(), "digest", rec.Digest, "anonymous", g.public)
	return img, nil
}

// grant records g as allowed to use the cached image ref, if it is still
// the image of that digest.
func (s *Store) grant(ctx context.Context, ref, digest string, g grant) error {
	unlock, err := s.locks.lock(ctx, "record:"+ref)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := s.readRecord(s.recordPath(ref))
	if err != nil {
		return err
	}
	if rec.Digest != digest || rec.Access.allows(g) {
		return nil
	}
	rec.Access = rec.Access.with(g)
	return s.writeRecord(rec)
}

// kindError keeps both an errdefs kind and the underlying cause.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string   { return e.msg + ": " + e.cause.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.cause} }

func (s *Store) pullFailed(ctx context.Context, r name.Reference, g grant, err error) (*Image, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Name(), ctx.Err())
	}
	reg := r.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return nil, &kindError{errdefs.ErrInvalidArgument, fmt.Sprintf("pull %s: registry %s refused access (%d %s); pass credentials (Auth) that may pull this repository", r.Name(), reg, te.StatusCode, http.StatusText(te.StatusCode)), err}
		case te.StatusCode == http.StatusNotFound:
			return nil, &kindError{errdefs.ErrNotFound, fmt.Sprintf("pull %s: registry %s has no such image; check the repository name and tag", r.Name(), reg), err}
		case te.StatusCode < 500:
			return nil, fmt.Errorf("pull %s: %w", r.Name(), err)
		}
	} else if !isNetworkError(err) {
		return nil, fmt.Errorf("pull %s: %w", r.Name(), err)
	}
	// The registry is unreachable or failing: fall back to the cache, for
	// those who have shown access to the image before.
	if img, gerr := s.Get(ctx, r.Name()); gerr == nil {
		if recs, lerr := s.lookup(r.Name()); lerr == nil && recs[0].Access.allows(g) {
			s.log.Warn("registry unreachable; using cached image", "ref", r.Name(), "digest", img.Digest, "err", err)
			return img, nil
		}
		return nil, &kindError{errdefs.ErrUnavailable, fmt.Sprintf("pull %s: registry %s is unreachable, and the cached image was pulled with other credentials than these, which the registry must accept before the cache is used", r.Name(), reg), err}
	}
	return nil, &kindError{errdefs.ErrUnavailable, fmt.Sprintf("pull %s: registry %s is unreachable and the image is not cached", r.Name(), reg), err}
}

func isNetworkError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) ||
		errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ECONNRESET) ||
		errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// progressTracker serialises Progress callbacks.
type progressTracker struct {
	mu sync.Mutex
	p  Progress
	fn func(Progress)
}

func (t *progressTracker) add(bytes int64, layers int) {
	if t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.BytesDone += bytes
	t.p.LayersDone += layers
	t.fn(t.p)
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkSizes checks the sizes m declares against the Store's limits,
// before any blob is fetched: the registry client reads a blob up to its
// declared size, so a size that is missing (negative) or too large would
// let a registry make the agent read without bound.
func (s *Store) checkSizes(ref string, m *v1.Manifest) error {
	if c := m.Config.Size; c < 0 || c > s.metaLimit {
		return errdefs.LimitExceeded("image %s: config %s declares size %d; a config must declare its size, of at most %d bytes (Config.MaxManifestSize)", ref, m.Config.Digest, c, s.metaLimit)
	}
	var total int64
	for i, l := range m.Layers {
		if l.Size < 0 || l.Size > s.limit {
			return errdefs.LimitExceeded("image %s: layer %d (%s) declares size %d; a layer must declare its size, of at most %d bytes (Config.MaxLayerSize)", ref, i, l.Digest, l.Size, s.limit)
		}
		if len(l.URLs) > 0 {
			// Foreign layers would be fetched from any URL the manifest
			// names, outside the registry and its credentials.
			return errdefs.InvalidArgument("image %s: layer %d (%s) lists external URLs (a foreign layer); only layers served by the image's registry are accepted", ref, i, l.Digest)
		}
		total += l.Size
		if total > s.imageLimit {
			return errdefs.LimitExceeded("image %s: its layers declare more than %d bytes in all (Config.MaxImageSize)", ref, s.imageLimit)
		}
	}
	return nil
}

// add caches img's manifest, config and layers and records it under ref.
// The caller holds s.gc shared.
func (s *Store) add(ctx context.Context, ref string, img v1.Image, src source, progress func(Progress), g grant) (*Image, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest digest: %w", ref, err)
	}
	digest := d.String()
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", ref, err)
	}
	if int64(len(rawManifest)) > s.metaLimit {
		return nil, errdefs.LimitExceeded("image %s: manifest is %d bytes, more than the %d-byte limit (Config.MaxManifestSize)", ref, len(rawManifest), s.metaLimit)
	}
	if got := sha256Digest(rawManifest); got != digest {
		return nil, fmt.Errorf("image %s: manifest has digest %s, expected %s", ref, got, digest)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("image %s: parse manifest: %w", ref, err)
	}
	if err := s.checkSizes(ref, m); err != nil {
		return nil, err
	}
	proven, err := s.proven(g)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	cfgDigest := m.Config.Digest.String()
	cfgPath, err := s.blobPath(cfgDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", ref, err)
	}
	// A cached config is read from disk (a second pull fetches no blob),
	// if g may use it.
	var rawConfig []byte
	if proven(cfgDigest) {
		rawConfig, err = os.ReadFile(cfgPath)
	}
	if !proven(cfgDigest) || err != nil || sha256Digest(rawConfig) != cfgDigest {
		if rawConfig, err = img.RawConfigFile(); err != nil {
			return nil, fmt.Errorf("image %s: config: %w", ref, err)
		}
		if int64(len(rawConfig)) > s.metaLimit {
			return nil, errdefs.LimitExceeded("image %s: config is %d bytes, more than the %d-byte limit (Config.MaxManifestSize)", ref, len(rawConfig), s.metaLimit)
		}
		if got := sha256Digest(rawConfig); got != cfgDigest {
			return nil, fmt.Errorf("image %s: config has digest %s, but the manifest says %s", ref, got, cfgDigest)
		}
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("image %s: parse config: %w", ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: manifest lists %d layers but the config lists %d diff IDs", ref, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	rec := &record{
		Ref:          ref,
		Digest:       digest,
		ConfigDigest: cfgDigest,
		Config: ImageConfig{
			Entrypoint: cfg.Config.Entrypoint,
			Cmd:        cfg.Config.Cmd,
			Env:        cfg.Config.Env,
			WorkingDir: cfg.Config.WorkingDir,
			User:       cfg.Config.User,
		},
		Stored: time.Now().UTC(),
		Blobs:  []string{digest, cfgDigest},
	}
	pt := &progressTracker{fn: progress}
	pt.p.LayersTotal = len(m.Layers)
	for i, l := range m.Layers {
		lr := layerRecord{
			Digest:    l.Digest.String(),
			DiffID:    cfg.RootFS.DiffIDs[i].String(),
			Size:      l.Size,
			MediaType: string(l.MediaType),
		}
		if _, err := digestHex(lr.DiffID); err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", ref, i, err)
		}
		if _, err := digestHex(lr.Digest); err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", ref, i, err)
		}
		rec.Layers = append(rec.Layers, lr)
		rec.Size += l.Size
		if src == fromBlobs {
			rec.Blobs = append(rec.Blobs, lr.Digest)
		}
	}
	pt.p.BytesTotal = rec.Size
	pt.add(0, 0)

	// What the layers unpacked by this pull add up to is bounded too.
	unpacked := newBudget(s.imageLimit, errdefs.LimitExceeded("image %s unpacks to more than %d bytes (Config.MaxImageSize)", ref, s.imageLimit))

	job := &layerJob{img: img, src: src, pt: pt, unpacked: unpacked, who: g.key(), proven: proven}

	// Fetch and unpack the layers, a few at a time.
	sem := make(chan struct{}, s.concurrency)
	errs := make([]error, len(rec.Layers))
	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, lr := range rec.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-lctx.Done():
				errs[i] = lctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := s.ensureLayer(lctx, job, lr); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	// Report the first real error, not the cancellations it caused.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return nil, fmt.Errorf("image %s: %w", ref, first)
	}

	// Manifest and config go in only now, so a failed pull leaves none.
	for _, b := range []struct {
		d   string
		raw []byte
	}{{digest, rawManifest}, {cfgDigest, rawConfig}} {
		if err := s.writeBlob(b.d, b.raw); err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
	}
	// Who pulled it joins those who pulled the same manifest before; a
	// new manifest under ref starts afresh.
	unlock, err := s.locks.lock(ctx, "record:"+ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var before *access
	if old, err := s.readRecord(s.recordPath(ref)); err == nil && old.Digest == digest {
		before = old.Access
	}
	rec.Access = before.with(g)
	if err := s.writeRecord(rec); err != nil {
		return nil, fmt.Errorf("image %s: write record: %w", ref, err)
	}
	s.log.Info("image cached", "ref", ref, "digest", digest, "layers", len(rec.Layers), "size", rec.Size)
	return s.image(rec), nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// writeBlob stores small verified content (manifest, config).
func (s *Store) writeBlob(d string, b []byte) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if exists(p) {
		return nil
	}
	return fsutil.WriteFileAtomic(p, b, s.tmpDir())
}

// ensureLayer makes sure the layer lr is unpacked under Root/layers. Only
// one goroutine unpacks a given layer; the others wait and then find it.
// layerJob is what ensureLayer needs of the image being added.
type layerJob struct {
	img      v1.Image
	src      source
	pt       *progressTracker
	unpacked *budget
	who      string                   // grant.key() of the caller
	proven   func(diffID string) bool // layers the caller may use as cached
}

// unpackedFor says whether this process unpacked the layer diffID from the
// registry for the caller who (for a concurrent pull by the same caller,
// whose record is not written yet), and remembers it when set.
func (s *Store) unpackedFor(diffID, who string, set bool) bool {
	key := diffID + " " + who
	if set {
		s.unpackedBy.Store(key, true)
		return true
	}
	_, ok := s.unpackedBy.Load(key)
	return ok
}

func (s *Store) ensureLayer(ctx context.Context, job *layerJob, lr layerRecord) error {
	img, src, pt, unpacked := job.img, job.src, job.pt, job.unpacked
	prove := !job.proven(lr.DiffID) && !s.unpackedFor(lr.DiffID, job.who, false)
	dir, _ := s.layerPath(lr.DiffID)
	cached := func() error {
		if prove && !s.unpackedFor(lr.DiffID, job.who, false) {
			return s.proveLayer(ctx, img, lr, pt)
		}
		pt.add(lr.Size, 1)
		return nil
	}
	if exists(dir) {
		return cached()
	}
	unlock, err := s.locks.lock(ctx, "layer:"+lr.DiffID)
	if err != nil {
		return err
	}
	defer unlock()
	if exists(dir) {
		return cached()
	}
	layer, err := layerOf(img, lr)
	if err != nil {
		return err
	}

	var r io.Reader
	name := lr.Digest
	var dl *blobDownload // the blob as it is fetched, if it is not cached
	badBlob := func() {} // drops a cached blob whose content turned out unusable
	switch src {
	case fromBlobs:
		if p, size, ok := s.cachedBlob(lr, prove); ok {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			pt.add(size, 0)
			badBlob = func() { os.Remove(p) }
			r = f
		} else {
			// Streamed: the blob's bytes are hashed, kept and unpacked as
			// they arrive; it is checked against its digest at its end.
			if dl, err = s.fetchBlob(ctx, lr, layer.Compressed, func(n int64) { pt.add(n, 0) }); err != nil {
				return err
			}
			defer dl.discard()
			r = dl
		}
		dr, closeDec, err := decompress(r)
		if err != nil {
			if dl != nil && ctx.Err() == nil {
				if derr := dl.verify(); derr != nil {
					return derr
				}
			}
			badBlob()
			return fmt.Errorf("layer %s: %w", lr.Digest, err)
		}
		defer closeDec()
		r = dr
	case fromUncompressed:
		name = lr.DiffID
		rc, err := layer.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", lr.DiffID, err)
		}
		defer rc.Close()
		r = rc
	}

	// Every layer is unpacked into a directory of its own under tmp/, in
	// parallel with the others and in no particular order: a runtime
	// stacks the finished directories in the manifest's order, so no layer
	// waits for the one below it.
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	// The layer root is the container's "/" unless the tar says otherwise.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	hr := newHashingReader(r)
	start := time.Now()
	if err := unpack(ctx, hr, tmp, unpackOptions{layer: name, limit: s.limit, maxEntries: s.maxEntries, image: unpacked, log: s.log}); err != nil {
		var ue *UnsafeLayerError
		if errors.As(err, &ue) || errors.Is(err, errdefs.ErrLimitExceeded) {
			badBlob()
			return err
		}
		// A tar or decompression error on a blob that is not the one the
		// manifest names is the blob's fault: say so.
		if dl != nil && ctx.Err() == nil {
			if derr := dl.verify(); derr != nil {
				return derr
			}
		}
		return err
	}
	if dl != nil {
		// Unpacked, but not usable until the blob proves to be the one the
		// manifest names: on a mismatch tmp is removed, never renamed.
		if err := dl.verify(); err != nil {
			return err
		}
	}
	if got := hr.digest(); got != lr.DiffID {
		badBlob()
		return fmt.Errorf("layer %s: uncompressed content has digest %s, but the image config says %s", name, got, lr.DiffID)
	}
	// Make the content durable before the renames make it look complete
	// (the layer and the blob are on the same file system).
	if fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
	if dl != nil {
		if err := dl.commit(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if exists(dir) { // unpacked by someone else meanwhile
			os.RemoveAll(tmp)
			done = true
			pt.add(0, 1)
			return nil
		}
		return fmt.Errorf("layer %s: %w", name, err)
	}
	s.unpackedFor(lr.DiffID, job.who, true)
	done = true
	if src == fromUncompressed {
		pt.add(lr.Size, 0)
	}
	pt.add(0, 1)
	s.log.Debug("layer unpacked", "layer", name, "diffID", lr.DiffID, "took", time.Since(start))
	return nil
}

// layerOf returns the layer of img that lr records.
func layerOf(img v1.Image, lr layerRecord) (v1.Layer, error) {
	h, err := v1.NewHash(lr.Digest)
	if err != nil {
		return nil, err
	}
	layer, err := img.LayerByDigest(h)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", lr.Digest, err)
	}
	return layer, nil
}

// proveLayer fetches the layer lr of img (the registry client checks the
// compressed digest) and checks that it uncompresses to lr.DiffID, without
// keeping it: the caller may then use the cached, unpacked copy.
func (s *Store) proveLayer(ctx context.Context, img v1.Image, lr layerRecord, pt *progressTracker) error {
	layer, err := layerOf(img, lr)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", lr.Digest, err)
	}
	defer rc.Close()
	dr, closeDec, err := decompress(&ctxReader{ctx: ctx, r: rc})
	if err != nil {
		return fmt.Errorf("layer %s: %w", lr.Digest, err)
	}
	defer closeDec()
	limitErr := errdefs.LimitExceeded("layer %s is larger than the %d-byte limit for an uncompressed layer (Config.MaxLayerSize)", lr.Digest, s.limit)
	hr := newHashingReader(&countingReader{r: dr, limit: s.limit, err: limitErr})
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("layer %s: %w", lr.Digest, err)
	}
	if got := hr.digest(); got != lr.DiffID {
		return errdefs.InvalidArgument("layer %s: uncompressed content has digest %s, but the image config says %s", lr.Digest, got, lr.DiffID)
	}
	pt.add(lr.Size, 1)
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// decompress detects gzip and zstd by their magic numbers; anything else is
// taken as an uncompressed tar.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return gz, func() { gz.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}
