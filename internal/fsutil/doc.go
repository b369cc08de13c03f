// Package fsutil holds the file-system helpers several of Vessel's packages
// need the same way: atomic file writes, the mounts under a directory,
// ext4 image files on loop devices, and opening, making and bind-mounting
// a path inside a directory a sandbox writes to without following any
// symbolic link (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS). It
// imports nothing of Vessel's.
//
//	err := fsutil.WriteFileAtomic(path, data, "") // temp file beside path
//	err = fsutil.BindBeneath(volume, "logs/app", privateTarget)
//	defer fsutil.Unbind(privateTarget)
package fsutil
