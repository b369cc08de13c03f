package runtimetest

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/runtime"
)

// The volume cases bind host directories, as the agent prepares a task's
// volumes, into the containers (runtime.ContainerSpec.Mounts).

// volumeDir returns a new host directory of mode perm for a volume.
func (s *suite) volumeDir(perm os.FileMode) string {
	s.t.Helper()
	dir := filepath.Join(s.t.TempDir(), "vol")
	if err := os.Mkdir(dir, perm); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		s.t.Fatal(err)
	}
	return dir
}

func testVolumeFiles(s *suite) {
	s.needReal()
	dir := s.volumeDir(0o755)
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	files := map[string]string{"greeting": "hello from a volume\n", "conf/app.yaml": "level: debug\n"}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	spec, st := s.run(func(sp *runtime.Spec) {
		sp.Containers[0].Mounts = []runtime.Mount{
			{Source: dir, Destination: "/etc/vessel-config", ReadOnly: true},
			// One file on its own, over a path that does not exist in
			// the image, under directories that do not either.
			{Source: filepath.Join(dir, "conf", "app.yaml"), Destination: "/srv/app/app.yaml", ReadOnly: true},
		}
	}, `cat /etc/vessel-config/greeting; cat /etc/vessel-config/conf/app.yaml; cat /srv/app/app.yaml`)
	if st.Code != 0 {
		out, errs := s.output(spec, "app")
		s.t.Fatalf("code %d, want 0 (stdout %q, stderr %q)", st.Code, out, errs)
	}
	out, _ := s.output(spec, "app")
	if want := "hello from a volume\nlevel: debug\nlevel: debug\n"; out != want {
		s.t.Errorf("stdout %q, want %q", out, want)
	}
}

func testVolumeReadOnly(s *suite) {
	s.needReal()
	ro, rw := s.volumeDir(0o777), s.volumeDir(0o777)
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("original\n"), 0o666); err != nil {
		s.t.Fatal(err)
	}
	spec, st := s.run(func(sp *runtime.Spec) {
		sp.Containers[0].Mounts = []runtime.Mount{
			{Source: ro, Destination: "/ro", ReadOnly: true},
			{Source: rw, Destination: "/rw"},
		}
	}, `(echo changed > /ro/f) 2>/dev/null && echo ro-written || echo ro-refused
(touch /ro/new) 2>/dev/null && echo ro-created || echo ro-create-refused
echo written > /rw/f && echo rw-written`)
	if st.Code != 0 {
		s.t.Fatalf("code %d, want 0", st.Code)
	}
	out, _ := s.output(spec, "app")
	if want := "ro-refused\nro-create-refused\nrw-written\n"; out != want {
		s.t.Errorf("stdout %q, want %q", out, want)
	}
	if data, _ := os.ReadFile(filepath.Join(ro, "f")); string(data) != "original\n" {
		s.t.Errorf("the read-only volume's file became %q", data)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		s.t.Error("a file was created in the read-only volume")
	}
}

func testVolumeShared(s *suite) {
	s.needReal()
	dir := s.volumeDir(0o777)
	// A memory emptyDir: a tmpfs on the host, where the suite may mount
	// one (it runs as root for every real runtime).
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0777,size=16m"); err == nil {
		s.t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	mount := []runtime.Mount{{Source: dir, Destination: "/shared"}}
	reader := sh("reader", `i=0; while [ $i -lt 300 ]; do
  if [ -f /shared/done ]; then cat /shared/msg; exit 0; fi
  sleep 0.1; i=$((i+1)); done; echo "no message" >&2; exit 1`)
	writer := sh("writer", `echo "hello from the writer" > /shared/msg && touch /shared/done`)
	reader.Mounts, writer.Mounts = mount, mount
	spec := s.sandboxWith(nil, reader, writer)
	s.start(spec.ID, "reader")
	s.start(spec.ID, "writer")
	if st := s.wait(spec.ID, "writer"); st.Code != 0 {
		s.t.Fatalf("writer: code %d", st.Code)
	}
	st := s.wait(spec.ID, "reader")
	out, errs := s.output(spec, "reader")
	if st.Code != 0 || out != "hello from the writer\n" {
		s.t.Errorf("reader: code %d, stdout %q, stderr %q; want 0 and the writer's message", st.Code, out, strings.TrimSpace(errs))
	}
}
