package microvm

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/testenv"
)

// TestRootImageAppliesWhiteouts builds a root image from two layers whose
// upper one carries overlayfs whiteouts (as the image cache unpacks them: a
// 0/0 character device for a removed file, trusted.overlay.opaque on a
// replaced directory) and checks the merged tree in the erofs image.
func TestRootImageAppliesWhiteouts(t *testing.T) {
	testenv.SkipShort(t, "an overlay mount and mkfs.erofs")
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mount, device nodes)")
	}
	if _, err := os.Stat("/usr/bin/mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs not installed")
	}
	base := t.TempDir()
	lower, upper := filepath.Join(base, "l0"), filepath.Join(base, "l1")
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(lower, "keep"), "keep")
	write(filepath.Join(lower, "gone"), "gone")
	write(filepath.Join(lower, "dir", "old"), "old")
	write(filepath.Join(upper, "dir", "new"), "new")
	write(filepath.Join(upper, "added"), "added")
	if err := unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR, 0); err != nil { // a whiteout: a 0/0 character device
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "dir"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{cfg: Config{StateDir: t.TempDir()}, mkfsErofs: "/usr/bin/mkfs.erofs"}
	img, err := r.rootImage(context.Background(), []string{lower, upper})
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(t.TempDir(), "m")
	os.Mkdir(mnt, 0o755)
	var files []string
	out := mnt
	if err := unix.Mount(img, mnt, "erofs", unix.MS_RDONLY, ""); err == nil {
		defer unix.Unmount(mnt, 0)
	} else {
		t.Skipf("cannot read the erofs image on this host: %v", err)
	}
	filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(out, p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	if got, want := strings.Join(files, " "), "added dir/new keep"; got != want {
		t.Errorf("image holds %q, want %q", got, want)
	}
	again, err := r.rootImage(context.Background(), []string{lower, upper})
	if err != nil || again != img {
		t.Errorf("second build: %s, %v; want the cached %s", again, err, img)
	}
}
