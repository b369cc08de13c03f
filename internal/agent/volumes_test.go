package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
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
		}}},
	}
	mounts, err := w.prepareVolumes(tk)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(a.cfg.TaskDir, "t1", "volumes")
	want := []runtime.Mount{
		{Source: filepath.Join(root, "cache"), Destination: "/cache"},
		{Source: filepath.Join(root, "cache", "logs", "app"), Destination: "/logs"},
		{Source: filepath.Join(root, "conf"), Destination: "/etc/app", ReadOnly: true},
		{Source: filepath.Join(root, "conf", "app.yaml"), Destination: "/etc/app.yaml", ReadOnly: true},
		{Source: filepath.Join(root, "shm"), Destination: "/dev/shm"},
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
	if _, err := subPath(filepath.Join(root, "cache"), "escape/x", true); err == nil {
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
	if _, err := w.prepareVolumes(tk); err == nil {
		t.Fatal("a file path with .. was written")
	}
	if _, err := os.Stat(filepath.Join(a.cfg.TaskDir, "x")); err == nil {
		t.Fatal("a file was written outside the volume")
	}
}
