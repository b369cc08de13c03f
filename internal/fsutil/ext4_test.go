package fsutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// mountOptions returns the options of the mount at dir in /proc/mounts.
func mountOptions(dir string) (fstype, opts string, ok bool) {
	data, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && UnescapeMountPath(f[1]) == dir {
			fstype, opts, ok = f[2], f[3], true
		}
	}
	return fstype, opts, ok
}

// TestMountLoop: images mounted at once (each through its own free loop
// device, a race for the same free device retried) are ext4 with the
// flags asked for and noatime, writable, and their devices are gone once
// unmounted (autoclear).
func TestMountLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mounts need root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices on this host: %v", err)
	}
	root := t.TempDir()
	const n = 6
	imgs, dirs := make([]string, n), make([]string, n)
	for i := range n {
		imgs[i], dirs[i] = filepath.Join(root, fmt.Sprintf("img%d", i)), filepath.Join(root, fmt.Sprintf("mnt%d", i))
		if err := MakeExt4Image(context.Background(), imgs[i], 1); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dirs[i], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var flags uintptr
			if i%2 == 0 {
				flags = unix.MS_NOSUID | unix.MS_NODEV
			}
			errs[i] = MountLoop(imgs[i], dirs[i], flags)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, d := range dirs {
			unix.Unmount(d, unix.MNT_DETACH)
		}
	})
	devs := map[string]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("MountLoop %d: %v", i, errs[i])
		}
		fstype, opts, ok := mountOptions(dirs[i])
		if !ok || fstype != "ext4" {
			t.Fatalf("%s: mounted %v as %q, want ext4", dirs[i], ok, fstype)
		}
		set := map[string]bool{}
		for _, o := range strings.Split(opts, ",") {
			set[o] = true
		}
		if !set["noatime"] || set["nosuid"] != (i%2 == 0) || set["nodev"] != (i%2 == 0) {
			t.Errorf("%s: options %s; want noatime, and nosuid,nodev only when asked", dirs[i], opts)
		}
		if err := os.WriteFile(filepath.Join(dirs[i], "f"), []byte("x"), 0o600); err != nil {
			t.Errorf("write in %s: %v", dirs[i], err)
		}
		loops := LoopDevicesOf(imgs[i])
		if len(loops) != 1 {
			t.Fatalf("%s is backed by loop devices %v, want one", imgs[i], loops)
		}
		if other, dup := devs[loops[0]]; dup {
			t.Errorf("%s backs both %s and %s", loops[0], other, imgs[i])
		}
		devs[loops[0]] = imgs[i]
	}
	for i := range n {
		if err := unix.Unmount(dirs[i], 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if loops := LoopDevicesOf(imgs[i]); len(loops) != 0 {
			// Autoclear detaches a device right after its unmount, but
			// the kernel may finish a moment later.
			for try := 0; try < 200 && len(loops) > 0; try++ {
				unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
				loops = LoopDevicesOf(imgs[i])
			}
			if len(loops) != 0 {
				t.Errorf("%s still backs %v after its unmount", imgs[i], loops)
			}
		}
	}
}

// TestMountLoopNotExt4: an image that is not a file system is an error
// that names it, and leaves no loop device behind.
func TestMountLoopNotExt4(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mounts need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices on this host: %v", err)
	}
	img, dir := filepath.Join(t.TempDir(), "junk.img"), t.TempDir()
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	err := MountLoop(img, dir, 0)
	if err == nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatal("MountLoop of a zeroed file succeeded")
	}
	if !strings.Contains(err.Error(), img) {
		t.Errorf("error %q does not name the image", err)
	}
	if loops := LoopDevicesOf(img); len(loops) != 0 {
		t.Errorf("a failed mount left %v backing %s", loops, img)
	}
}
