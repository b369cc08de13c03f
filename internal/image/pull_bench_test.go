package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// Sizes of BenchmarkPull500MB's image and registry.
const (
	benchLayers        = 5
	benchLayerSize     = 100 << 20 // uncompressed; random, so gzip keeps it about as large
	benchFilesPerLayer = 10
	benchBandwidth     = 100 << 20 // bytes per second, all connections together
)

// benchLayer is a gzip layer of benchFilesPerLayer random files.
func benchLayer(b *testing.B, seed uint64) v1.Layer {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{byte(seed), 0xbe})
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	content := make([]byte, benchLayerSize/benchFilesPerLayer)
	for i := range benchFilesPerLayer {
		rng.Read(content)
		h := &tar.Header{Name: fmt.Sprintf("layer%d/file%d", seed, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content)), ModTime: testTime}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	// Compressed already: the layer serves these bytes as they are.
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz.Bytes())), nil })
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkPull500MB pulls an image of five 100 MiB layers of random
// content from the in-process registry limited to 100 MiB/s in all, and
// prints, each round, measured one after the other:
//
//   - download: the blobs alone, fetched with the Store's parallelism and
//     verified against their digests, to nowhere;
//   - pull: Store.Pull into an empty cache, from its start to the image
//     being ready to run (every layer unpacked, verified and recorded);
//   - download-then-unpack: what Pull did before it streamed, reproduced
//     here (each layer's blob downloaded to a file and made durable, then
//     unpacked from it; the same parallelism).
//
// Each is given as a ratio to the download; the target for pull is 1.3.
//
//	go test -run '^$' -bench Pull500MB -benchtime 3x ./internal/image/
func BenchmarkPull500MB(b *testing.B) {
	rg := newTestRegistry(b, nil)
	var layers []v1.Layer
	for i := range benchLayers {
		layers = append(layers, benchLayer(b, uint64(i)))
	}
	img := buildImage(b, v1.Config{Cmd: []string{"/bin/true"}}, layers...)
	ref := rg.host + "/bench/big:v1"
	push(b, ref, img)
	var total int64
	for _, l := range layers {
		n, _ := l.Size()
		total += n
	}
	rg.throttle(benchBandwidth)
	b.Logf("image: %d layers, %.0f MiB compressed; registry limited to %d MiB/s", benchLayers, float64(total)/(1<<20), benchBandwidth>>20)

	var sums [3]float64
	round := 0
	for b.Loop() {
		round++
		dl := benchDownload(b, ref)
		pull := benchPull(b, ref)
		old := benchDownloadThenUnpack(b, ref)
		b.Logf("round %d: download %.2fs, pull %.2fs (%.2fx), download-then-unpack %.2fs (%.2fx)",
			round, dl.Seconds(), pull.Seconds(), pull.Seconds()/dl.Seconds(), old.Seconds(), old.Seconds()/dl.Seconds())
		sums[0] += dl.Seconds()
		sums[1] += pull.Seconds() / dl.Seconds()
		sums[2] += old.Seconds() / dl.Seconds()
	}
	b.ReportMetric(sums[0]/float64(round), "download-s")
	b.ReportMetric(sums[1]/float64(round), "pull/download")
	b.ReportMetric(sums[2]/float64(round), "old/download")
}

// benchDownload fetches the image's blobs as Pull does (manifest, config,
// then the layers with the Store's default parallelism), verifying each
// against its digest, and keeps nothing.
func benchDownload(b *testing.B, ref string) time.Duration {
	start := time.Now()
	img, layers := benchRemote(b, ref)
	if _, err := img.RawConfigFile(); err != nil {
		b.Fatal(err)
	}
	benchEachLayer(b, layers, func(l v1.Layer) error {
		_, err := copyBlob(l, io.Discard)
		return err
	})
	return time.Since(start)
}

// copyBlob copies l's compressed blob to w and checks it against its
// digest.
func copyBlob(l v1.Layer, w io.Writer) (v1.Hash, error) {
	d, err := l.Digest()
	if err != nil {
		return d, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return d, err
	}
	defer rc.Close()
	hr := newHashingReader(rc)
	if _, err := io.Copy(w, hr); err != nil {
		return d, err
	}
	if got := hr.digest(); got != d.String() {
		return d, fmt.Errorf("blob %s has digest %s", d, got)
	}
	return d, nil
}

// benchPull is Store.Pull into an empty cache.
func benchPull(b *testing.B, ref string) time.Duration {
	root := b.TempDir()
	defer os.RemoveAll(root)
	s, err := Open(Config{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// benchDownloadThenUnpack is the pull as it was before streaming: each
// layer's blob is downloaded to a file, verified and synced, then
// decompressed and unpacked from that file and synced.
func benchDownloadThenUnpack(b *testing.B, ref string) time.Duration {
	root := b.TempDir()
	defer os.RemoveAll(root)
	start := time.Now()
	img, layers := benchRemote(b, ref)
	if _, err := img.RawConfigFile(); err != nil {
		b.Fatal(err)
	}
	benchEachLayer(b, layers, func(l v1.Layer) error {
		f, err := os.CreateTemp(root, "blob-")
		if err != nil {
			return err
		}
		defer f.Close()
		d, err := copyBlob(l, onlyWriter{f})
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		dr, closeDec, err := decompress(f)
		if err != nil {
			return err
		}
		defer closeDec()
		dir, err := os.MkdirTemp(root, "layer-")
		if err != nil {
			return err
		}
		if err := unpack(context.Background(), newHashingReader(dr), dir, unpackOptions{layer: d.String(), limit: DefaultMaxLayerSize}); err != nil {
			return err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Syncfs(fd)
	})
	return time.Since(start)
}

func benchRemote(b *testing.B, ref string) (v1.Image, []v1.Layer) {
	r, err := name.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		b.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	return img, layers
}

// benchEachLayer runs fn for every layer, as many at once as a Store does
// by default.
func benchEachLayer(b *testing.B, layers []v1.Layer, fn func(v1.Layer) error) {
	sem := make(chan struct{}, DefaultConcurrency)
	errs := make(chan error, len(layers))
	var wg sync.WaitGroup
	for _, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- fn(l)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}
