package image

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/image/imagetest"
)

// Sizes of BenchmarkPull500MB's image and registry.
const (
	benchLayers        = 5
	benchLayerSize     = 100 << 20 // random, so gzip keeps it about as large
	benchFilesPerLayer = 10
	benchBandwidth     = 100 << 20 // bytes per second, all connections together
)

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
		l, err := imagetest.RandomLayer(uint64(i), benchLayerSize, benchFilesPerLayer)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
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
		start := time.Now()
		if err := imagetest.DownloadBlobs(ref, DefaultConcurrency); err != nil {
			b.Fatal(err)
		}
		dl := time.Since(start)
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
	_, layers, err := imagetest.Fetch(ref)
	if err != nil {
		b.Fatal(err)
	}
	err = imagetest.EachLayer(layers, DefaultConcurrency, func(l v1.Layer) error {
		f, err := os.CreateTemp(root, "blob-")
		if err != nil {
			return err
		}
		defer f.Close()
		d, err := imagetest.CopyBlob(l, onlyWriter{f})
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
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
