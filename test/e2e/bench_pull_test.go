package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"vessel.dev/vessel/internal/image"
	"vessel.dev/vessel/internal/image/imagetest"
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
//	go test -run x -bench PullToRunning -benchtime 3x ./test/e2e/
func BenchmarkPullToRunning(b *testing.B) {
	t := b // temporary directories and processes go with the benchmark
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
			l, err := imagetest.RandomLayer(uint64(round*10+i), 100<<20, 10)
			if err != nil {
				b.Fatal(err)
			}
			layers = append(layers, l)
		}
		img := reg.push(fmt.Sprintf("big:%d", round), []string{"sleep", "3600"}, layers...)
		family := fmt.Sprintf("big-%d", round)
		if _, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
			Cpu: aws.String("256"), Memory: aws.String("512"),
			ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String(img),
				StopTimeout: aws.Int32(1)}}}); err != nil {
			b.Fatal(err)
		}

		start := time.Now()
		if err := imagetest.DownloadBlobs(img, image.DefaultConcurrency); err != nil {
			b.Fatal(err)
		}
		dl := time.Since(start)
		start = time.Now()
		arn := runOneB(b, c, family)
		waitForB(b, c, arn, "RUNNING")
		run := time.Since(start)
		stopAllB(c)
		fmt.Printf("round %d: blobs' download alone %.2fs, RunTask→RUNNING %.2fs, ratio %.2f×\n", round, dl.Seconds(), run.Seconds(), run.Seconds()/dl.Seconds())
		sum += run.Seconds() / dl.Seconds()
	}
	b.ReportMetric(sum/float64(round), "running/download")
}
