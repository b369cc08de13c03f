package task

import (
	"reflect"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestValidateVolumes(t *testing.T) {
	base := func() *Task {
		return &Task{
			Volumes: []Volume{
				{Name: "cache", EmptyDir: &EmptyDir{}},
				{Name: "shm", EmptyDir: &EmptyDir{Medium: MediumMemory, SizeLimitMiB: 64}},
				{Name: "config", Files: []VolumeFile{{Path: "app.yaml", Data: []byte("a: 1")}, {Path: "sub/dir/x", Mode: 0o600}}},
				{Name: "empty-optional", Files: []VolumeFile{}},
			},
			Containers: []Container{{Name: "app", MountPoints: []MountPoint{
				{SourceVolume: "cache", ContainerPath: "/cache"},
				{SourceVolume: "config", ContainerPath: "/etc/app", ReadOnly: true},
				{SourceVolume: "cache", ContainerPath: "/data/logs", SubPath: "logs/app"},
			}}},
		}
	}
	tests := []struct {
		name    string
		mod     func(*Task)
		wantMsg string // "" = valid
	}{
		{"valid", func(*Task) {}, ""},
		{"no volumes", func(t *Task) { t.Volumes = nil; t.Containers[0].MountPoints = nil }, ""},
		{"duplicate name", func(t *Task) { t.Volumes[1].Name = "cache" }, `volume "cache" is defined twice`},
		{"empty name", func(t *Task) { t.Volumes[0].Name = "" }, `volume 0: name "" must be 1 to 255 characters`},
		{"bad name", func(t *Task) { t.Volumes[0].Name = "a/b" }, `name "a/b" may hold only letters`},
		{"both kinds", func(t *Task) { t.Volumes[0].Files = []VolumeFile{{Path: "x"}} }, "sets both emptyDir and files"},
		{"bad medium", func(t *Task) { t.Volumes[1].EmptyDir.Medium = "HugePages" }, `emptyDir medium "HugePages" is not supported`},
		{"negative size", func(t *Task) { t.Volumes[1].EmptyDir.SizeLimitMiB = -1 }, "sizeLimitMiB -1 is negative"},
		{"file escapes", func(t *Task) { t.Volumes[2].Files[0].Path = "../../etc/passwd" }, `file path "../../etc/passwd" must not contain ".."`},
		{"file escapes inside", func(t *Task) { t.Volumes[2].Files[0].Path = "a/../../b" }, `must not contain ".."`},
		{"file absolute", func(t *Task) { t.Volumes[2].Files[0].Path = "/etc/passwd" }, "must be relative"},
		{"file empty path", func(t *Task) { t.Volumes[2].Files[0].Path = "" }, "is empty"},
		{"file is root", func(t *Task) { t.Volumes[2].Files[0].Path = "./" }, "names the volume's root"},
		{"file twice", func(t *Task) { t.Volumes[2].Files[1].Path = "app.yaml" }, `file "app.yaml" is given twice`},
		{"file is a directory of another", func(t *Task) { t.Volumes[2].Files[0].Path = "sub/dir" }, `"sub/dir" is a file and also the directory of "sub/dir/x"`},
		{"file mode beyond permissions", func(t *Task) { t.Volumes[2].Files[0].Mode = 0o4755 }, "bits beyond the permissions"},
		{"file too large", func(t *Task) { t.Volumes[2].Files[0].Data = make([]byte, MaxVolumeFileBytes+1) }, "at most 1048576 are accepted"},
		{"unknown volume", func(t *Task) { t.Containers[0].MountPoints[0].SourceVolume = "nope" },
			`container "app" mounts volume "nope", which the task does not define (volumes: cache, shm, config, empty-optional)`},
		{"relative container path", func(t *Task) { t.Containers[0].MountPoints[0].ContainerPath = "cache" }, `containerPath "cache" must be an absolute, clean path`},
		{"unclean container path", func(t *Task) { t.Containers[0].MountPoints[0].ContainerPath = "/a/../etc" }, `containerPath "/a/../etc" must be`},
		{"root container path", func(t *Task) { t.Containers[0].MountPoints[0].ContainerPath = "/" }, `containerPath "/" must be`},
		{"two mounts at one path", func(t *Task) { t.Containers[0].MountPoints[1].ContainerPath = "/cache" }, `container "app" mounts two volumes at /cache`},
		{"subPath escapes", func(t *Task) { t.Containers[0].MountPoints[2].SubPath = "../other" }, `subPath "../other" must not contain ".."`},
		{"subPath absolute", func(t *Task) { t.Containers[0].MountPoints[2].SubPath = "/x" }, `subPath "/x" must be relative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := base()
			tt.mod(tk)
			err := tk.ValidateVolumes()
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("ValidateVolumes = %v, want nil", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("ValidateVolumes = %v, want an invalid argument with %q", err, tt.wantMsg)
			}
		})
	}
}

func TestCloneVolumes(t *testing.T) {
	orig := &Task{
		Volumes:    []Volume{{Name: "f", Files: []VolumeFile{{Path: "a", Data: []byte("x")}}}, {Name: "e", EmptyDir: &EmptyDir{SizeLimitMiB: 1}}},
		Containers: []Container{{Name: "c", MountPoints: []MountPoint{{SourceVolume: "f", ContainerPath: "/f"}}}},
	}
	c := orig.Clone()
	if !reflect.DeepEqual(c.Volumes, orig.Volumes) || !reflect.DeepEqual(c.Containers[0].MountPoints, orig.Containers[0].MountPoints) {
		t.Fatalf("clone differs: %+v", c)
	}
	c.Volumes[0].Files[0].Data[0] = 'y'
	c.Volumes[1].EmptyDir.SizeLimitMiB = 2
	c.Containers[0].MountPoints[0].ReadOnly = true
	if orig.Volumes[0].Files[0].Data[0] != 'x' || orig.Volumes[1].EmptyDir.SizeLimitMiB != 1 || orig.Containers[0].MountPoints[0].ReadOnly {
		t.Error("clone shares volumes or mount points with the original")
	}
}

func TestNodeNameForIP(t *testing.T) {
	for ip, want := range map[string]string{
		"10.0.1.7":        "vessel-ip-10-0-1-7",
		"192.168.100.254": "vessel-ip-192-168-100-254",
		"::ffff:10.0.0.1": "vessel-ip-10-0-0-1",
		"fd00::1":         "vessel-ip-fd00--1",
		"":                "",
	} {
		if got := NodeNameForIP(ip); got != want {
			t.Errorf("NodeNameForIP(%q) = %q, want %q", ip, got, want)
		}
	}
}

func TestExpandPlaceholders(t *testing.T) {
	c := Container{
		Name:        "app",
		EntryPoint:  []string{"/bin/sh", "-c"},
		Command:     []string{"echo " + PlaceholderPodIP + " on " + PlaceholderNodeName},
		Environment: map[string]string{"MY_POD_IP": PlaceholderPodIP, "NODE": PlaceholderNodeName, "OTHER": "x"},
	}
	got := ExpandPlaceholders(c, "10.0.1.7")
	want := Container{
		Name:        "app",
		EntryPoint:  []string{"/bin/sh", "-c"},
		Command:     []string{"echo 10.0.1.7 on vessel-ip-10-0-1-7"},
		Environment: map[string]string{"MY_POD_IP": "10.0.1.7", "NODE": "vessel-ip-10-0-1-7", "OTHER": "x"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExpandPlaceholders = %+v, want %+v", got, want)
	}
	if c.Environment["MY_POD_IP"] != PlaceholderPodIP || c.Command[0] != "echo "+PlaceholderPodIP+" on "+PlaceholderNodeName {
		t.Error("ExpandPlaceholders changed its argument")
	}
	if same := ExpandPlaceholders(c, ""); !reflect.DeepEqual(same, c) {
		t.Errorf("without an IP the placeholders must stay: %+v", same)
	}
}
