package fsutil

import (
	"os"
	"path/filepath"
	"strings"
)

// WriteFileAtomic writes data to path so that a crash leaves either the old
// file or the new one, never a part: a temporary file (mode 0600, named
// ".<name>-*<ext>") in tmpDir — beside path when tmpDir is "" — is written,
// synced and renamed over path. tmpDir must be on path's file system.
func WriteFileAtomic(path string, data []byte, tmpDir string) error {
	if tmpDir == "" {
		tmpDir = filepath.Dir(path)
	}
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return replace(path, data, tmpDir, "."+strings.TrimSuffix(base, ext)+"-*"+ext, 0o600, true)
}

// ReplaceFile writes data to path through a temporary file beside it
// (mode perm) renamed over path: a reader sees the old file or the new
// one, never a part. Nothing is synced, so a machine's crash may leave
// either: for files rebuilt from other state after one (a task's /etc
// files, which go with its sandbox), where WriteFileAtomic's fsync would
// only cost time.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return replace(path, data, filepath.Dir(path), "."+filepath.Base(path)+"-*", perm, false)
}

// replace writes data to a temporary file named after pattern in tmpDir
// (mode perm), syncs it when sync is set, and renames it over path.
func replace(path string, data []byte, tmpDir, pattern string, perm os.FileMode, sync bool) error {
	f, err := os.CreateTemp(tmpDir, pattern)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // nothing once renamed
	_, err = f.Write(data)
	if err == nil && perm != 0o600 {
		err = f.Chmod(perm)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteFileDurable is WriteFileAtomic, beside path, whose rename is also
// durable once it returns: path's directory is synced after it.
func WriteFileDurable(path string, data []byte) error {
	if err := WriteFileAtomic(path, data, ""); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes dir's entries durable: a file made, renamed or linked
// in it survives a crash once SyncDir returns.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
