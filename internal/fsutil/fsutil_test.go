package fsutil

import (
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
