package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

var testTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// ent is one tar entry for tests.
type ent struct {
	name     string
	typ      byte
	body     string
	link     string
	mode     int64
	uid, gid int
	mtime    time.Time
}

func reg(name, body string) ent       { return ent{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) ent             { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, target string) ent { return ent{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target}
}

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Linkname: e.link,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  e.mtime,
			Format:   tar.FormatPAX,
		}
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpackBytes(t testing.TB, b []byte, dest string) error {
	t.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	return unpack(context.Background(), bytes.NewReader(b), dest, unpackOptions{layer: "sha256:test", limit: 1 << 30})
}

// snapshot records every path below base except skip (and its contents),
// with type, mode, size and, for non-directories, mtime.
func snapshot(t testing.TB, base, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if !fi.IsDir() {
			v += fmt.Sprintf(" %v %d", fi.ModTime(), fi.Size())
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type hostFile struct {
	body  []byte
	mtime time.Time
}

func readHost(t testing.TB, p string) hostFile {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		return hostFile{}
	}
	b, _ := os.ReadFile(p)
	return hostFile{b, fi.ModTime()}
}

func TestUnpackRefusesHostileEntries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ents      []ent
		wantEntry string
	}{
		{"dotdot", []ent{reg("../../etc/x", "pwn")}, "../../etc/x"},
		{"absolute dotdot", []ent{reg("/../../x", "pwn")}, "/../../x"},
		{"inner dotdot", []ent{dir("a"), reg("a/../../../x", "pwn")}, "a/../../../x"},
		{"symlink escape then write", []ent{symlink("evil", "../../.."), reg("evil/x", "pwn")}, "evil"},
		{"nested symlink escape", []ent{dir("a/b"), symlink("a/b/up", "../../../etc")}, "a/b/up"},
		{"absolute symlink then write through it", []ent{symlink("abs", "/etc"), reg("abs/passwd", "root::0:0::/:/bin/sh\n")}, "abs/passwd"},
		{"inner symlink then write through it", []ent{dir("sub"), symlink("in", "sub"), reg("in/x", "x")}, "in/x"},
		{"symlink then dir through it", []ent{symlink("abs", "/etc"), dir("abs/cron.d")}, "abs/cron.d"},
		{"hardlink escape", []ent{hardlink("h", "../../etc/shadow")}, "h"},
		{"hardlink to host path", []ent{hardlink("h", "/etc/passwd")}, "h"},
		{"hardlink to later entry", []ent{hardlink("h", "f"), reg("f", "x")}, "h"},
		{"whiteout of dot", []ent{reg("a/.wh..", "")}, "a/.wh.."},
		{"opaque through symlink", []ent{symlink("abs", "/etc"), reg("abs/.wh..wh..opq", "")}, "abs/.wh..wh..opq"},
		{"whiteout through symlink", []ent{symlink("abs", "/etc"), reg("abs/.wh.passwd", "")}, "abs/.wh.passwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "a", "layer")
			if err := os.MkdirAll(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, base, dest)
			passwd := readHost(t, "/etc/passwd")
			shadow := readHost(t, "/etc/shadow")

			err := unpackBytes(t, mkTar(t, tc.ents...), dest)
			var ue *UnsafeLayerError
			if !errors.As(err, &ue) {
				t.Fatalf("unpack: got %v, want *UnsafeLayerError", err)
			}
			if ue.Entry != tc.wantEntry || ue.Layer != "sha256:test" {
				t.Errorf("error names layer %q entry %q, want sha256:test %q", ue.Layer, ue.Entry, tc.wantEntry)
			}
			if !strings.Contains(err.Error(), `layer sha256:test: entry "`+tc.wantEntry+`"`) {
				t.Errorf("message %q does not name the entry", err)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("unsafe layer error is not ErrInvalidArgument")
			}
			after := snapshot(t, base, dest)
			for p, v := range after {
				if before[p] != v {
					t.Errorf("outside the layer: %s changed or appeared (%s)", p, v)
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("outside the layer: %s disappeared", p)
				}
			}
			for p, hf := range map[string]hostFile{"/etc/passwd": passwd, "/etc/shadow": shadow} {
				now := readHost(t, p)
				if !bytes.Equal(now.body, hf.body) || !now.mtime.Equal(hf.mtime) {
					t.Errorf("host %s changed", p)
				}
			}
			if _, err := os.Stat("/x"); err == nil {
				t.Errorf("/x exists on the host")
			}
		})
	}
}

func TestUnpackReplacesPlantedSymlink(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "layer")
	passwd := readHost(t, "/etc/passwd")
	// An absolute symlink is allowed (it means the container's /etc/passwd),
	// but a later entry of the same name must replace the link, not write
	// through it.
	err := unpackBytes(t, mkTar(t,
		reg("f", "one"),
		symlink("f", "/etc/passwd"),
		reg("f", "pwned"),
		reg("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		symlink("d", "/etc"),
		dir("d"),
		reg("d/inside", "ok"),
	), dest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "f")); err != nil || string(b) != "pwned" {
		t.Errorf("f = %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "f")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("f is not a regular file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("absolute name not extracted inside the root: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "d")); err != nil || !fi.IsDir() {
		t.Errorf("d should have replaced the symlink with a directory: %v %v", fi, err)
	}
	if now := readHost(t, "/etc/passwd"); !bytes.Equal(now.body, passwd.body) || !now.mtime.Equal(passwd.mtime) {
		t.Fatal("host /etc/passwd changed")
	}
	if _, err := os.Stat("/etc/inside"); err == nil {
		t.Fatal("/etc/inside created on the host")
	}
}

func TestUnpackMetadataAndNeutralisation(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "layer")
	dirTime := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	err := unpackBytes(t, mkTar(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o750, uid: 7, gid: 8, mtime: dirTime},
		ent{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\necho hi\n", mode: 0o755, uid: 1000, gid: 1001},
		ent{name: "bin/su", typ: tar.TypeReg, body: "suid", mode: 0o4755},
		ent{name: "bin/sg", typ: tar.TypeReg, body: "sgid", mode: 0o2711},
		ent{name: "shared/", typ: tar.TypeDir, mode: 0o2775},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		symlink("bin/sh", "tool"),
		ent{name: "bin/link", typ: tar.TypeSymlink, link: "/bin/tool", uid: 5, gid: 6},
		hardlink("bin/tool2", "/bin/tool"),
		ent{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660},
		reg("etc/.wh.gone", ""),
		reg("var/.wh..wh..opq", ""),
		reg(".wh..wh.plnk/123", ""),
	), dest)
	if err != nil {
		t.Fatal(err)
	}
	st := func(p string) *unix.Stat_t {
		t.Helper()
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, p), &s); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		return &s
	}
	if s := st("bin/tool"); s.Mode&0o7777 != 0o755 || s.Uid != 1000 || s.Gid != 1001 || s.Nlink != 2 {
		t.Errorf("bin/tool: mode %o uid %d gid %d nlink %d", s.Mode&0o7777, s.Uid, s.Gid, s.Nlink)
	}
	if st("bin/tool").Ino != st("bin/tool2").Ino {
		t.Error("bin/tool2 is not a hard link of bin/tool")
	}
	if m := st("bin/tool").Mtim; time.Unix(m.Unix()).UTC() != testTime {
		t.Errorf("bin/tool mtime %v, want %v", time.Unix(m.Unix()).UTC(), testTime)
	}
	if m := st("bin/su").Mode & 0o7777; m != 0o755 {
		t.Errorf("setuid not cleared: %o", m)
	}
	if m := st("bin/sg").Mode & 0o7777; m != 0o711 {
		t.Errorf("setgid not cleared: %o", m)
	}
	if m := st("shared").Mode & 0o7777; m != 0o2775 {
		t.Errorf("setgid directory: %o, want 2775", m)
	}
	if m := st("tmp").Mode & 0o7777; m != 0o1777 {
		t.Errorf("sticky directory: %o, want 1777", m)
	}
	if s := st("bin"); s.Mode&0o7777 != 0o750 || s.Uid != 7 || s.Gid != 8 || time.Unix(s.Mtim.Unix()).UTC() != dirTime {
		t.Errorf("bin: mode %o uid %d gid %d mtime %v", s.Mode&0o7777, s.Uid, s.Gid, time.Unix(s.Mtim.Unix()).UTC())
	}
	if l, _ := os.Readlink(filepath.Join(dest, "bin/sh")); l != "tool" {
		t.Errorf("bin/sh -> %q", l)
	}
	if s := st("bin/link"); s.Uid != 5 || s.Gid != 6 {
		t.Errorf("symlink owner %d:%d, want 5:6 (lchown)", s.Uid, s.Gid)
	}
	if s := st("run/fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO || s.Mode&0o777 != 0o600 {
		t.Errorf("run/fifo: mode %o", s.Mode)
	}
	for _, p := range []string{"dev/null", "dev/sda"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("device %s was created (%v)", p, err)
		}
	}
	if s := st("etc/gone"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 || s.Uid != 0 || s.Gid != 0 {
		t.Errorf("etc/gone is not a 0:0 whiteout: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(dest, "etc/.wh.gone")); err == nil {
		t.Error(".wh. file left in place")
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(dest, "var"), opaqueXattr, buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Errorf("var: %s = %q, %v", opaqueXattr, buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "var/.wh..wh..opq")); err == nil {
		t.Error("opaque marker file left in place")
	}
}

func TestUnpackSizeLimit(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "layer")
	os.MkdirAll(dest, 0o755)
	b := mkTar(t, reg("big", strings.Repeat("x", 8192)))
	err := unpack(context.Background(), bytes.NewReader(b), dest, unpackOptions{layer: "sha256:bomb", limit: 4096})
	if !errors.Is(err, errdefs.ErrLimitExceeded) {
		t.Fatalf("got %v, want ErrLimitExceeded", err)
	}
}

func TestUnpackPlainRefusesLinks(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "layout")
	os.MkdirAll(dest, 0o755)
	b := mkTar(t, reg("oci-layout", "{}"), symlink("blobs", "/"))
	err := unpack(context.Background(), bytes.NewReader(b), dest, unpackOptions{layer: "x.tar", limit: 1 << 20, plain: true})
	var ue *UnsafeLayerError
	if !errors.As(err, &ue) || ue.Entry != "blobs" {
		t.Fatalf("got %v, want UnsafeLayerError for blobs", err)
	}
}
