package toolkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
)

// setupStorage gives the sandbox its writable space at <dir>/rw: a sparse
// file of sizeGiB formatted ext4 and loop-mounted, so that the containers'
// writes are bounded. Where that fails (no loop devices, no mkfs.ext4), it
// falls back to a plain directory with no size limit and logs a warning.
// It returns "loop" or "dir".
func setupStorage(ctx context.Context, log *slog.Logger, dir string, sizeGiB int) (string, error) {
	rw, img := filepath.Join(dir, "rw"), filepath.Join(dir, "rw.img")
	if err := os.Mkdir(rw, 0o700); err != nil {
		return "", err
	}
	err := func() error {
		if err := takeExt4Image(ctx, img, sizeGiB); err != nil {
			return err
		}
		return fsutil.MountLoop(img, rw, 0)
	}()
	if err != nil {
		log.Warn("ephemeral storage is a plain directory without a size limit", "dir", rw, "err", err)
		os.Remove(img)
		return "dir", nil
	}
	return "loop", nil
}

// MakeExt4Image creates path (which must not exist) as a sparse file of
// sizeGiB formatted ext4 without a journal, as setupStorage does before it
// mounts it: taken from the pool of formatted images beside path's
// sandbox directory when one is ready.
func MakeExt4Image(ctx context.Context, path string, sizeGiB int) error {
	return takeExt4Image(ctx, path, sizeGiB)
}

// makeExt4Image creates path (which must not exist) as a sparse file of
// sizeGiB and formats it ext4: no journal (the data does not outlive the
// sandbox), lazy inode-table init: about 20 ms for 20 GiB.
func makeExt4Image(ctx context.Context, path string, sizeGiB int) error {
	return fsutil.MakeExt4Image(ctx, path, sizeGiB)
}

// poolDepth is how many formatted images of each size are kept ready.
const poolDepth = 4

// ext4Pool keeps formatted ext4 images ready beside the sandboxes, so that
// a launch takes one with a rename instead of running mkfs (about 20–30 ms
// of the launch path). Images are formatted under a temporary name and
// renamed into the pool once complete, so the pool never holds a partial
// one, and it outlives the process.
type ext4Pool struct {
	mu      sync.Mutex
	scanned map[string]bool             // pool directories read from disk
	ready   map[string]map[int][]string // dir → size → images
	filling map[string]bool             // dir/size being refilled
	stopped map[string]bool             // dirs not refilled (StopExt4Pools)
	running map[string]*sync.WaitGroup  // dir → its refills in flight
}

var imagePool = &ext4Pool{scanned: map[string]bool{}, ready: map[string]map[int][]string{}, filling: map[string]bool{},
	stopped: map[string]bool{}, running: map[string]*sync.WaitGroup{}}

// StopExt4Pools stops refilling the image pools below dir and waits for
// the images being formatted there. A test calls it before its directory
// is removed: a refill still writing into it made the removal fail
// ("unlinkat .../.ext4-pool: directory not empty"). A pool is refilled
// again at its next launch.
func StopExt4Pools(dir string) {
	dir = filepath.Clean(dir)
	below := func(d string) bool { return d == dir || strings.HasPrefix(d, dir+string(filepath.Separator)) }
	p := imagePool
	p.mu.Lock()
	var wgs []*sync.WaitGroup
	for d, wg := range p.running {
		if below(d) {
			p.stopped[d] = true
			wgs = append(wgs, wg)
		}
	}
	p.mu.Unlock()
	for _, wg := range wgs {
		wg.Wait()
	}
	p.mu.Lock()
	for d := range p.stopped {
		if below(d) {
			delete(p.stopped, d)
			delete(p.running, d)
		}
	}
	p.mu.Unlock()
}

// takeExt4Image puts a formatted image of sizeGiB at path: one from the
// pool of path's state directory when there is one, else a new one. The
// pool is refilled in the background.
func takeExt4Image(ctx context.Context, path string, sizeGiB int) error {
	dir := filepath.Join(filepath.Dir(filepath.Dir(path)), ".ext4-pool")
	for {
		img := imagePool.take(dir, sizeGiB)
		if img == "" {
			break
		}
		if err := os.Rename(img, path); err == nil {
			imagePool.refill(dir, sizeGiB)
			return nil
		}
	}
	imagePool.refill(dir, sizeGiB)
	return makeExt4Image(ctx, path, sizeGiB)
}

func (p *ext4Pool) take(dir string, sizeGiB int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.scanned[dir] {
		p.scanned[dir] = true
		p.ready[dir] = map[int][]string{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			var size int
			if _, err := fmt.Sscanf(e.Name(), "%dg-", &size); err == nil && strings.HasSuffix(e.Name(), ".img") {
				p.ready[dir][size] = append(p.ready[dir][size], filepath.Join(dir, e.Name()))
			} else {
				os.Remove(filepath.Join(dir, e.Name())) // a partial image of a crashed refill
			}
		}
	}
	imgs := p.ready[dir][sizeGiB]
	if len(imgs) == 0 {
		return ""
	}
	p.ready[dir][sizeGiB] = imgs[1:]
	return imgs[0]
}

// refill formats images until the pool of that size is full, one at a
// time, in the background.
func (p *ext4Pool) refill(dir string, sizeGiB int) {
	key := fmt.Sprintf("%s/%d", dir, sizeGiB)
	p.mu.Lock()
	if p.filling[key] || p.stopped[dir] {
		p.mu.Unlock()
		return
	}
	p.filling[key] = true
	wg := p.running[dir]
	if wg == nil {
		wg = &sync.WaitGroup{}
		p.running[dir] = wg
	}
	wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			delete(p.filling, key)
			p.mu.Unlock()
			wg.Done()
		}()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return
		}
		for {
			p.mu.Lock()
			full := len(p.ready[dir][sizeGiB]) >= poolDepth || p.stopped[dir]
			p.mu.Unlock()
			if full {
				return
			}
			tmp := filepath.Join(dir, fmt.Sprintf(".%dg-%d.tmp", sizeGiB, time.Now().UnixNano()))
			if err := makeExt4Image(context.Background(), tmp, sizeGiB); err != nil {
				os.Remove(tmp)
				return
			}
			final := filepath.Join(dir, fmt.Sprintf("%dg-%d.img", sizeGiB, time.Now().UnixNano()))
			if err := os.Rename(tmp, final); err != nil {
				os.Remove(tmp)
				return
			}
			p.mu.Lock()
			if p.ready[dir] == nil {
				p.ready[dir] = map[int][]string{}
			}
			p.ready[dir][sizeGiB] = append(p.ready[dir][sizeGiB], final)
			p.mu.Unlock()
		}
	}()
}

// teardownStorage unmounts the sandbox's loop file system and makes sure its
// loop device is gone.
func teardownStorage(dir string) error {
	rw, img := filepath.Join(dir, "rw"), filepath.Join(dir, "rw.img")
	if err := Unmount(rw); err != nil {
		return err
	}
	// Autoclear detaches the device once unmounted, possibly a moment later.
	for deadline := time.Now().Add(2 * time.Second); ; {
		devs := fsutil.LoopDevicesOf(img)
		if len(devs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, d := range devs {
				if fd, err := unix.Open(d, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
					unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
					unix.Close(fd)
				}
			}
			if devs := fsutil.LoopDevicesOf(img); len(devs) > 0 {
				return fmt.Errorf("loop devices %s still back %s", strings.Join(devs, ", "), img)
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountOverlay mounts layers (bottom first) read-only under a writable
// upper directory (upper, with its work directory work) at rootfs.
func mountOverlay(rootfs string, layers []string, upper, work string) error {
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- { // top first
		lower = append(lower, layers[i])
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(opts) >= os.Getpagesize() {
		return errdefs.InvalidArgument("too many layers (%d) for one overlay mount", len(layers))
	}
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay mount: %w", err)
	}
	return nil
}

// Unmount unmounts path if it is a mount point, detaching it lazily when it
// stays busy.
func Unmount(path string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(path, 0)
		switch {
		case err == nil:
			continue // stacked mounts: unmount until none is left
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more)
		case errors.Is(err, unix.EBUSY) && i < 50:
			time.Sleep(20 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount %s: %w", path, err)
			}
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
}

// MountsUnder lists the mount points at or below dir in this process's
// mount namespace.
func MountsUnder(dir string) []string { return fsutil.MountsUnder(dir) }
