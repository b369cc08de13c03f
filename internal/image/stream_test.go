package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// randomText is n bytes of seeded random content (incompressible).
func randomText(seed uint64, n int) string {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return string(b)
}

// layerOfTar makes a layer of the tar entries, compressed with c.
func layerOfTar(t testing.TB, c compression.Compression, ents ...ent) v1.Layer {
	t.Helper()
	b := mkTar(t, ents...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompression(c))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fourLayerImage has gzip and zstd layers of a few MiB in all, with
// whiteouts, an opaque directory, replaced files, links, modes and owners.
func fourLayerImage(t testing.TB) v1.Image {
	return buildImage(t, v1.Config{Cmd: []string{"/bin/tool"}},
		layerOfTar(t, compression.GZip,
			dir("etc/"), reg("etc/keep", "keep"), reg("etc/gone", "gone"),
			dir("data/"), reg("data/old", "old"), reg("data/big", randomText(1, 1500<<10)),
			dir("bin/"), ent{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
			ent{name: "bin/suid", typ: tar.TypeReg, body: "x", mode: 0o4755},
			ent{name: "etc/secret", typ: tar.TypeReg, body: "s", mode: 0o600, uid: 1000, gid: 1000},
			ent{name: "data/fifo", typ: tar.TypeFifo, mode: 0o644},
			symlink("bin/sh", "tool"), hardlink("bin/tool2", "bin/tool"),
		),
		layerOfTar(t, compression.ZStd,
			dir("etc/"), reg("etc/.wh.gone", ""),
			dir("data/"), reg("data/.wh..wh..opq", ""), reg("data/new", "new"),
			reg("data/zbig", randomText(2, 1<<20)),
		),
		layerOfTar(t, compression.GZip,
			dir("bin/"), ent{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\necho v2\n", mode: 0o700},
			dir("opt/"), reg("opt/blob", randomText(3, 1500<<10)),
		),
		layerOfTar(t, compression.GZip,
			dir("opt/"), reg("opt/.wh.blob", ""), reg("opt/small", "small"),
		),
	)
}

// tree describes everything of a layer directory a container can see:
// each entry's type and mode, owner, size, content, link target, device
// number, file modification time and overlayfs opaque mark.
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		v := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" size=%d sha256=%x mtime=%d", len(b), sha256.Sum256(b), st.Mtim.Nano())
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case unix.S_IFCHR:
			v += fmt.Sprintf(" rdev=%d", st.Rdev)
		case unix.S_IFDIR:
			buf := make([]byte, 8)
			if n, err := unix.Lgetxattr(p, opaqueXattr, buf); err == nil {
				v += " opaque=" + string(buf[:n])
			}
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStreamedPullGivesTheSameRootfs pulls a four-layer image through a
// throttled registry, so that layers download side by side and are
// unpacked as their bytes trickle in, and checks each layer directory
// against the same layer unpacked from its complete uncompressed stream,
// then the stacked rootfs.
func TestStreamedPullGivesTheSameRootfs(t *testing.T) {
	rg := newTestRegistry(t, nil)
	img := fourLayerImage(t)
	ref := rg.host + "/team/app:v1"
	push(t, ref, img)
	rg.throttle(4 << 20) // about a second for the whole image

	s := openStore(t, filepath.Join(t.TempDir(), "images"))
	got, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != len(layers) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(layers))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(t.TempDir(), "ref")
		if err := os.Mkdir(want, 0o755); err != nil {
			t.Fatal(err)
		}
		err = unpack(context.Background(), rc, want, unpackOptions{layer: fmt.Sprint("reference ", i), limit: DefaultMaxLayerSize})
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		gt, wt := tree(t, got.Layers[i]), tree(t, want)
		for _, p := range slices.Sorted(func(yield func(string) bool) {
			for p := range wt {
				if !yield(p) {
					return
				}
			}
			for p := range gt {
				if _, ok := wt[p]; !ok && !yield(p) {
					return
				}
			}
		}) {
			if p == "." { // the layer root's times are its directory's
				continue
			}
			if gt[p] != wt[p] {
				t.Errorf("layer %d: %s is %q, unpacked from the whole stream it is %q", i, p, gt[p], wt[p])
			}
		}
	}

	// Stacked: whiteouts, the opaque directory and replaced files.
	mnt := t.TempDir()
	lower := slices.Clone(got.Layers)
	slices.Reverse(lower)
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	for p, want := range map[string]string{
		"etc/keep": "keep", "data/new": "new", "bin/tool": "#!/bin/sh\necho v2\n", "bin/tool2": "#!/bin/sh\n",
		"opt/small": "small", "data/zbig": randomText(2, 1<<20),
	} {
		if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
			t.Errorf("merged %s: %.32q, %v; want %.32q", p, b, err, want)
		}
	}
	for _, p := range []string{"etc/gone", "data/old", "data/big", "data/fifo", "opt/blob"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("merged %s should be hidden: %v", p, err)
		}
	}
	for p, want := range map[string]fs.FileMode{"bin/tool": 0o700, "bin/suid": 0o755, "etc/secret": 0o600} {
		if fi, err := os.Lstat(filepath.Join(mnt, p)); err != nil || fi.Mode() != want {
			t.Errorf("merged %s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptBlobFailsThePull serves wrong bytes for one layer of three and
// checks that the pull fails naming that layer's digest, with nothing of
// the image left in the cache, and that a pull from a healed registry
// then succeeds.
func TestCorruptBlobFailsThePull(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fault changes the blob's bytes p found at offset off (size:
		// the blob's length).
		fault func(off, size int64, p []byte) []byte
		want  string
	}{
		// The gzip header's time stamp: the content unpacks completely
		// and correctly; only the digest, known at the end, is wrong.
		{"content intact, digest wrong", func(off, size int64, p []byte) []byte {
			if off == 0 {
				p[4] ^= 0xff
			}
			return p
		}, "the registry sent"},
		{"byte flipped mid-stream", func(off, size int64, p []byte) []byte {
			if mid := size / 2; off <= mid && mid < off+int64(len(p)) {
				p[mid-off] ^= 0xff
			}
			return p
		}, "the registry sent"},
		{"last byte flipped", func(off, size int64, p []byte) []byte {
			if off+int64(len(p)) == size {
				p[len(p)-1] ^= 0xff
			}
			return p
		}, "the registry sent"},
		{"cut short", func(off, size int64, p []byte) []byte {
			if cut := size * 2 / 3; off+int64(len(p)) > cut {
				return p[:max(0, cut-off)]
			}
			return p
		}, "download stopped after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newTestRegistry(t, nil)
			img := buildImage(t, v1.Config{},
				layerOfTar(t, compression.GZip, reg("a", randomText(4, 256<<10))),
				layerOfTar(t, compression.GZip, dir("d/"), reg("d/b", randomText(5, 512<<10)), reg("d/c", "c")),
				layerOfTar(t, compression.GZip, reg("e", randomText(6, 256<<10))),
			)
			ref := rg.host + "/team/app:v1"
			push(t, ref, img)
			ls, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			bad := ls[1]
			d, _ := bad.Digest()
			size, _ := bad.Size()
			rg.fault = func(digest string, off int64, p []byte) []byte {
				if digest != d.String() {
					return p
				}
				return tc.fault(off, size, p)
			}
			rg.throttle(8 << 20)

			s := openStore(t, t.TempDir())
			_, err = s.Pull(context.Background(), ref, PullOptions{})
			if err == nil {
				t.Fatal("pull of a corrupt blob succeeded")
			}
			t.Logf("pull: %v", err)
			if !strings.Contains(err.Error(), "layer blob "+d.String()+": "+tc.want) {
				t.Errorf("error %q does not say %q of layer blob %s", err, tc.want, d)
			}
			for _, dir := range []string{"layers/sha256", "blobs/sha256", "images", "tmp"} {
				if e, _ := os.ReadDir(filepath.Join(s.root, dir)); len(e) != 0 {
					t.Errorf("%s not empty after the failed pull: %v", dir, e)
				}
			}

			rg.fault = nil
			got, err := s.Pull(context.Background(), ref, PullOptions{})
			if err != nil {
				t.Fatalf("pull from the healed registry: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(got.Layers[1], "d/c")); err != nil || string(b) != "c" {
				t.Errorf("layer 1 d/c = %q, %v", b, err)
			}
		})
	}
}

// TestPullFetchesLayersConcurrently holds every layer's blob GET at the
// registry until a second one is in flight: a pull that fetched layers one
// after another would have only one in flight (and be let through after
// the wait runs out, for the check below to fail rather than hang).
func TestPullFetchesLayersConcurrently(t *testing.T) {
	rg := newTestRegistry(t, nil)
	img := fourLayerImage(t)
	ref := rg.host + "/team/app:v1"
	push(t, ref, img)
	layers := map[string]bool{}
	for _, d := range layerDigests(t, img) {
		layers[d] = true
	}
	both := make(chan struct{})
	var closed bool
	rg.started = func(digest string) {
		if !layers[digest] {
			return
		}
		rg.mu.Lock()
		if rg.inFlight.Load() >= 2 && !closed {
			close(both)
			closed = true
		}
		rg.mu.Unlock()
		select {
		case <-both:
		case <-time.After(10 * time.Second):
		}
	}

	s := openStore(t, t.TempDir())
	if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := rg.maxInFlight.Load(); n < 2 {
		t.Fatalf("at most %d blob GET was in flight at once; the layers were fetched one after another", n)
	}
	t.Logf("at most %d blob GETs in flight at once (Config.Concurrency %d)", rg.maxInFlight.Load(), s.concurrency)
}
