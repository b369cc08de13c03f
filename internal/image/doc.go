// Package image is the host agent's image cache: it turns an image
// reference into read-only unpacked layers that a runtime stacks with
// overlayfs (runc; gVisor and micro-VMs build their root file systems from
// the same directories).
//
// It owns one directory (Config.Root, e.g. <data-dir>/images):
//
//	blobs/sha256/<hex>    compressed blobs, manifests and configs, by digest (verified)
//	layers/sha256/<hex>   unpacked layers, named by diff ID (the uncompressed digest, verified)
//	images/<sha256(ref)>.json  one record per reference: manifest digest, config, layers, access
//	access.key            the key credential hashes are made with (0600)
//	tmp/                  work in progress; emptied by Open
//
// Layers are fetched a few at a time and each is unpacked as its blob
// arrives (stream.go): the bytes are hashed, kept and unpacked in one pass
// into a directory of its own under tmp/, renamed into layers/ only once
// the blob's digest and the diff ID are checked, so neither a crash nor a
// registry that sends other bytes leaves a half-unpacked layer that looks
// done.
//
// Registries and layers are hostile input: what a registry sends is capped
// (limits.go), layers are unpacked without following a link on the host
// (unpack.go), and an image pulled with credentials is served from the
// cache only to callers the registry also serves (access.go);
// docs/security.md says what each guarantees and which tests prove it.
//
// It imports errdefs and fsutil of Vessel's (and go-containerregistry,
// klauspost/compress and x/sys); it must not import the server, the agent,
// the runtimes or any other Vessel package above it.
//
//	s, err := image.Open(image.Config{Root: filepath.Join(dataDir, "images"), Logger: log})
//	img, err := s.Pull(ctx, "busybox", image.PullOptions{Auth: image.Auth{Username: u, Password: p}, PreferCached: true})
//	// lowerdir is top layer first:
//	lower := slices.Clone(img.Layers); slices.Reverse(lower)
//	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=...,workdir=..."
//	imgs, err := s.Import(ctx, "/srv/offline/app.tar") // OCI layout dir/tar or docker save
//	err = s.Remove(ctx, "busybox") // deletes layers and blobs no other image uses
package image
