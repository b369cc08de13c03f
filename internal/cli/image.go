package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/image"
)

// imageOptions are the flags of `vessel image`.
type imageOptions struct {
	rootfs bool
	ref    string
	cmd    []string
	env    []string
}

func newImageCommand(g *globals) *cobra.Command {
	o := &imageOptions{}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage this host's image cache (for hosts without a registry)",
		Long: `Works on the image cache in the data directory of this host, the one its
agent runs tasks from. Tasks use a cached image without asking a registry
(unless the agent runs with --image-pull-behavior always).`,
	}
	open := func() (*image.Store, error) {
		return image.Open(image.Config{Root: filepath.Join(g.dataDir, "images")})
	}
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Load an OCI layout (directory or tar) or a docker save tarball; with --rootfs, a root file system",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			var imgs []*image.Image
			if o.rootfs {
				if o.ref == "" {
					return fmt.Errorf("--rootfs needs --ref NAME:TAG, the name the image gets")
				}
				img, err := s.ImportRootFS(cmd.Context(), args[0], o.ref, image.ImageConfig{Cmd: o.cmd, Env: o.env})
				if err != nil {
					return err
				}
				imgs = append(imgs, img)
			} else if imgs, err = s.Import(cmd.Context(), args[0]); err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", img.Ref, img.Digest)
			}
			return nil
		},
	}
	imp.Flags().BoolVar(&o.rootfs, "rootfs", false, "FILE is a root file system (a directory or a tar), made into a one-layer image")
	imp.Flags().StringVar(&o.ref, "ref", "", "with --rootfs: the image's name, e.g. busybox:local")
	imp.Flags().StringSliceVar(&o.cmd, "cmd", nil, "with --rootfs: the image's default command")
	imp.Flags().StringSliceVar(&o.env, "env", []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, "with --rootfs: the image's environment")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cached images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			s, err := open()
			if err != nil {
				return err
			}
			imgs, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), imgs)
			}
			t := newTable(cmd.OutOrStdout(), "IMAGE", "DIGEST", "SIZE", "LAYERS")
			for _, img := range imgs {
				t.row(img.Ref, shortDigest(img.Digest), fmt.Sprintf("%.1fMB", float64(img.Size)/1e6), fmt.Sprint(len(img.Layers)))
			}
			return t.flush()
		},
	}
	addOutputFlag(ls, g)
	rm := &cobra.Command{
		Use:   "rm IMAGE...",
		Short: "Remove cached images (layers no other image uses are deleted)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := s.Remove(cmd.Context(), ref); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			return nil
		},
	}
	cmd.AddCommand(imp, ls, rm)
	return cmd
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
