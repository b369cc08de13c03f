// Package fsutil holds the file-system helpers several of Vessel's packages
// need the same way (today: atomic file writes). It imports nothing of
// Vessel's.
//
//	err := fsutil.WriteFileAtomic(path, data, "") // temp file beside path
package fsutil
