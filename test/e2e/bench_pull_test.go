package e2e

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/testutil/bandwidth"
)

// BenchmarkPullToRunning runs a task on runc whose image is not cached: a
// busybox layer and five 100 MiB layers of random content (new in every
// round), from the in-process registry limited to 100 MiB/s in all. Each
// round prints, measured one after the other, the blobs' download alone
// (the store's parallelism, verified, to nowhere) and RunTask → RUNNING
// (wall time from the call to the task seen RUNNING), and their ratio;
// the target is 1.3. Run it with
//
//	go test -run x -bench PullToRunning -benchtime 2x ./test/e2e/
func BenchmarkPullToRunning(b *testing.B) {
	t := &testing.T{}
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		b.Skip("runc is not installed; scripts/setup installs it")
	}
	s := startRuncServerB(b)
	bw := bandwidth.New(100 << 20)
	reg := newRegistryAt(t, "127.0.0.1", func(h http.Handler) http.Handler {
		return bw.Handler(h, func(r *http.Request) bool {
			return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
		})
	})
	c := s.ecsClient()
	ctx := context.Background()
	bb := busyboxLayer(t)
	var sum float64
	round := 0
	for b.Loop() {
		round++
		layers := []v1.Layer{bb}
		for i := range 5 {
			layers = append(layers, randomLayer(t, uint64(round*10+i)))
		}
		img := reg.push(fmt.Sprintf("big:%d", round), []string{"sleep", "3600"}, layers...)
		family := fmt.Sprintf("big-%d", round)
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				StopTimeout: aws.Int32(1)}}}); err != nil {
			b.Fatal(err)
		}

		dl := downloadBlobs(b, img)
		start := time.Now()
		arn := runOneB(b, c, family)
		waitForB(b, c, arn, "RUNNING")
		run := time.Since(start)
		stopAllB(c)
		fmt.Printf("round %d: blobs' download alone %.2fs, RunTask→RUNNING %.2fs, ratio %.2f×\n", round, dl.Seconds(), run.Seconds(), run.Seconds()/dl.Seconds())
		sum += run.Seconds() / dl.Seconds()
	}
	b.ReportMetric(sum/float64(round), "running/download")
}

// randomLayer is a layer of ten 10 MiB files of random content.
func randomLayer(t *testing.T, seed uint64) v1.Layer {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xe2})
	var entries []tarEntry
	for i := range 10 {
		body := make([]byte, 10<<20)
		rng.Read(body)
		entries = append(entries, tarEntry{hdr: tar.Header{Name: fmt.Sprintf("data/%d-%d", seed, i), Typeflag: tar.TypeReg, Mode: 0o644}, body: body})
	}
	return layerFrom(t, entries)
}

// downloadBlobs fetches ref's config and layers as the host's image store
// does (image.DefaultConcurrency layers at once), checks each against its
// digest, keeps nothing, and says how long it took.
func downloadBlobs(b *testing.B, ref string) time.Duration {
	start := time.Now()
	r, err := name.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		b.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	sem := make(chan struct{}, image.DefaultConcurrency)
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			d, err := l.Digest()
			if err != nil {
				errs[i] = err
				return
			}
			rc, err := l.Compressed()
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				errs[i] = err
				return
			}
			if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() {
				errs[i] = fmt.Errorf("blob %s has digest %s", d, got)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
