package toolkit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

func testSpec(t *testing.T, c runtime.ContainerSpec) *specs.Spec {
	t.Helper()
	if c.Args == nil {
		c.Args = []string{"/app"}
	}
	s, err := OCISpec(c, BundleParams{ID: "t", Name: "app", Rootfs: "/r", EtcDir: "/e", HostNofile: 20000,
		InitPath: "/usr/bin/tini-static"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpecSecurity checks the bundle's part of runtime.Security.
func TestSpecSecurity(t *testing.T) {
	def := testSpec(t, runtime.ContainerSpec{})
	want := (*task.Security)(nil).Capabilities()
	if got := def.Process.Capabilities.Effective; !slices.Equal(got, want) {
		t.Errorf("default capabilities %v, want task.DefaultCapabilities %v", got, want)
	}
	// The seccomp profile is an allow-list: what it does not name fails.
	if sc := def.Linux.Seccomp; sc == nil || sc.DefaultAction == specs.ActAllow {
		t.Errorf("seccomp profile %+v: want a default action that denies", sc)
	}
	for _, rl := range def.Process.Rlimits {
		if rl.Type == "RLIMIT_NPROC" {
			t.Errorf("RLIMIT_NPROC %d/%d is set: the host counts it per uid across sandboxes", rl.Soft, rl.Hard)
		}
	}
	if def.Root.Readonly || def.Process.Args[0] != "/app" || !def.Process.NoNewPrivileges {
		t.Errorf("default spec: readonly %v, args %v, no_new_privs %v", def.Root.Readonly, def.Process.Args, def.Process.NoNewPrivileges)
	}

	none := testSpec(t, runtime.ContainerSpec{Security: runtime.Security{Capabilities: []string{}}})
	if c := none.Process.Capabilities; len(c.Bounding)+len(c.Effective)+len(c.Permitted) != 0 {
		t.Errorf("no capabilities asked, got %+v", c)
	}

	s := testSpec(t, runtime.ContainerSpec{Args: []string{"/bin/app", "-x"}, Security: runtime.Security{
		ReadOnlyRootfs: true, SupplementalGroups: []uint32{7, 9}, Init: true}})
	if !s.Root.Readonly {
		t.Error("ReadOnlyRootfs: root not read-only")
	}
	if !slices.Equal(s.Process.User.AdditionalGids, []uint32{7, 9}) {
		t.Errorf("additional gids %v, want [7 9]", s.Process.User.AdditionalGids)
	}
	if want := []string{initDestination, "-s", "--", "/bin/app", "-x"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("Init: args %v, want %v", s.Process.Args, want)
	}
	last := s.Mounts[len(s.Mounts)-1]
	if last.Destination != initDestination || last.Source != "/usr/bin/tini-static" || !slices.Contains(last.Options, "ro") {
		t.Errorf("Init: last mount %+v, want the init bound read-only", last)
	}

	_, err := OCISpec(runtime.ContainerSpec{Name: "app", Args: []string{"x"}, Security: runtime.Security{Init: true}}, BundleParams{})
	if !errdefs.IsUnavailable(err) {
		t.Errorf("Init without an init on the host: %v, want unavailable", err)
	}
}

// TestUserFilesNotRegular: a named pipe, a directory or an oversized
// file as /etc/passwd or /etc/group is refused at once, not read.
func TestUserFilesNotRegular(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(path string) error
	}{
		{"named pipe", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"too large", func(p string) error { return os.Truncate(p, maxUserFileSize+1) }},
	} {
		for _, file := range []string{"passwd", "group"} {
			root := t.TempDir()
			os.Mkdir(filepath.Join(root, "etc"), 0o755)
			path := filepath.Join(root, "etc", file)
			if c.name == "too large" {
				os.WriteFile(path, nil, 0o644)
			}
			if err := c.make(path); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 2)
			user := "nobody"
			if file == "group" {
				user = "1234:nogroup"
			}
			go func() {
				_, err := resolveUser(root, user)
				done <- err
				done <- checkUserFiles(root)
			}()
			for i := 0; i < 2; i++ {
				select {
				case err := <-done:
					if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/etc/"+file) {
						t.Errorf("%s as /etc/%s: %v, want an invalid-argument error naming it", c.name, file, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s as /etc/%s: the lookup blocks", c.name, file)
				}
			}
		}
	}
	// A missing file is no error.
	if err := checkUserFiles(t.TempDir()); err != nil {
		t.Errorf("no /etc/passwd: %v", err)
	}
}
