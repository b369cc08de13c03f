package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"vessel.dev/vessel/internal/errdefs"
)

// Annotations that name an image in an OCI layout's index.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Import adds the images of a local archive to the cache, without the
// network: an OCI image layout directory (every image in its index.json), a
// tar (optionally gzip-compressed) of such a directory, or a `docker save`
// tarball (every tag in its manifest.json). An image's reference comes from
// the io.containerd.image.name or org.opencontainers.image.ref.name
// annotation, or the docker tag; an image with no name is recorded under
// its manifest digest. An OCI layout tar may hold only directories and
// regular files. It blocks until done and returns the images stored,
// which are the caller's. Errors: errdefs.ErrNotFound if path does not
// exist, errdefs.ErrInvalidArgument if it is none of the three forms or
// holds an unsafe entry (*UnsafeLayerError).
func (s *Store) Import(ctx context.Context, p string) ([]*Image, error) {
	imgs, err := s.importArchive(ctx, p)
	if err != nil {
		s.sweepIfIdle()
	}
	return imgs, err
}

func (s *Store) importArchive(ctx context.Context, p string) ([]*Image, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("import %s: no such file or directory", p)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	s.gc.RLock()
	defer s.gc.RUnlock()

	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "oci-layout")); err != nil {
			return nil, errdefs.InvalidArgument("import %s: directory has no oci-layout file; Import accepts an OCI layout directory, an OCI layout tar or a docker save tarball", p)
		}
		return s.importLayout(ctx, p, p)
	}
	isLayout, err := tarHasFile(p, "oci-layout")
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: not a readable tar (%v); Import accepts an OCI layout directory, an OCI layout tar or a docker save tarball", p, err)
	}
	if isLayout {
		tmp, err := os.MkdirTemp(s.tmpDir(), "import-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, closeDec, err := decompress(f)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		defer closeDec()
		limit := max(s.limit, 4*fi.Size())
		if err := unpack(ctx, r, tmp, unpackOptions{layer: p, limit: limit, maxEntries: s.maxEntries, log: s.log, plain: true}); err != nil {
			return nil, err
		}
		return s.importLayout(ctx, tmp, p)
	}
	return s.importDocker(ctx, p)
}

// tarHasFile reports whether the (possibly gzip'd) tar at p has an entry
// named want at its top level.
func tarHasFile(p, want string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, closeDec, err := decompress(f)
	if err != nil {
		return false, err
	}
	defer closeDec()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return false, err
		}
		if path.Clean(strings.TrimLeft(hdr.Name, "/")) == want {
			return true, nil
		}
	}
}

func (s *Store) importLayout(ctx context.Context, dir, label string) ([]*Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: not an OCI layout: %v", label, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: OCI layout index: %v", label, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: OCI layout index: %v", label, err)
	}
	var out []*Image
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			img, err = s.pickPlatform(idx, d.Digest)
		default:
			s.log.Warn("import: skipping index entry that is not an image", "archive", label, "digest", d.Digest.String(), "mediaType", string(d.MediaType))
			continue
		}
		if err != nil {
			return out, fmt.Errorf("import %s: image %s: %w", label, d.Digest, err)
		}
		ref := d.Digest.String()
		if n := annotatedName(d.Annotations); n != "" {
			r, err := normalise(n)
			if err != nil {
				return out, fmt.Errorf("import %s: image %s: %w", label, d.Digest, err)
			}
			ref = r.Name()
		} else if d.MediaType.IsIndex() {
			// The platform's manifest, which is what Get by digest finds.
			dg, err := img.Digest()
			if err != nil {
				return out, fmt.Errorf("import %s: image %s: %w", label, d.Digest, err)
			}
			ref = dg.String()
		}
		i, err := s.add(ctx, ref, img, fromBlobs, nil, grant{public: true, local: true})
		if err != nil {
			return out, fmt.Errorf("import %s: %w", label, err)
		}
		out = append(out, i)
	}
	if len(out) == 0 {
		return nil, errdefs.InvalidArgument("import %s: the OCI layout's index lists no images", label)
	}
	return out, nil
}

func annotatedName(a map[string]string) string {
	if n := a[annotationContainerdName]; n != "" {
		return n
	}
	return a[annotationRefName]
}

// pickPlatform returns the image for the Store's platform from a nested
// index.
func (s *Store) pickPlatform(parent v1.ImageIndex, d v1.Hash) (v1.Image, error) {
	idx, err := parent.ImageIndex(d)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range im.Manifests {
		if m.MediaType.IsImage() && m.Platform != nil && m.Platform.Satisfies(s.platform) {
			return idx.Image(m.Digest)
		}
	}
	return nil, errdefs.NotFound("index has no image for platform %s", s.platform.String())
}

func (s *Store) importDocker(ctx context.Context, p string) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: neither an OCI layout (no oci-layout entry) nor a docker save tarball (%v)", p, err)
	}
	var out []*Image
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			if len(m) != 1 {
				s.log.Warn("import: skipping untagged image in a multi-image docker tarball", "archive", p, "config", d.Config)
				continue
			}
			img, err := tarball.Image(opener, nil)
			if err != nil {
				return out, fmt.Errorf("import %s: image %d: %w", p, i, err)
			}
			dg, err := img.Digest()
			if err != nil {
				return out, fmt.Errorf("import %s: image %d: %w", p, i, err)
			}
			im, err := s.add(ctx, dg.String(), img, fromUncompressed, nil, grant{public: true, local: true})
			if err != nil {
				return out, fmt.Errorf("import %s: %w", p, err)
			}
			out = append(out, im)
			continue
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return out, errdefs.InvalidArgument("import %s: tag %q: %v", p, t, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return out, fmt.Errorf("import %s: %s: %w", p, t, err)
			}
			im, err := s.add(ctx, tag.Name(), img, fromUncompressed, nil, grant{public: true, local: true})
			if err != nil {
				return out, fmt.Errorf("import %s: %w", p, err)
			}
			out = append(out, im)
		}
	}
	if len(out) == 0 {
		return nil, errdefs.InvalidArgument("import %s: the docker tarball's manifest.json lists no images", p)
	}
	return out, nil
}
