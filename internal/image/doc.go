// Package image is the host agent's image cache: it turns an image
// reference into read-only unpacked layers that a runtime stacks with
// overlayfs (runc today; gVisor and micro-VMs build their root file systems
// from the same directories).
//
// It owns one directory (Config.Root, e.g. <data-dir>/images):
//
//	blobs/sha256/<hex>    compressed blobs, manifests and configs, by digest (verified)
//	layers/sha256/<hex>   unpacked layers, named by diff ID (the uncompressed digest, verified)
//	images/<sha256(ref)>.json  one record per reference: manifest digest, config, layers, access
//	access.key            the key credential hashes are made with (0600)
//	tmp/                  work in progress; emptied by Open
//
// A layer is unpacked into tmp/ and renamed into layers/ only once
// complete, so a crash never leaves a half-unpacked layer that looks done.
// Pulls of the same layer are serialised by a per-layer lock; a second pull
// of a cached image fetches the manifest only, and falls back to the cache
// when the registry is unreachable (never when it refuses access).
//
// # Private images
//
// An image pulled with credentials is not handed from the cache to a
// caller that could not pull it itself (as the kubelet's "ensure secret
// pulled images"). Each record keeps who has shown access to its manifest:
// public (pulled anonymously, or imported on the host) or a list of keyed
// hashes (HMAC-SHA256 under access.key) of registry, username and
// password, never the secret. Pull with PreferCached serves the cache at
// once to those; anyone else's credentials (or none) are first shown to
// the registry with a GET of the cached manifest by digest, and a refusal
// is the error a pull would give. The offline fallback follows the same
// rule. Content is shared by digest, and a digest is no proof of access:
// a cached config or layer that no image the caller may use holds is not
// taken on the word of a manifest or config naming it. The config is
// fetched from the caller's registry; the layer's blob too, and it must
// uncompress to the diff ID (nothing is kept; the unpacked copy is used).
// Else an image naming a private image's config digest or layer diff IDs
// would get its environment or files.
// Credentials are given to the registry client for the image's
// registry alone, which sends them to no other host (not to blob storage
// it is redirected to). Get does not check access; it is for the operator.
//
// It imports go-containerregistry, errdefs and x/sys, and must not import
// server, agent, runtime or any other Vessel package above it.
//
// Usage:
//
//	s, err := image.Open(image.Config{Root: filepath.Join(dataDir, "images"), Logger: log})
//	img, err := s.Pull(ctx, "busybox", image.PullOptions{Auth: image.Auth{Username: u, Password: p}, PreferCached: true})
//	// lowerdir is top layer first:
//	lower := slices.Clone(img.Layers); slices.Reverse(lower)
//	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=...,workdir=..."
//	imgs, err := s.Import(ctx, "/srv/offline/app.tar") // OCI layout dir/tar or docker save
//	err = s.Remove(ctx, "busybox") // deletes layers and blobs no other image uses
//
// # Safe unpacking
//
// Layers are hostile input. Every entry is extracted relative to an open
// file descriptor of the layer directory, opening each parent component with
// O_NOFOLLOW and creating files with O_CREAT|O_EXCL|O_NOFOLLOW, so nothing
// outside Root is ever written and no symlink on the host is followed. The
// rules, which hold for every layer whatever its origin:
//
//   - Names are cleaned; a leading "/" is dropped (absolute names are
//     relative to the layer root, as in Docker); a name that climbs out of
//     the root ("../../etc/x", "/../x") is refused with *UnsafeLayerError.
//   - Symlinks are created as written, but one whose target leads outside
//     the root is refused. The check is lexical: relative targets are
//     resolved from the link's own directory, absolute ones from the layer
//     root (so "abs -> /etc" is allowed: it means the container's /etc).
//   - An entry whose parent path crosses a symlink or a non-directory
//     ("abs/passwd" after "abs -> /etc") is refused: a layer never writes
//     through a link, even one that stays inside.
//   - Hard links must name an entry extracted earlier in the same layer,
//     inside the root; others are refused.
//   - An entry replacing an earlier one of the same layer removes it first
//     (directories over directories are merged).
//   - Character and block devices are skipped with a warning (neutralised):
//     a container gets its devices from the runtime, never from an image.
//   - setuid and setgid bits are cleared on files (neutralised); setgid on
//     directories (group inheritance) and the sticky bit are kept.
//   - Extended attributes recorded in the tar (PAX SCHILY.xattr, including
//     security.capability file capabilities and any trusted.overlay.*) are
//     not applied (neutralised).
//   - FIFOs are created; ownership is applied with lchown semantics, file
//     modes otherwise kept, modification times kept.
//   - OCI whiteouts become overlayfs ones: ".wh.<name>" is a 0:0 character
//     device named <name>, ".wh..wh..opq" sets trusted.overlay.opaque=y on
//     its directory; other ".wh..wh." AUFS metadata is ignored.
//   - Each layer's uncompressed size is bounded by Config.MaxLayerSize
//     (10 GiB by default), so a decompression bomb fails with
//     errdefs.ErrLimitExceeded; so is the sum of what an image's layers
//     unpack to (Config.MaxImageSize, 32 GiB), a layer's number of entries
//     (Config.MaxLayerEntries, 1Mi), an entry's name (MaxPathLength, 4096
//     bytes, components MaxNameLength, 255) and depth (MaxPathDepth, 256)
//     and a symlink's target (4096 bytes).
//
// # Limits on what a registry sends
//
// A registry is hostile input too. Before any blob is fetched the
// manifest's declared sizes are checked: the config's against
// Config.MaxManifestSize (4 MiB), each layer's against MaxLayerSize, their
// sum against MaxImageSize; a missing (negative) size is refused, since the
// registry client would then read without bound, and so are foreign layers
// (external URLs). The registry client reads each blob up to its declared
// size and checks its digest; under it, the Store's transport cuts every
// answer off at a hard cap whatever Content-Length says: MaxManifestSize
// for manifests, indexes and tokens, MaxLayerSize for blobs (redirects
// included). Every limit error is errdefs.ErrLimitExceeded and names the
// Config field. Layers a refused pull unpacked are removed (at once when no
// other pull runs, else by the next Open).
//
// OCI layout tars given to Import may hold only directories and regular
// files.
package image
