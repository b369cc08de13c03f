package guestproto

import "io/fs"

// Volume is a directory of the sandbox that containers bind-mount: the
// host's volume directory copied into the guest. Its files travel in the
// configuration (they are small: config maps, secrets, tokens); an empty
// directory on the host (an emptyDir) is an empty directory here.
type Volume struct {
	// Name is the volume's directory name in the guest ("v0", "v1"...).
	Name string `json:"name"`
	// TmpfsMiB, when positive, makes the volume a tmpfs of that size (a
	// memory emptyDir); otherwise it lives on the writable disk.
	TmpfsMiB int64 `json:"tmpfsMiB,omitempty"`
	// Entries are the volume's directories and files, parents first; the
	// path "." is the volume's root (its mode).
	Entries []VolumeEntry `json:"entries,omitempty"`
}

// VolumeEntry is one directory or regular file of a Volume.
type VolumeEntry struct {
	// Path is relative to the volume, slash-separated, without "..".
	Path string `json:"path"`
	Dir  bool   `json:"dir,omitempty"`
	// Mode is the permission bits, with setgid (an fsGroup's directories).
	Mode fs.FileMode `json:"mode"`
	// GID is the owning group (the task's fsGroup, or 0).
	GID  uint32 `json:"gid,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// Mount binds a volume (or a directory of it) into a container.
type Mount struct {
	Volume string `json:"volume"`
	// SubPath is a directory or file of the volume ("" = its root),
	// resolved inside it without following any symbolic link.
	SubPath     string `json:"subPath,omitempty"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
}
