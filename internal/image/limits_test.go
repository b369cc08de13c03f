package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"vessel.dev/vessel/internal/errdefs"
)

// rawManifest is a manifest pushed byte for byte, as a hostile registry
// would serve it.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// pushEdited pushes img (so its blobs are in the registry), then puts its
// manifest, changed by edit, under ref.
func pushEdited(t *testing.T, ref string, img v1.Image, edit func(m *v1.Manifest)) {
	t.Helper()
	push(t, ref+"-orig", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{b, m.MediaType}); err != nil {
		t.Fatal(err)
	}
}

func randomBody(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// requireLimit checks that err is an ErrLimitExceeded naming want, and
// that the refused pull left nothing in the cache.
func requireLimit(t *testing.T, s *Store, err error, want string) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrLimitExceeded) || !strings.Contains(err.Error(), want) {
		t.Fatalf("pull = %v; want ErrLimitExceeded naming %q", err, want)
	}
	t.Logf("refused: %v", err)
	for _, d := range []string{"layers/sha256", "images", "tmp"} {
		if e, _ := os.ReadDir(filepath.Join(s.root, d)); len(e) != 0 {
			t.Errorf("%s not empty after a refused pull: %v", d, e)
		}
	}
}

// TestPullChecksDeclaredSizesBeforeFetching: a manifest's declared sizes
// are checked against the limits before any blob is fetched, and a size the
// manifest does not give (negative) is refused rather than read unbounded.
func TestPullChecksDeclaredSizesBeforeFetching(t *testing.T) {
	big := tarLayer(t, reg("big", randomBody(t, 64<<10)))
	small := tarLayer(t, reg("small", "x"))
	for _, tc := range []struct {
		name string
		cfg  Config
		img  v1.Image
		edit func(m *v1.Manifest)
		want string
	}{
		{"layer without a size", Config{}, buildImage(t, v1.Config{}, small),
			func(m *v1.Manifest) { m.Layers[0].Size = -1 }, "size -1"},
		{"config without a size", Config{}, buildImage(t, v1.Config{}, small),
			func(m *v1.Manifest) { m.Config.Size = -1 }, "size -1"},
		{"config over MaxManifestSize", Config{MaxManifestSize: 16 << 10},
			buildImage(t, v1.Config{Env: []string{"BIG=" + strings.Repeat("e", 32<<10)}}, small), nil, "MaxManifestSize"},
		{"compressed layer over MaxLayerSize", Config{MaxLayerSize: 32 << 10}, buildImage(t, v1.Config{}, big), nil, "MaxLayerSize"},
		{"compressed image over MaxImageSize", Config{MaxImageSize: 96 << 10},
			buildImage(t, v1.Config{}, big, tarLayer(t, reg("big2", randomBody(t, 64<<10)))), nil, "MaxImageSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newTestRegistry(t, nil)
			ref := rg.host + "/limits/app:v1"
			if tc.edit != nil {
				pushEdited(t, ref, tc.img, tc.edit)
			} else {
				push(t, ref, tc.img)
			}
			rg.reset()
			tc.cfg.Root = t.TempDir()
			s, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Pull(context.Background(), ref, PullOptions{})
			requireLimit(t, s, err, tc.want)
			if n := rg.blobGETs(); n != 0 {
				t.Errorf("%d blobs fetched before the refusal, want 0: %v", n, rg.blobs)
			}
		})
	}
}

// TestPullCapsManifestReads: a registry that answers a manifest request
// with an endless body is cut off at MaxManifestSize.
func TestPullCapsManifestReads(t *testing.T) {
	// Atomic: the handler may still be writing when the pull returns.
	var sent atomic.Int64
	endless := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			w.WriteHeader(http.StatusOK)
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			for sent.Load() < 1<<30 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				sent.Add(int64(len(chunk)))
			}
		})
	}
	rg := newTestRegistry(t, endless)
	s, err := Open(Config{Root: t.TempDir(), MaxManifestSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), rg.host+"/endless/app:v1", PullOptions{})
	requireLimit(t, s, err, "MaxManifestSize")
	if n := sent.Load(); n >= 16<<20 {
		t.Errorf("the registry sent %d bytes before the pull gave up; want the read stopped near 1 MiB", n)
	}
}

// TestPullCapsUnpack: one layer's entries, names and depth, and the whole
// image's unpacked size, are bounded, each with an error naming the limit.
func TestPullCapsUnpack(t *testing.T) {
	deep := strings.Repeat("d/", MaxPathDepth+10) + "f"
	long := strings.Repeat(strings.Repeat("n", 250)+"/", 17) + "f" // 4268 bytes
	many := []ent{}
	for i := range 20 {
		many = append(many, reg("f"+strings.Repeat("x", i), "x"))
	}
	zeros := strings.Repeat("\x00", 60<<10)
	for _, tc := range []struct {
		name   string
		cfg    Config
		layers []v1.Layer
		want   string
	}{
		{"entries over MaxLayerEntries", Config{MaxLayerEntries: 10}, []v1.Layer{tarLayer(t, many...)}, "MaxLayerEntries"},
		{"path deeper than MaxPathDepth", Config{}, []v1.Layer{tarLayer(t, reg(deep, "x"))}, "256 components"},
		{"name component over 255 bytes", Config{}, []v1.Layer{tarLayer(t, reg(strings.Repeat("n", 256), "x"))}, "255 bytes"},
		{"path over 4096 bytes", Config{}, []v1.Layer{tarLayer(t, reg(long, "x"))}, "4096 bytes"},
		{"symlink target over 4096 bytes", Config{}, []v1.Layer{tarLayer(t, symlink("l", strings.Repeat("a/", 2100)))}, "4096 bytes"},
		{"unpacked image over MaxImageSize", Config{MaxImageSize: 100 << 10},
			[]v1.Layer{tarLayer(t, reg("z1", zeros)), tarLayer(t, reg("z2", zeros))}, "MaxImageSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newTestRegistry(t, nil)
			ref := rg.host + "/limits/app:v1"
			push(t, ref, buildImage(t, v1.Config{}, tc.layers...))
			tc.cfg.Root = t.TempDir()
			s, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Pull(context.Background(), ref, PullOptions{})
			requireLimit(t, s, err, tc.want)
		})
	}
}
