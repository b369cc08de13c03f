package toolkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStopExt4PoolsBeforeRemoval: a launch starts refilling the pool in
// the background; once StopExt4Pools has returned, nothing refills it any
// more and the state directory can be removed. (Before, an agent test
// failed under load with "TempDir RemoveAll cleanup: unlinkat
// .../runc/.ext4-pool: directory not empty": a refill was still writing.)
func TestStopExt4PoolsBeforeRemoval(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (e2fsprogs)")
	}
	state, err := os.MkdirTemp("", "vessel-pool-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	sandbox := filepath.Join(state, "sb")
	if err := os.Mkdir(sandbox, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := takeExt4Image(context.Background(), filepath.Join(sandbox, "rw.img"), 1); err != nil {
		t.Fatal(err)
	}
	pool := filepath.Join(state, ".ext4-pool")
	StopExt4Pools(state)
	imagePool.mu.Lock()
	var busy []string
	for key := range imagePool.filling {
		if strings.HasPrefix(key, pool+"/") {
			busy = append(busy, key)
		}
	}
	_, running := imagePool.running[pool]
	imagePool.mu.Unlock()
	if len(busy) > 0 || running {
		t.Fatalf("after StopExt4Pools the pool is still refilled: %v (running %v)", busy, running)
	}
	if err := os.RemoveAll(state); err != nil {
		t.Fatalf("removing the state directory: %v", err)
	}
	// A later launch there refills the pool again.
	if err := os.MkdirAll(sandbox, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := takeExt4Image(context.Background(), filepath.Join(sandbox, "rw2.img"), 1); err != nil {
		t.Fatal(err)
	}
	imagePool.mu.Lock()
	_, running = imagePool.running[pool]
	imagePool.mu.Unlock()
	if !running {
		t.Errorf("no refill after a launch that followed StopExt4Pools")
	}
	StopExt4Pools(state)
}
