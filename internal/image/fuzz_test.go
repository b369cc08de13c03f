package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzTar builds a tar from a line-per-entry description, so that the
// fuzzer's mutations give well-formed archives (archive/tar checks each
// header's checksum, which random byte flips break). Each line is
// "T|name|link|mode|body": T the typeflag byte, mode octal.
func fuzzTar(spec string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for line := range strings.SplitSeq(spec, "\n") {
		f := strings.SplitN(line, "|", 5)
		if len(f) < 2 || len(f[0]) != 1 {
			continue
		}
		for len(f) < 5 {
			f = append(f, "")
		}
		mode, err := strconv.ParseInt(f[3], 8, 64)
		if err != nil {
			mode = 0o644
		}
		h := &tar.Header{Typeflag: f[0][0], Name: f[1], Linkname: f[2], Mode: mode, ModTime: testTime, Format: tar.FormatPAX}
		body := []byte(f[4])
		switch h.Typeflag {
		case tar.TypeReg, 0: // 0: the legacy regular-file flag
			h.Size = int64(len(body))
		case tar.TypeChar, tar.TypeBlock:
			h.Devmajor, h.Devminor = 1, 3
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Size > 0 {
			tw.Write(body)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzUnpack extracts fuzzed layers, given either as raw bytes (a tar or a
// gzip-compressed tar, as registries serve them) or as an entry list that
// fuzzTar turns into a well-formed tar, into a directory with a sibling the
// layer must never reach. Properties, whether extraction succeeds or not:
//   - nothing outside the target directory is created, changed or linked to;
//   - no device node is created (the only exception is the 0:0 character
//     device that is overlayfs's form of an OCI whiteout);
//   - no file is setuid or setgid, no directory setuid;
//   - no symlink in the tree points outside it, resolved from where it is;
//   - an OCI layout archive (plain) yields only directories and files;
//   - nothing panics.
//
// It must run as root (chown, mknod for whiteouts), as the package's other
// unpack tests do.
func FuzzUnpack(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("extracting layers chowns and makes whiteout devices: run as root")
	}
	// Real layers' shapes.
	f.Add(false, false, []byte(nil), "5|etc||0755|\n0|etc/hostname||0644|vessel\n2|bin/sh|busybox|0777|\n0|bin/busybox||04755|ELF\n1|bin/ls|bin/busybox|0755|")
	f.Add(false, false, []byte(nil), "5|usr/||0755|\n5|usr/lib||0755|\n0|usr/lib/.wh.old||0644|\n0|usr/lib/.wh..wh..opq||0644|\n0|var/.wh.cache||0|")
	f.Add(false, true, []byte(nil), "5|blobs||0755|\n5|blobs/sha256||0755|\n0|blobs/sha256/aa||0644|{}\n0|index.json||0644|{\"schemaVersion\":2}\n0|oci-layout||0644|{\"imageLayoutVersion\":\"1.0.0\"}")
	// Hostile ones.
	f.Add(false, false, []byte(nil), "0|../escape||0644|x")
	f.Add(false, false, []byte(nil), "2|link|../../outside|0777|\n0|link/secret||0644|x")
	f.Add(false, false, []byte(nil), "2|a|/|0777|\n0|a/etc/passwd||0644|root::0:0::/:/bin/sh")
	f.Add(false, false, []byte(nil), "3|dev/mem||0600|\n4|dev/sda||0600|\n6|fifo||0644|")
	f.Add(false, false, []byte(nil), "1|hard|/etc/passwd|0644|\n1|hard2|../outside/secret|0644|")
	f.Add(false, false, []byte(nil), "5|d||06755|\n0|d/f||06777|x")
	f.Add(false, false, []byte(nil), "0|a||0644|x\n5|a||0755|\n0|a||0644|y\n0|a/.wh.b||0644|")
	f.Add(false, true, []byte(nil), "2|l|x|0777|")
	// A raw tar and its gzip form.
	raw := fuzzTar("5|etc||0755|\n0|etc/os-release||0644|ID=vessel\n2|etc/mtab|/proc/mounts|0777|")
	f.Add(true, false, raw, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	f.Add(true, false, gz.Bytes(), "")

	f.Fuzz(func(t *testing.T, isRaw, plain bool, data []byte, spec string) {
		layer := data
		if !isRaw {
			layer = fuzzTar(spec)
		}
		var r io.Reader = bytes.NewReader(layer)
		if bytes.HasPrefix(layer, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return
			}
			r = zr
		}
		sandbox := t.TempDir()
		dest := filepath.Join(sandbox, "rootfs")
		outside := filepath.Join(sandbox, "outside")
		for _, d := range []string{dest, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		secret := filepath.Join(outside, "secret")
		if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}

		err := unpack(context.Background(), r, dest, unpackOptions{layer: "sha256:fuzz", limit: 1 << 20, maxEntries: 256, plain: plain})

		// The sandbox holds exactly rootfs, outside and outside/secret,
		// and the secret is as it was, with no other link to it.
		ents, _ := os.ReadDir(sandbox)
		if len(ents) != 2 {
			t.Fatalf("extraction (err %v) changed the target's parent: it holds %v", err, ents)
		}
		ents, _ = os.ReadDir(outside)
		if len(ents) != 1 || ents[0].Name() != "secret" {
			t.Fatalf("extraction (err %v) wrote outside the target: %v", err, ents)
		}
		var st unix.Stat_t
		if lerr := unix.Lstat(secret, &st); lerr != nil || st.Nlink != 1 || st.Mode != unix.S_IFREG|0o600 {
			t.Fatalf("extraction (err %v) touched a file outside the target: %+v, %v", err, st, lerr)
		}
		if b, _ := os.ReadFile(secret); string(b) != "secret" {
			t.Fatalf("extraction (err %v) changed a file outside the target to %q", err, b)
		}

		werr := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			rel, _ := filepath.Rel(dest, p)
			typ := st.Mode & unix.S_IFMT
			if plain && typ != unix.S_IFDIR && typ != unix.S_IFREG {
				t.Fatalf("OCI layout archive yielded %s of type %o", rel, typ)
			}
			switch typ {
			case unix.S_IFBLK:
				t.Fatalf("layer created block device %s", rel)
			case unix.S_IFCHR:
				if st.Rdev != 0 {
					t.Fatalf("layer created character device %s (rdev %#x); only 0:0 whiteouts may exist", rel, st.Rdev)
				}
			case unix.S_IFDIR:
				if st.Mode&unix.S_ISUID != 0 {
					t.Fatalf("directory %s is setuid (mode %o)", rel, st.Mode)
				}
			case unix.S_IFLNK:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				resolved := path.Clean(path.Join(path.Dir(filepath.ToSlash(rel)), target))
				if path.IsAbs(target) {
					resolved = path.Clean(target)[1:]
				}
				if resolved == ".." || strings.HasPrefix(resolved, "../") {
					t.Fatalf("symlink %s -> %q points outside the layer (err %v)", rel, target, err)
				}
			}
			if typ != unix.S_IFDIR && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
				t.Fatalf("%s has mode %o: setuid/setgid survived extraction", rel, st.Mode)
			}
			return nil
		})
		if werr != nil {
			t.Fatalf("walking the extracted tree: %v", werr)
		}
	})
}
