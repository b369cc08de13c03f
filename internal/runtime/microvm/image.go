package microvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/runtime/toolkit"
)

// imageKey names a root image by the image's layer list.
func imageKey(layers []string) string {
	h := sha256.Sum256([]byte(strings.Join(layers, "\x00")))
	return hex.EncodeToString(h[:12])
}

// rootImage returns the read-only root disk of an image: its layers
// flattened into one erofs file system, cached in <StateDir>/cache/images
// by the layer list. The layers are merged by the kernel: a read-only
// overlay mount of all of them (the layer dirs carry overlayfs whiteouts,
// 0/0 character devices and trusted.overlay.opaque, as the image cache
// unpacks them), from which mkfs.erofs reads the merged tree. One layer is
// read as it is.
func (r *Runtime) rootImage(ctx context.Context, layers []string) (string, error) {
	if len(layers) == 0 {
		return "", fmt.Errorf("no image layers")
	}
	key := imageKey(layers)
	dir := filepath.Join(r.cfg.StateDir, "cache", "images")
	img := filepath.Join(dir, key+".erofs")
	r.imgMu.Lock()
	defer r.imgMu.Unlock()
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	src := layers[0]
	if len(layers) > 1 {
		mnt, err := os.MkdirTemp(dir, "merge-")
		if err != nil {
			return "", err
		}
		defer os.Remove(mnt)
		lower := make([]string, len(layers))
		for i, l := range layers {
			lower[len(layers)-1-i] = l // overlayfs lists the top layer first
		}
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
			return "", fmt.Errorf("merge layers: %w", err)
		}
		defer unix.Unmount(mnt, unix.MNT_DETACH)
		src = mnt
	}
	tmp := img + ".tmp"
	os.Remove(tmp)
	if out, err := exec.CommandContext(ctx, r.mkfsErofs, "--quiet", "-T0", tmp, src).CombinedOutput(); err != nil {
		// Older mkfs.erofs lack some options: try the plain form.
		if out2, err2 := exec.CommandContext(ctx, r.mkfsErofs, tmp, src).CombinedOutput(); err2 != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("mkfs.erofs: %w: %s %s", err2, bytes.TrimSpace(out), bytes.TrimSpace(out2))
		}
	}
	return img, os.Rename(tmp, img)
}

// writableDisk makes the sandbox's writable disk: a sparse file of sizeGiB
// formatted ext4 on the host (no journal, lazy inode tables: ≈20 ms), where
// the guest keeps each container's upper and work directories.
func writableDisk(ctx context.Context, path string, sizeGiB int) error {
	return toolkit.MakeExt4Image(ctx, path, sizeGiB)
}

// initramfs returns the initramfs the VMs boot: the guest binary as /init
// and the kernel modules with their load order in /lib/modules, as an
// uncompressed newc cpio archive cached in <StateDir>/cache by a hash of
// its contents.
func (r *Runtime) initramfs() (string, error) {
	if r.cfg.InitramfsPath != "" {
		return r.cfg.InitramfsPath, nil
	}
	type file struct {
		name string
		data []byte
	}
	bin, err := os.ReadFile(r.cfg.GuestBinary)
	if err != nil {
		return "", err
	}
	files := []file{{"init", bin}}
	order, err := os.ReadFile(filepath.Join(r.cfg.ModulesDir, "modules.order"))
	if err != nil {
		return "", fmt.Errorf("kernel modules: %w", err)
	}
	files = append(files, file{"lib/modules/modules.order", order})
	for _, m := range strings.Fields(string(order)) {
		data, err := os.ReadFile(filepath.Join(r.cfg.ModulesDir, m+".ko"))
		if err != nil {
			return "", fmt.Errorf("kernel modules: %w", err)
		}
		files = append(files, file{"lib/modules/" + m + ".ko", data})
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %d\n", f.name, len(f.data))
		h.Write(f.data)
	}
	dir := filepath.Join(r.cfg.StateDir, "cache")
	path := filepath.Join(dir, "initramfs-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	w := cpioWriter{w: &buf}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "lib", "lib/modules"} {
		w.entry(d, unix.S_IFDIR|0o755, 0, 0, nil)
	}
	w.entry("dev/console", unix.S_IFCHR|0o600, 5, 1, nil)
	for _, f := range files {
		mode := uint32(0o644)
		if f.name == "init" {
			mode = 0o755
		}
		w.entry(f.name, unix.S_IFREG|mode, 0, 0, f.data)
	}
	w.entry("TRAILER!!!", 0, 0, 0, nil)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// cpioWriter writes the newc ("070701") format the kernel unpacks.
type cpioWriter struct {
	w   io.Writer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, rmajor, rminor int, data []byte) {
	c.ino++
	nlink := 1
	if mode&unix.S_IFMT == unix.S_IFDIR {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.w.Write([]byte(hdr))
	c.w.Write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.w.Write(data)
	c.pad(len(data))
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.w.Write(make([]byte, 4-r))
	}
}
