package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// volume makes a directory like a sandbox's volume: a sub-directory "x"
// with a file, a file "f", and symbolic links a sandbox could have made
// (to "/", to a directory outside, and a relative one that stays inside).
func volume(t *testing.T) (dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir, outside = filepath.Join(base, "vol"), filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(dir, "x", "y"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{"x/in": "inside", "f": "file", "../outside/secret": "host"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"root": "/", "out": outside, "rel": "x", "x/up": "../..", "x/y/deep": "/"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, outside
}

func TestOpenBeneath(t *testing.T) {
	dir, _ := volume(t)
	for _, c := range []struct {
		rel     string
		wantErr error // nil: opens
	}{
		{"x", nil},
		{"x/y", nil},
		{"f", nil},
		{".", nil},
		{"root", unix.ELOOP},
		{"out", unix.ELOOP},
		{"rel", unix.ELOOP}, // even a link that stays inside
		{"x/up", unix.ELOOP},
		{"x/y/deep", unix.ELOOP},
		{"root/etc", unix.ELOOP},
		{"x/up/outside", unix.ELOOP},
		{"missing", fs.ErrNotExist},
	} {
		f, err := OpenBeneath(dir, c.rel)
		if c.wantErr == nil {
			if err != nil {
				t.Errorf("OpenBeneath(%q): %v", c.rel, err)
				continue
			}
			f.Close()
			continue
		}
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, c.wantErr) {
			t.Errorf("OpenBeneath(%q) = %v, want %v", c.rel, err, c.wantErr)
		}
	}
	for _, rel := range []string{"", "/etc", "../outside", "x/../..", "x/"} {
		if f, err := OpenBeneath(dir, rel); err == nil {
			f.Close()
			t.Errorf("OpenBeneath(%q) accepted a path that is not relative and clean", rel)
		}
	}
	// A device node (or fifo, socket) is refused.
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenBeneath(dir, "fifo"); err == nil {
		f.Close()
		t.Error("OpenBeneath opened a fifo")
	}
}

func TestMkdirAllBeneath(t *testing.T) {
	dir, outside := volume(t)
	if err := MkdirAllBeneath(dir, "a/b/c", 0o777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "a", "b", "c"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSetgid == 0 {
		t.Fatalf("a/b/c: %v, %v; want a directory of mode 0777 with setgid", fi.Mode(), err)
	}
	if err := MkdirAllBeneath(dir, "x/y", 0o700); err != nil {
		t.Errorf("existing directories: %v", err)
	}
	for _, rel := range []string{"out/made", "root/tmp/made", "x/up/made", "f/made"} {
		if err := MkdirAllBeneath(dir, rel, 0o755); err == nil {
			t.Errorf("MkdirAllBeneath(%q) went through a link or a file", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "made")); err == nil {
		t.Error("a directory was made outside the volume")
	}
}

func TestBindBeneath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	dir, _ := volume(t)
	private := t.TempDir()
	dirTarget, fileTarget := filepath.Join(private, "d"), filepath.Join(private, "f")
	if err := BindBeneath(dir, "x", dirTarget); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unbind(dirTarget) })
	if err := BindBeneath(dir, "f", fileTarget); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unbind(fileTarget) })
	if data, err := os.ReadFile(filepath.Join(dirTarget, "in")); err != nil || string(data) != "inside" {
		t.Errorf("bound directory: %q, %v", data, err)
	}
	if data, err := os.ReadFile(fileTarget); err != nil || string(data) != "file" {
		t.Errorf("bound file: %q, %v", data, err)
	}
	// The bind holds what was opened: a swap afterwards (x renamed away,
	// a link to "/" in its place) does not change it.
	if err := os.Rename(filepath.Join(dir, "x"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirTarget, "etc")); err == nil {
		t.Error("the bind followed the swapped-in link")
	}
	// Binding the link now is refused, and nothing is mounted.
	swapped := filepath.Join(private, "swapped")
	if err := BindBeneath(dir, "x", swapped); !errors.Is(err, unix.ELOOP) {
		t.Errorf("BindBeneath of a link to / = %v, want ELOOP", err)
	}
	if slices.Contains(MountsUnder(private), swapped) {
		t.Error("a link was bound")
	}
	for _, target := range []string{dirTarget, fileTarget} {
		if err := Unbind(target); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after Unbind: %v", target, err)
		}
	}
	if left := MountsUnder(private); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if err := Unbind(filepath.Join(private, "never")); err != nil {
		t.Errorf("Unbind of a missing target: %v", err)
	}
}
