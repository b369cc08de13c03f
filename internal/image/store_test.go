package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testutil/bandwidth"
)

// testRegistry is an in-process OCI registry that counts blob GETs and
// the blob GETs in flight at once. A bandwidth limit (throttle), shared by
// all connections, and a fault injector (fault) apply to blob GETs.
type testRegistry struct {
	srv   *httptest.Server
	host  string
	mu    sync.Mutex
	blobs map[string]int // blob digest -> GETs

	inFlight, maxInFlight atomic.Int64
	// Set before the first request, read by the handler.
	limit *bandwidth.Limit
	// fault, if set, returns what to send instead of the bytes p found at
	// offset off of blob digest (p is the handler's own copy: it may be
	// changed in place; a shorter answer cuts the stream there).
	fault func(digest string, off int64, p []byte) []byte
	// started, if set, is called as a blob GET starts (after inFlight
	// counts it) and may hold it.
	started func(digest string)
}

func newTestRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	tr := &testRegistry{blobs: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isBlobGET(r) {
			h.ServeHTTP(w, r)
			return
		}
		d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		tr.mu.Lock()
		tr.blobs[d]++
		tr.mu.Unlock()
		n := tr.inFlight.Add(1)
		defer tr.inFlight.Add(-1)
		for m := tr.maxInFlight.Load(); n > m && !tr.maxInFlight.CompareAndSwap(m, n); m = tr.maxInFlight.Load() {
		}
		if tr.started != nil {
			tr.started(d)
		}
		if tr.fault != nil {
			w = &faultWriter{ResponseWriter: w, digest: d, fault: tr.fault}
		}
		if tr.limit != nil {
			tr.limit.Handler(h, nil).ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	tr.srv = httptest.NewServer(counted)
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func isBlobGET(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
}

// throttle limits blob GETs to bytesPerSecond in all, however many
// connections share it.
func (tr *testRegistry) throttle(bytesPerSecond int) {
	tr.limit = bandwidth.New(bytesPerSecond)
}

// faultWriter sends a blob's bytes through the registry's fault injector.
type faultWriter struct {
	http.ResponseWriter
	digest string
	off    int64
	fault  func(digest string, off int64, p []byte) []byte
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if out := w.fault(w.digest, w.off, slices.Clone(p)); len(out) > 0 {
		if _, err := w.ResponseWriter.Write(out); err != nil {
			return 0, err
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}

func (tr *testRegistry) blobGETs() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.blobs {
		n += c
	}
	return n
}

func (tr *testRegistry) gets(d string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.blobs[d]
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.blobs = map[string]int{}
}

func tarLayer(t testing.TB, ents ...ent) v1.Layer {
	t.Helper()
	b := mkTar(t, ents...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func buildImage(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func openStore(t testing.TB, root string) *Store {
	t.Helper()
	s, err := Open(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func layerDigests(t testing.TB, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func twoLayerImage(t testing.TB) v1.Image {
	lower := tarLayer(t,
		dir("etc/"), reg("etc/keep", "keep"), reg("etc/gone", "gone"),
		dir("data/"), reg("data/old", "old"),
		dir("bin/"), ent{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		symlink("bin/sh", "tool"), hardlink("bin/tool2", "bin/tool"),
	)
	upper := tarLayer(t,
		reg("etc/.wh.gone", ""),
		dir("data/"), reg("data/.wh..wh..opq", ""), reg("data/new", "new"),
	)
	return buildImage(t, v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo hi"},
		Env:        []string{"PATH=/bin", "FOO=bar"},
		WorkingDir: "/data",
		User:       "1000:1000",
	}, lower, upper)
}

func TestPullUnpacksAndMountsWithOverlayfs(t *testing.T) {
	rg := newTestRegistry(t, nil)
	img := twoLayerImage(t)
	ref := rg.host + "/team/app:v1"
	push(t, ref, img)

	base := t.TempDir()
	s := openStore(t, filepath.Join(base, "images"))
	ctx := context.Background()
	var last Progress
	var calls int
	got, err := s.Pull(ctx, ref, PullOptions{Insecure: true, Progress: func(p Progress) { last = p; calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != ref || got.Digest != digestOf(t, img) {
		t.Errorf("ref %q digest %q, want %q %q", got.Ref, got.Digest, ref, digestOf(t, img))
	}
	want := ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"}, Env: []string{"PATH=/bin", "FOO=bar"}, WorkingDir: "/data", User: "1000:1000"}
	if fmt.Sprint(got.Config) != fmt.Sprint(want) {
		t.Errorf("config %+v, want %+v", got.Config, want)
	}
	if len(got.Layers) != 2 {
		t.Fatalf("layers %v", got.Layers)
	}
	if last.LayersDone != 2 || last.LayersTotal != 2 || last.BytesDone != last.BytesTotal || last.BytesTotal != got.Size || got.Size == 0 || calls < 3 {
		t.Errorf("last progress %+v after %d calls, size %d", last, calls, got.Size)
	}
	for _, l := range got.Layers {
		if !filepath.IsAbs(l) || !strings.HasPrefix(l, filepath.Join(base, "images", "layers", "sha256")+"/") {
			t.Errorf("layer path %q", l)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(got.Layers[0], "etc/gone")); string(b) != "gone" {
		t.Errorf("lower etc/gone = %q", b)
	}

	// Stack the layers with overlayfs: the whiteout and the opaque
	// directory must be honoured by the kernel.
	mnt := t.TempDir()
	lower := slices.Clone(got.Layers)
	slices.Reverse(lower)
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	for p, want := range map[string]string{"etc/keep": "keep", "data/new": "new", "bin/tool": "#!/bin/sh\n"} {
		if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
			t.Errorf("merged %s = %q, %v", p, b, err)
		}
	}
	for _, p := range []string{"etc/gone", "data/old"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("merged %s should be hidden: %v", p, err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(mnt, "bin/sh")); l != "tool" {
		t.Errorf("merged bin/sh -> %q", l)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "bin/tool")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("merged bin/tool mode %v %v", fi, err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}

	// A second pull downloads no blobs at all.
	rg.reset()
	again, err := s.Pull(ctx, ref, PullOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := rg.blobGETs(); n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0: %v", n, rg.blobs)
	}
	if again.Digest != got.Digest || !slices.Equal(again.Layers, got.Layers) {
		t.Errorf("second pull returned %+v, want %+v", again, got)
	}

	// Get, List.
	if g, err := s.Get(ctx, ref); err != nil || g.Digest != got.Digest {
		t.Errorf("Get = %+v, %v", g, err)
	}
	if g, err := s.Get(ctx, got.Digest); err != nil || g.Ref != ref {
		t.Errorf("Get by digest = %+v, %v", g, err)
	}
	if _, err := s.Get(ctx, "busybox"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(busybox) = %v, want not found", err)
	}
	if l, err := s.List(ctx); err != nil || len(l) != 1 || l[0].Ref != ref {
		t.Errorf("List = %v, %v", l, err)
	}

	// Registry gone: the cached image is returned.
	rg.srv.Close()
	off, err := s.Pull(ctx, ref, PullOptions{Insecure: true})
	if err != nil || off.Digest != got.Digest {
		t.Errorf("offline pull = %+v, %v; want the cached image", off, err)
	}
	// ... but an uncached one is unavailable.
	if _, err := s.Pull(ctx, rg.host+"/team/other:v1", PullOptions{}); !errdefs.IsUnavailable(err) {
		t.Errorf("offline pull of uncached image = %v, want unavailable", err)
	}
	// A new Store on the same Root sees the image.
	s2 := openStore(t, filepath.Join(base, "images"))
	if g, err := s2.Get(ctx, ref); err != nil || g.Digest != got.Digest {
		t.Errorf("reopened Get = %+v, %v", g, err)
	}
}

func TestPullNotFound(t *testing.T) {
	rg := newTestRegistry(t, nil)
	s := openStore(t, t.TempDir())
	_, err := s.Pull(context.Background(), rg.host+"/nope:v1", PullOptions{})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("got %v, want not found", err)
	}
}

func TestConcurrentPullsUnpackEachLayerOnce(t *testing.T) {
	rg := newTestRegistry(t, nil)
	img := twoLayerImage(t)
	ref := rg.host + "/team/app:v1"
	push(t, ref, img)
	rg.reset()

	s := openStore(t, t.TempDir())
	var wg sync.WaitGroup
	var fails atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
				t.Error(err)
				fails.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, d := range layerDigests(t, img) {
		if n := rg.gets(d); n != 1 {
			t.Errorf("layer %s fetched %d times, want 1", d, n)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.root, "layers", "sha256"))
	if len(entries) != 2 {
		t.Errorf("%d unpacked layers, want 2", len(entries))
	}
	if tmp, _ := os.ReadDir(s.tmpDir()); len(tmp) != 0 {
		t.Errorf("tmp not empty: %v", tmp)
	}
}

func requireBasic(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestPullBasicAuth(t *testing.T) {
	rg := newTestRegistry(t, requireBasic("alice", "s3cret"))
	ref := rg.host + "/private/app:v1"
	push(t, ref, twoLayerImage(t), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))

	s := openStore(t, t.TempDir())
	ctx := context.Background()
	_, err := s.Pull(ctx, ref, PullOptions{})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "refused access") {
		t.Fatalf("anonymous pull: %v; want a clear 401 refusal", err)
	}
	t.Logf("anonymous pull: %v", err)
	if _, err := s.Pull(ctx, ref, PullOptions{Auth: Auth{Username: "alice", Password: "wrong"}}); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	img, err := s.Pull(ctx, ref, PullOptions{Auth: Auth{Username: "alice", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 {
		t.Errorf("layers %v", img.Layers)
	}
	// A refusal is not papered over by the cache.
	if _, err := s.Pull(ctx, ref, PullOptions{}); err == nil {
		t.Error("anonymous pull of a cached private image succeeded")
	}
}

func TestPullTokenAuth(t *testing.T) {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	const token = "tok-123"
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	realm := "http://" + srv.Listener.Addr().String() + "/token"
	var tokenRequests atomic.Int32
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": token})
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test"`, realm))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	ref := host + "/private/app:v1"
	push(t, ref, twoLayerImage(t), remote.WithAuth(&authn.Basic{Username: "bob", Password: "pw"}))

	s := openStore(t, t.TempDir())
	if _, err := s.Pull(context.Background(), ref, PullOptions{}); err == nil {
		t.Fatal("anonymous pull succeeded")
	}
	tokenRequests.Store(0)
	img, err := s.Pull(context.Background(), ref, PullOptions{Auth: Auth{Username: "bob", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || tokenRequests.Load() == 0 {
		t.Errorf("layers %v, token requests %d", img.Layers, tokenRequests.Load())
	}
}

func TestPullRefusesHostileLayer(t *testing.T) {
	passwd := readHost(t, "/etc/passwd")
	for _, tc := range []struct {
		name  string
		ents  []ent
		entry string
	}{
		{"dotdot", []ent{reg("ok", "ok"), reg("../../etc/x", "pwn")}, "../../etc/x"},
		{"absolute dotdot", []ent{reg("/../../x", "pwn")}, "/../../x"},
		{"symlink escape", []ent{symlink("evil", "../../.."), reg("evil/x", "pwn")}, "evil"},
		{"write through absolute symlink", []ent{symlink("abs", "/etc"), reg("abs/passwd", "pwn")}, "abs/passwd"},
		{"hardlink escape", []ent{hardlink("h", "../../etc/shadow")}, "h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newTestRegistry(t, nil)
			ref := rg.host + "/evil/app:v1"
			push(t, ref, buildImage(t, v1.Config{}, tarLayer(t, tc.ents...)))

			base := t.TempDir()
			root := filepath.Join(base, "images")
			s := openStore(t, root)
			before := snapshot(t, base, "")
			_, err := s.Pull(context.Background(), ref, PullOptions{})
			var ue *UnsafeLayerError
			if !errors.As(err, &ue) || ue.Entry != tc.entry || !strings.HasPrefix(ue.Layer, "sha256:") {
				t.Fatalf("got %v, want UnsafeLayerError naming %q", err, tc.entry)
			}
			t.Logf("pull: %v", err)
			if !strings.Contains(err.Error(), fmt.Sprintf("entry %q", tc.entry)) {
				t.Errorf("message %q does not name the entry", err)
			}
			// Nothing changed anywhere below the parent of Root (directory
			// mtimes aside): no layer, no blob, no record, no temp dir.
			after := snapshot(t, base, "")
			for p, v := range after {
				if before[p] != v {
					t.Errorf("%s changed or appeared (%s)", p, v)
				}
			}
			if len(after) != len(before) {
				t.Errorf("%d paths before, %d after", len(before), len(after))
			}
			if _, err := s.Get(context.Background(), ref); !errdefs.IsNotFound(err) {
				t.Errorf("Get after refused pull: %v", err)
			}
			if now := readHost(t, "/etc/passwd"); !bytes.Equal(now.body, passwd.body) || !now.mtime.Equal(passwd.mtime) {
				t.Fatal("host /etc/passwd changed")
			}
		})
	}
}

func TestImportDockerTarball(t *testing.T) {
	img := twoLayerImage(t)
	p := filepath.Join(t.TempDir(), "busybox.tar")
	tag, _ := name.NewTag("busybox:1.36")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, t.TempDir())
	ctx := context.Background()
	imgs, err := s.Import(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Ref != "index.docker.io/library/busybox:1.36" {
		t.Fatalf("imported %+v", imgs)
	}
	for _, short := range []string{"busybox:1.36", "docker.io/library/busybox:1.36", "index.docker.io/library/busybox:1.36"} {
		g, err := s.Get(ctx, short)
		if err != nil {
			t.Fatalf("Get(%s): %v", short, err)
		}
		if g.Config.WorkingDir != "/data" || len(g.Layers) != 2 {
			t.Errorf("Get(%s) = %+v", short, g)
		}
	}
	g, _ := s.Get(ctx, "busybox:1.36")
	if b, _ := os.ReadFile(filepath.Join(g.Layers[1], "data/new")); string(b) != "new" {
		t.Errorf("upper data/new = %q", b)
	}
	if _, err := s.Get(ctx, "busybox"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(busybox) (tag latest) = %v, want not found", err)
	}
}

func TestImportOCILayout(t *testing.T) {
	named := twoLayerImage(t)
	unnamed := buildImage(t, v1.Config{Cmd: []string{"true"}}, tarLayer(t, reg("only", "x")))
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(named, layout.WithAnnotations(map[string]string{annotationRefName: "registry.example.com/team/app:v1"})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(unnamed); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	check := func(t *testing.T, s *Store, imgs []*Image) {
		t.Helper()
		if len(imgs) != 2 {
			t.Fatalf("imported %d images", len(imgs))
		}
		g, err := s.Get(ctx, "registry.example.com/team/app:v1")
		if err != nil || g.Digest != digestOf(t, named) || len(g.Layers) != 2 || g.Config.User != "1000:1000" {
			t.Errorf("Get named = %+v, %v", g, err)
		}
		u, err := s.Get(ctx, digestOf(t, unnamed))
		if err != nil || u.Ref != digestOf(t, unnamed) || len(u.Layers) != 1 {
			t.Errorf("Get unnamed by digest = %+v, %v", u, err)
		}
	}
	t.Run("directory", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		imgs, err := s.Import(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		check(t, s, imgs)
	})
	t.Run("tar", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "layout.tar")
		writeDirTar(t, dir, p)
		s := openStore(t, t.TempDir())
		imgs, err := s.Import(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, s, imgs)
		if tmp, _ := os.ReadDir(s.tmpDir()); len(tmp) != 0 {
			t.Errorf("tmp not empty: %v", tmp)
		}
	})
	t.Run("not an archive", func(t *testing.T) {
		s := openStore(t, t.TempDir())
		p := filepath.Join(t.TempDir(), "junk")
		os.WriteFile(p, []byte("not a tar"), 0o644)
		if _, err := s.Import(ctx, p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Import(junk) = %v, want invalid argument", err)
		}
		if _, err := s.Import(ctx, t.TempDir()); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Import(empty dir) = %v, want invalid argument", err)
		}
		if _, err := s.Import(ctx, "/nonexistent/x.tar"); !errdefs.IsNotFound(err) {
			t.Errorf("Import(missing) = %v, want not found", err)
		}
	})
}

// writeDirTar writes the tree at dir as a tar at p.
func writeDirTar(t *testing.T, dir, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	rg := newTestRegistry(t, nil)
	shared := tarLayer(t, reg("base/file", "shared"))
	a := buildImage(t, v1.Config{Cmd: []string{"a"}}, shared, tarLayer(t, reg("a", "only a")))
	b := buildImage(t, v1.Config{Cmd: []string{"b"}}, shared, tarLayer(t, reg("b", "only b")))
	push(t, rg.host+"/app/a:v1", a)
	push(t, rg.host+"/app/b:v1", b)

	s := openStore(t, t.TempDir())
	ctx := context.Background()
	ia, err := s.Pull(ctx, rg.host+"/app/a:v1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ib, err := s.Pull(ctx, rg.host+"/app/b:v1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ia.Layers[0] != ib.Layers[0] {
		t.Fatalf("shared layer unpacked twice: %v %v", ia.Layers, ib.Layers)
	}
	aBlobs := layerDigests(t, a)

	if err := s.Remove(ctx, rg.host+"/app/a:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, rg.host+"/app/a:v1"); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Remove = %v", err)
	}
	if !exists(ia.Layers[0]) {
		t.Error("shared layer deleted")
	}
	if exists(ia.Layers[1]) {
		t.Error("layer only a used was kept")
	}
	if p, _ := s.blobPath(aBlobs[0]); !exists(p) {
		t.Error("shared blob deleted")
	}
	if p, _ := s.blobPath(aBlobs[1]); exists(p) {
		t.Error("blob only a used was kept")
	}
	if p, _ := s.blobPath(digestOf(t, a)); exists(p) {
		t.Error("a's manifest blob was kept")
	}
	if g, err := s.Get(ctx, rg.host+"/app/b:v1"); err != nil || !slices.Equal(g.Layers, ib.Layers) {
		t.Errorf("Get b = %+v, %v", g, err)
	}

	if err := s.Remove(ctx, ib.Digest); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"layers/sha256", "blobs/sha256", "images", "tmp"} {
		if e, _ := os.ReadDir(filepath.Join(s.root, d)); len(e) != 0 {
			t.Errorf("%s not empty after removing every image: %v", d, e)
		}
	}
	if err := s.Remove(ctx, rg.host+"/app/b:v1"); !errdefs.IsNotFound(err) {
		t.Errorf("second Remove = %v, want not found", err)
	}
}

func TestOpenValidates(t *testing.T) {
	if _, err := Open(Config{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Open without Root = %v", err)
	}
	if _, err := Open(Config{Root: t.TempDir(), Platform: "amd64"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Open with a bad platform = %v", err)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "tmp", "layer-123", "x"), 0o755)
	if _, err := Open(Config{Root: root}); err != nil {
		t.Fatal(err)
	}
	if e, _ := os.ReadDir(filepath.Join(root, "tmp")); len(e) != 0 {
		t.Errorf("Open left %v in tmp", e)
	}
}

func TestPullZstdLayerAndSizeLimit(t *testing.T) {
	rg := newTestRegistry(t, nil)
	b := mkTar(t, reg("big", strings.Repeat("z", 64<<10)))
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompression(compression.ZStd))
	if err != nil {
		t.Fatal(err)
	}
	ref := rg.host + "/z/app:v1"
	push(t, ref, buildImage(t, v1.Config{}, zl))

	s := openStore(t, t.TempDir())
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(img.Layers[0], "big")); err != nil || fi.Size() != 64<<10 {
		t.Errorf("zstd layer content: %v %v", fi, err)
	}

	// The same layer is a "bomb" for a store limited to 16 KiB.
	small, err := Open(Config{Root: t.TempDir(), MaxLayerSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Pull(context.Background(), ref, PullOptions{}); !errors.Is(err, errdefs.ErrLimitExceeded) {
		t.Fatalf("pull over the limit = %v, want ErrLimitExceeded", err)
	}
	for _, d := range []string{"layers/sha256", "blobs/sha256", "images", "tmp"} {
		if e, _ := os.ReadDir(filepath.Join(small.root, d)); len(e) != 0 {
			t.Errorf("%s not empty after a refused pull: %v", d, e)
		}
	}
}
