package imagetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

// RandomLayer is a gzip layer of files (layer<seed>/file<i>) holding size
// bytes of random content in all, compressed once here (at the fastest
// level, so that gzip stores rather than shrinks it) and served as is.
func RandomLayer(seed uint64, size, files int) (v1.Layer, error) {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xbe})
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	content := make([]byte, size/files)
	for i := range files {
		rng.Read(content)
		h := &tar.Header{Name: fmt.Sprintf("layer%d/file%d", seed, i), Typeflag: tar.TypeReg, Mode: 0o644,
			Size: int64(len(content)), ModTime: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz.Bytes())), nil })
}

// CopyBlob copies l's compressed blob to w and checks it against its
// digest, which it returns.
func CopyBlob(l v1.Layer, w io.Writer) (v1.Hash, error) {
	d, err := l.Digest()
	if err != nil {
		return d, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return d, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), rc); err != nil {
		return d, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() {
		return d, fmt.Errorf("blob %s has digest %s", d, got)
	}
	return d, nil
}

// EachLayer runs fn for every layer, parallel at once, and returns the
// first error.
func EachLayer(layers []v1.Layer, parallel int, fn func(v1.Layer) error) error {
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(l)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Fetch reads ref's manifest and config from its registry and returns the
// image and its layers, as a pull starts.
func Fetch(ref string) (v1.Image, []v1.Layer, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	img, err := remote.Image(r)
	if err != nil {
		return nil, nil, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return nil, nil, err
	}
	layers, err := img.Layers()
	return img, layers, err
}

// DownloadBlobs fetches ref's manifest, config and layers as a pull does
// (parallel layers at once), checks each layer against its digest, and
// keeps nothing.
func DownloadBlobs(ref string, parallel int) error {
	_, layers, err := Fetch(ref)
	if err != nil {
		return err
	}
	return EachLayer(layers, parallel, func(l v1.Layer) error {
		_, err := CopyBlob(l, io.Discard)
		return err
	})
}
