package runtimetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			// The same as a sub-path of the volume.
			{Source: dir, SubPath: "conf/app.yaml", Destination: "/srv/sub/app.yaml", ReadOnly: true},
		}
	}, `cat /etc/vessel-config/greeting; cat /etc/vessel-config/conf/app.yaml; cat /srv/app/app.yaml; cat /srv/sub/app.yaml`)
	if st.Code != 0 {
		out, errs := s.output(spec, "app")
		s.t.Fatalf("code %d, want 0 (stdout %q, stderr %q)", st.Code, out, errs)
	}
	out, _ := s.output(spec, "app")
	if want := "hello from a volume\nlevel: debug\nlevel: debug\nlevel: debug\n"; out != want {
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

// The sub-path cases are CVE-2017-1002101's class: a container replaces
// a directory of a shared volume by a symbolic link (to "/", to a host
// directory outside the volume) and another container, or the same one
// restarted, mounts that directory as a sub-path. The runtime must resolve
// the sub-path inside the volume at each start without following the link:
// the container then fails to start, or sees the volume's directory, never
// what the link points to.

// subPathSwap is the script of the container that swaps sub-path x of the
// volume at /vol for a symbolic link to the host directory hostDir, or to
// "/" when hostDir is "".
func subPathSwap(hostDir string) string {
	to := "/"
	if hostDir != "" {
		to = hostDir
	}
	return `rm -rf /vol/x && ln -s ` + to + ` /vol/x && ls -la /vol`
}

// subPathCheck is the script of a container that mounts sub-path x at
// /sub: it prints ESCAPED when it sees the host's secret file (secret is
// its host path; the link leads to "/" or to the secret's directory) and ROOT when it sees a root file system (etc and proc).
func subPathCheck(secret string) string {
	return `ls /sub; if [ -e "/sub` + secret + `" ] || [ -e /sub/` + filepath.Base(secret) + ` ]; then echo ESCAPED; fi
if [ -d /sub/etc ] && [ -d /sub/proc ]; then echo ROOT; fi
echo checked`
}

// subPathVolume makes a volume with a directory x holding a file "mine",
// and, outside it, a host directory holding a file "secret"; it returns
// the volume and the secret's host path.
func (s *suite) subPathVolume() (vol, secret string) {
	s.t.Helper()
	vol = s.volumeDir(0o777)
	if err := os.Mkdir(filepath.Join(vol, "x"), 0o777); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "x", "mine"), []byte("mine\n"), 0o666); err != nil {
		s.t.Fatal(err)
	}
	secret = filepath.Join(s.t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return vol, secret
}

// subPathMount is how a container mounts sub-path x of vol at /sub.
func subPathMount(vol string) runtime.Mount {
	return runtime.Mount{Source: vol, SubPath: "x", Destination: "/sub"}
}

// sub is the suite for subtest t, on the same runtime.
func (s *suite) sub(t *testing.T) *suite {
	c := *s
	c.t = t
	return &c
}

// startOrRefuse starts (or restarts) container name; it reports whether
// the runtime refused, which is what a sub-path swapped for a link should
// get.
func (s *suite) startOrRefuse(id, name string, restart bool) bool {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	var err error
	if restart {
		err = s.restarter().Restart(ctx, id, name)
	} else {
		err = s.rt.Start(ctx, id, name)
	}
	if err != nil {
		s.t.Logf("%s refused: %v", name, err)
		return true
	}
	return false
}

// checkNoEscape fails when container name saw the host's secret or a root
// file system through its sub-path mount; a container that exited
// non-zero because its mount failed is fine.
func (s *suite) checkNoEscape(spec runtime.Spec, name string) {
	s.t.Helper()
	st := s.wait(spec.ID, name)
	out, errs := s.output(spec, name)
	if strings.Contains(out, "ESCAPED") || strings.Contains(out, "ROOT") {
		s.t.Fatalf("%s saw outside the volume through its sub-path (code %d):\n%s%s", name, st.Code, out, errs)
	}
	s.t.Logf("%s: code %d, stdout %q, stderr %q", name, st.Code, out, errs)
}

// testSubPathSwappedBeforeStart: an init container swaps x for a link,
// then the next container mounts x.
func testSubPathSwappedBeforeStart(s *suite) {
	s.needReal()
	for _, to := range []string{"host-dir", "root"} {
		s.t.Run(to, func(t *testing.T) {
			s := s.sub(t)
			vol, secret := s.subPathVolume()
			hostDir := filepath.Dir(secret)
			if to == "root" {
				hostDir = ""
			}
			init := sh("init", subPathSwap(hostDir))
			init.Mounts = []runtime.Mount{{Source: vol, Destination: "/vol"}}
			app := sh("app", subPathCheck(secret))
			app.Mounts = []runtime.Mount{subPathMount(vol)}
			spec := s.sandboxWith(nil, init, app)
			s.start(spec.ID, "init")
			if st := s.wait(spec.ID, "init"); st.Code != 0 {
				out, errs := s.output(spec, "init")
				s.t.Fatalf("init: code %d: %s%s", st.Code, out, errs)
			}
			if s.startOrRefuse(spec.ID, "app", false) {
				return
			}
			s.checkNoEscape(spec, "app")
		})
	}
}

// testSubPathSwappedBeforeRestart: the container mounting x runs once and
// sees its directory; another container swaps x for a link; the first one
// restarts.
func testSubPathSwappedBeforeRestart(s *suite) {
	s.needReal()
	vol, secret := s.subPathVolume()
	app := sh("app", subPathCheck(secret)+"; cat /sub/mine")
	app.Mounts = []runtime.Mount{subPathMount(vol)}
	swap := sh("swap", subPathSwap(filepath.Dir(secret)))
	swap.Mounts = []runtime.Mount{{Source: vol, Destination: "/vol"}}
	spec := s.sandboxWith(nil, app, swap)
	s.start(spec.ID, "app")
	if st := s.wait(spec.ID, "app"); st.Code != 0 {
		s.t.Fatalf("app's first run: code %d", st.Code)
	}
	if out, _ := s.output(spec, "app"); !strings.Contains(out, "mine\nchecked\nmine\n") {
		s.t.Fatalf("app's first run did not see its sub-path: %q", out)
	}
	s.start(spec.ID, "swap")
	if st := s.wait(spec.ID, "swap"); st.Code != 0 {
		out, errs := s.output(spec, "swap")
		s.t.Fatalf("swap: code %d: %s%s", st.Code, out, errs)
	}
	if s.startOrRefuse(spec.ID, "app", true) {
		return
	}
	s.checkNoEscape(spec, "app")
}

// testVolumeOwnership: a volume's group and setgid bit (a task's fsGroup,
// which the agent sets on the host) are what the container sees, also in
// a runtime that copies volumes in.
func testVolumeOwnership(s *suite) {
	s.needReal()
	dir := s.volumeDir(0o775)
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o770); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "f"), []byte("x"), 0o640); err != nil {
		s.t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{".": 0o775 | os.ModeSetgid, "d": 0o770 | os.ModeSetgid, "d/f": 0o640} {
		if err := os.Lchown(filepath.Join(dir, p), -1, 2345); err != nil {
			s.t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, p), mode); err != nil {
			s.t.Fatal(err)
		}
	}
	spec, st := s.run(func(sp *runtime.Spec) {
		sp.Containers[0].Mounts = []runtime.Mount{{Source: dir, Destination: "/vol"}}
	}, `stat -c '%a %g' /vol /vol/d /vol/d/f`)
	out, errs := s.output(spec, "app")
	if want := "2775 2345\n2770 2345\n640 2345\n"; st.Code != 0 || out != want {
		s.t.Errorf("code %d, stdout %q, stderr %q; want 0 and %q", st.Code, out, errs, want)
	}
}
