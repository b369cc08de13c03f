package image

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"vessel.dev/vessel/internal/errdefs"
)

// ImportRootFS makes a one-layer image named ref from a root file system,
// given as a directory or a tar (as `docker import` does), with cfg as its
// config (command, environment, working directory). The layer is unpacked
// with the same rules as any other. It blocks until done; the returned
// image is the caller's.
func (s *Store) ImportRootFS(ctx context.Context, path, ref string, cfg ImageConfig) (*Image, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, errdefs.InvalidArgument("image reference %q is not valid: %v", ref, err)
	}
	ref = parsed.Name()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, errdefs.NotFound("import %s: %v", path, err)
	}
	layerTar := path
	if fi.IsDir() {
		tmp, err := os.CreateTemp(s.tmpDir(), "rootfs-*.tar")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		if err := tarDir(path, tmp); err != nil {
			tmp.Close()
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		if err := tmp.Close(); err != nil {
			return nil, err
		}
		layerTar = tmp.Name()
	}
	layer, err := tarball.LayerFromFile(layerTar)
	if err != nil {
		return nil, errdefs.InvalidArgument("import %s: not a tar: %v", path, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env = cfg.Entrypoint, cfg.Cmd, cfg.Env
	cf.Config.WorkingDir, cf.Config.User = cfg.WorkingDir, cfg.User
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	return s.add(ctx, ref, img, fromBlobs, nil, grant{public: true, local: true})
}

// tarDir writes dir's tree as a tar, keeping symlinks as links.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
