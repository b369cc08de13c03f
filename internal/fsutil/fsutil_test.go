package fsutil

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "record.json")
	if err := WriteFileAtomic(p, []byte("one"), ""); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), ""); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("read %q, %v; want two", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left beside the file: %v", entries)
	}
	tmp := t.TempDir()
	if err := WriteFileAtomic(filepath.Join(dir, "other"), []byte("x"), tmp); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("temporary files left in the temp dir: %v", left)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), ""); err == nil {
		t.Fatal("writing into a missing directory must fail")
	}
}

// TestReplaceFile: the file gets the data and the mode asked for, nothing
// else is left in its directory, and one open before the replacement still
// reads the old content (a new file was renamed over it, not a write into
// it that a reader could see half done).
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts")
	if err := ReplaceFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if err := ReplaceFile(path, []byte("new\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "new\n" {
		t.Errorf("content %q, want %q", data, "new\n")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v %v, want 0640", st.Mode().Perm(), err)
	}
	if old, _ := io.ReadAll(before); string(old) != "old\n" {
		t.Errorf("a reader of the old file read %q, want %q", old, "old\n")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the file alone", len(entries))
	}
	if err := ReplaceFile(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Error("ReplaceFile in a missing directory succeeded")
	}
}
