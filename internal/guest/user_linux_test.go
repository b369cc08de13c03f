package guest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestLookupUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644)
	for _, c := range []struct {
		user     string
		uid, gid uint32
		bad      bool
	}{
		{"", 0, 0, false}, {"nobody", 65534, 65534, false}, {"65534", 65534, 65534, false},
		{"nobody:staff", 65534, 50, false}, {"1000:1000", 1000, 1000, false},
		// As runc (and Docker, the kubelet): a numeric uid the image's
		// /etc/passwd lacks gets gid 0, not a gid equal to the uid.
		{"4242", 4242, 0, false}, {"4242:4242", 4242, 4242, false},
		{"ghost", 0, 0, true}, {"nobody:ghosts", 0, 0, true},
	} {
		uid, gid, _, err := lookupUser(root, c.user)
		if (err != nil) != c.bad || (!c.bad && (uid != c.uid || gid != c.gid)) {
			t.Errorf("lookupUser(%q) = %d:%d, %v; want %d:%d (error %v)", c.user, uid, gid, err, c.uid, c.gid, c.bad)
		}
	}
}

// TestLookupUserHostileFiles: an image whose /etc/passwd or /etc/group
// is a FIFO (or not a regular file) must not hang the agent.
func TestLookupUserHostileFiles(t *testing.T) {
	for _, name := range []string{"passwd", "group"} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		if name == "group" {
			os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("app:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
		}
		if err := syscall.Mkfifo(filepath.Join(root, "etc", name), 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, _, _, err := lookupUser(root, "app:staff")
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("/etc/%s a FIFO: lookup of app:staff succeeded", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("/etc/%s a FIFO: the user lookup hangs", name)
		}
	}
}
