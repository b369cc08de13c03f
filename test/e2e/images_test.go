package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// busyboxApplets are linked to /bin/busybox in test images.
var busyboxApplets = []string{"sh", "echo", "sleep", "cat", "env", "pwd", "yes", "true", "false", "head", "tail",
	"dd", "id", "nc", "wget", "ls", "ps", "hostname", "ip", "ifconfig", "grep", "printf", "seq", "test", "[",
	"uname", "mkdir", "httpd", "stty", "tty", "nslookup"}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func layerFrom(t testing.TB, entries []tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if len(e.body) > 0 {
			tw.Write(e.body)
		}
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// busyboxLayer is a root file system with Debian's busybox-static.
func busyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required (Debian package busybox-static; scripts/setup installs it): %v", err)
	}
	entries := []tarEntry{
		{hdr: tar.Header{Name: "bin/", Typeflag: tar.TypeDir}},
		{hdr: tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg}, body: bb},
		{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir}},
		{hdr: tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{hdr: tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		{hdr: tar.Header{Name: "root/", Typeflag: tar.TypeDir, Mode: 0o700}},
	}
	for _, a := range busyboxApplets {
		entries = append(entries, tarEntry{hdr: tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox"}})
	}
	return layerFrom(t, entries)
}

// testRegistry is an in-process OCI registry on loopback.
type testRegistry struct {
	t    testing.TB
	host string
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	return newRegistryAt(t, "127.0.0.1", nil)
}

// newRegistryAt is an in-process registry listening on addr (e.g. a fleet's
// bridge, for hosts in namespaces of their own; they need
// --insecure-registry), its handler wrapped by wrap if not nil.
func newRegistryAt(t testing.TB, addr string, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &testRegistry{t: t, host: strings.TrimPrefix(srv.URL, "http://")}
}

// push stores an image made of layers under repo:tag and returns its
// reference.
func (r *testRegistry) push(repoTag string, cmd []string, layers ...v1.Layer) string {
	r.t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		r.t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		r.t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = cmd
	cf.Config.Env = []string{"PATH=/bin", "FROM_IMAGE=yes"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		r.t.Fatal(err)
	}
	ref := r.host + "/" + repoTag
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(parsed, img); err != nil {
		r.t.Fatal(err)
	}
	return ref
}

func tarHeader(name string, mode int64) tar.Header {
	return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}
}

func symlinkHeader(name, target string) tar.Header {
	return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
}
