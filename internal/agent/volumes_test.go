package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testenv"
	"vessel.dev/vessel/internal/testutil"
)

func TestPrepareVolumes(t *testing.T) {
	a := &Agent{cfg: Config{TaskDir: filepath.Join(t.TempDir(), "tasks")}, log: slog.Default()}
	w := &worker{agent: a}
	tk := &task.Task{ID: "t1", MemoryMiB: 512,
		Volumes: []task.Volume{
			{Name: "cache", EmptyDir: &task.EmptyDir{}},
			{Name: "shm", EmptyDir: &task.EmptyDir{Medium: task.MediumMemory, SizeLimitMiB: 8}},
			{Name: "conf", Files: []task.VolumeFile{
				{Path: "app.yaml", Data: []byte("a: 1\n")},
				{Path: "secrets/pw", Mode: 0o400, Data: []byte("s3cret")},
			}},
		},
		Containers: []task.Container{{Name: "app", MountPoints: []task.MountPoint{
			{SourceVolume: "cache", ContainerPath: "/cache"},
			{SourceVolume: "cache", ContainerPath: "/logs", SubPath: "logs/app"},
			{SourceVolume: "conf", ContainerPath: "/etc/app", ReadOnly: true},
			{SourceVolume: "conf", ContainerPath: "/etc/app.yaml", ReadOnly: true, SubPath: "app.yaml"},
			{SourceVolume: "shm", ContainerPath: "/dev/shm"},
			// A Files volume is always read-only (as the kubelet mounts
			// config maps and secrets since CVE-2017-1002102): its files are
			// the agent's, and it is not bounded as an emptyDir is.
			{SourceVolume: "conf", ContainerPath: "/etc/app-rw"},
		}}},
	}
	mounts, err := w.prepareVolumes(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(a.cfg.TaskDir, "t1", "volumes")
	want := []runtime.Mount{
		{Source: filepath.Join(root, "cache"), Destination: "/cache"},
		{Source: filepath.Join(root, "cache"), SubPath: "logs/app", Destination: "/logs"},
		{Source: filepath.Join(root, "conf"), Destination: "/etc/app", ReadOnly: true},
		{Source: filepath.Join(root, "conf"), SubPath: "app.yaml", Destination: "/etc/app.yaml", ReadOnly: true},
		{Source: filepath.Join(root, "shm"), Destination: "/dev/shm"},
		{Source: filepath.Join(root, "conf"), Destination: "/etc/app-rw", ReadOnly: true},
	}
	got := mounts["app"]
	if len(got) != len(want) {
		t.Fatalf("mounts = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for p, mode := range map[string]os.FileMode{"cache": 0o777 | os.ModeDir, "cache/logs/app": 0o777 | os.ModeDir,
		"conf/app.yaml": 0o644, "conf/secrets/pw": 0o400} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(root, "conf", "secrets", "pw")); string(data) != "s3cret" {
		t.Errorf("secrets/pw holds %q", data)
	}
	shmMounted := len(mountsUnder(filepath.Join(root, "shm"))) == 1
	if os.Geteuid() == 0 && !shmMounted {
		t.Error("the memory volume is not a tmpfs")
	}

	// A sub-path may not lead out of its volume through a symbolic link
	// (as a container could leave one in an emptyDir).
	if err := os.Symlink("/etc", filepath.Join(root, "cache", "escape")); err != nil {
		t.Fatal(err)
	}
	if _, err := subPath(filepath.Join(root, "cache"), "escape/x", true, nil); err == nil {
		t.Error("a sub-path through a symbolic link out of the volume was accepted")
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Error("the sub-path was made outside the volume")
	}

	if err := a.releaseVolumes("t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(a.cfg.TaskDir, "t1")); !os.IsNotExist(err) {
		t.Errorf("the task directory is still there: %v", err)
	}
	if left := mountsUnder(filepath.Join(a.cfg.TaskDir, "t1")); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}

func TestPrepareVolumesRefusesWhatLeavesTheVolume(t *testing.T) {
	a := &Agent{cfg: Config{TaskDir: t.TempDir()}, log: slog.Default()}
	w := &worker{agent: a}
	tk := &task.Task{ID: "t2", Volumes: []task.Volume{{Name: "conf", Files: []task.VolumeFile{{Path: "../../x"}}}}}
	// The agent validates before it prepares; makeVolume also holds the
	// line on its own.
	if err := tk.ValidateVolumes(); err == nil || !strings.Contains(err.Error(), `must not contain ".."`) {
		t.Fatalf("ValidateVolumes = %v", err)
	}
	if _, err := w.prepareVolumes(context.Background(), tk); err == nil {
		t.Fatal("a file path with .. was written")
	}
	if _, err := os.Stat(filepath.Join(a.cfg.TaskDir, "x")); err == nil {
		t.Fatal("a file was written outside the volume")
	}
}

// TestEmptyDirBoundedByEphemeralStorage: a disk emptyDir holds no more
// than the task's ephemeral storage, whatever the host's disk has free.
func TestEmptyDirBoundedByEphemeralStorage(t *testing.T) {
	testenv.SkipShort(t, "a loop-mounted ext4 file")
	if os.Geteuid() != 0 {
		t.Skip("loop mounts need root")
	}
	a := &Agent{cfg: Config{TaskDir: filepath.Join(t.TempDir(), "tasks")}, log: slog.Default()}
	w := &worker{agent: a}
	tk := &task.Task{ID: "t3", MemoryMiB: 512, EphemeralStorageGiB: 1,
		Volumes:    []task.Volume{{Name: "scratch", EmptyDir: &task.EmptyDir{}}},
		Containers: []task.Container{{Name: "app", MountPoints: []task.MountPoint{{SourceVolume: "scratch", ContainerPath: "/scratch"}}}},
	}
	var st unix.Statfs_t
	if err := unix.Statfs(a.cfg.TaskDir[:strings.LastIndex(a.cfg.TaskDir, "/")], &st); err != nil {
		t.Fatal(err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < 3<<30 {
		t.Skipf("the host has only %d MiB free; the case needs room beyond the task's 1 GiB", free>>20)
	}
	mounts, err := w.prepareVolumes(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.releaseVolumes("t3") })
	f, err := os.Create(filepath.Join(mounts["app"][0].Source, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	written, werr := 0, error(nil)
	for written < 1<<30 && werr == nil {
		var n int
		n, werr = f.Write(chunk)
		written += n
	}
	err = errors.Join(werr, f.Sync(), f.Close())
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 1 GiB into the emptyDir of a task with 1 GiB of storage: %d MiB written, err %v; want ENOSPC", written>>20, err)
	}
	if err := a.releaseVolumes("t3"); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(a.taskDir("t3")); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	waitNoLoopDevice(t, filepath.Join(a.taskDir("t3"), "volumes.img"))
}

// waitNoLoopDevice fails unless no loop device backs img within 5 s (the
// kernel detaches an autoclear device a moment after the unmount).
func waitNoLoopDevice(t *testing.T, img string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		var devs []string
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), img) {
				devs = append(devs, f)
			}
		}
		if len(devs) != 0 {
			return fmt.Errorf("loop devices still back %s: %v", img, devs)
		}
		return nil
	})
}

// TestFSGroup: with an fsGroup, the task's volumes are group-owned by it,
// directories setgid and group rwx (r-x for a Files volume), files group
// rw (r), as the kubelet makes them; sub-paths made later inherit it.
func TestFSGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another group needs root")
	}
	a := &Agent{cfg: Config{TaskDir: filepath.Join(t.TempDir(), "tasks")}, log: slog.Default()}
	w := &worker{agent: a}
	gid := uint32(2345)
	tk := &task.Task{ID: "t4", MemoryMiB: 64, EphemeralStorageGiB: 1, FSGroup: &gid,
		Volumes: []task.Volume{
			{Name: "data", EmptyDir: &task.EmptyDir{}},
			{Name: "shm", EmptyDir: &task.EmptyDir{Medium: task.MediumMemory, SizeLimitMiB: 1}},
			{Name: "conf", Files: []task.VolumeFile{{Path: "sub/key", Mode: 0o400, Data: []byte("k")}}},
		},
		Containers: []task.Container{{Name: "app", MountPoints: []task.MountPoint{
			{SourceVolume: "data", ContainerPath: "/data"},
			{SourceVolume: "data", ContainerPath: "/logs", SubPath: "logs/app"},
			{SourceVolume: "shm", ContainerPath: "/dev/shm"},
			{SourceVolume: "conf", ContainerPath: "/conf"},
		}}},
	}
	if _, err := w.prepareVolumes(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.releaseVolumes("t4") })
	root := filepath.Join(a.taskDir("t4"), "volumes")
	for p, want := range map[string]os.FileMode{
		"data":          os.ModeDir | os.ModeSetgid | 0o777,
		"data/logs":     os.ModeDir | os.ModeSetgid | 0o777,
		"data/logs/app": os.ModeDir | os.ModeSetgid | 0o777,
		"shm":           os.ModeDir | os.ModeSetgid | 0o777,
		"conf":          os.ModeDir | os.ModeSetgid | 0o755,
		"conf/sub":      os.ModeDir | os.ModeSetgid | 0o755,
		"conf/sub/key":  0o440,
	} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		if g := fi.Sys().(*syscall.Stat_t).Gid; g != gid {
			t.Errorf("%s: group %d, want the fsGroup %d", p, g, gid)
		}
	}
}
