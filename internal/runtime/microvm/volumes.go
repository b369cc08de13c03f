package microvm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/guestproto"
	"vessel.dev/vessel/internal/runtime"
)

// maxVolumeBytes bounds the files copied into a guest: they travel in the
// guest's configuration over the control channel.
const maxVolumeBytes = 16 << 20

// guestVolumes turns the containers' mounts (host directories) into guest
// volumes, copied into the VM as /etc's files are, and sets each guest
// container's Mounts. A source below another one (a sub-path of a volume
// another container mounts whole) becomes a sub-path of that volume, so the
// containers share it. A source on a tmpfs (a memory emptyDir) becomes a
// tmpfs of the same size in the guest. gcs are the guest containers, in
// the order of spec.Containers.
func guestVolumes(spec runtime.Spec, gcs []guestproto.Container) ([]guestproto.Volume, error) {
	// The directories to copy: each source, or its directory for a
	// source that is a file (a config map key mounted on its own).
	var sources []string
	seen := map[string]bool{}
	for _, c := range spec.Containers {
		for _, m := range c.Mounts {
			dir := m.Source
			fi, err := os.Stat(dir)
			if err != nil {
				return nil, fmt.Errorf("container %s: mount at %s: %w", c.Name, m.Destination, err)
			}
			if !fi.IsDir() {
				dir = filepath.Dir(dir)
			}
			if !seen[dir] {
				seen[dir] = true
				sources = append(sources, dir)
			}
		}
	}
	if len(sources) == 0 {
		return nil, nil
	}
	sort.Slice(sources, func(i, j int) bool { return len(sources[i]) < len(sources[j]) })
	type root struct{ source, name string }
	var roots []root
	where := map[string][2]string{} // source → guest volume, sub-path
	var vols []guestproto.Volume
	total := 0
	for _, src := range sources {
		found := false
		for _, r := range roots {
			if rel, ok := strings.CutPrefix(src, r.source+"/"); ok {
				where[src] = [2]string{r.name, filepath.ToSlash(rel)}
				found = true
				break
			}
		}
		if found {
			continue
		}
		name := fmt.Sprintf("v%d", len(roots))
		roots = append(roots, root{src, name})
		where[src] = [2]string{name, ""}
		v, n, err := readVolume(name, src)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", src, err)
		}
		if total += n; total > maxVolumeBytes {
			return nil, fmt.Errorf("the sandbox's volumes hold more than %d bytes of files, the most a micro-VM is given", maxVolumeBytes)
		}
		vols = append(vols, v)
	}
	for i, c := range spec.Containers {
		for _, m := range c.Mounts {
			w, ok := where[m.Source]
			if !ok { // a file: a sub-path of its directory's volume
				d := where[filepath.Dir(m.Source)]
				w = [2]string{d[0], strings.TrimPrefix(d[1]+"/"+filepath.Base(m.Source), "/")}
			}
			// A mount's own sub-path is resolved by the guest, inside its
			// copy of the volume, without following any link.
			if m.SubPath != "" {
				w[1] = path.Join(w[1], m.SubPath)
			}
			gcs[i].Mounts = append(gcs[i].Mounts, guestproto.Mount{Volume: w[0], SubPath: w[1],
				Destination: m.Destination, ReadOnly: m.ReadOnly})
		}
	}
	return vols, nil
}

// readVolume reads a host volume directory: its directories and regular
// files with their modes (setgid kept) and groups (an fsGroup), symbolic
// links and special files left out, and whether it is a tmpfs. The
// sandbox never writes to the host's directory (the guest has its copy),
// and files are opened without following a link all the same.
func readVolume(name, dir string) (guestproto.Volume, int, error) {
	v := guestproto.Volume{Name: name}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return v, 0, err
	}
	if st.Type == unix.TMPFS_MAGIC {
		v.TmpfsMiB = max(1, int64(st.Blocks)*st.Bsize>>20)
	}
	size := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
		var gid uint32
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			gid = st.Gid
		}
		switch {
		case d.IsDir():
			v.Entries = append(v.Entries, guestproto.VolumeEntry{Path: filepath.ToSlash(rel), Dir: true, Mode: mode, GID: gid})
		case info.Mode().IsRegular():
			if size += int(info.Size()); size > maxVolumeBytes {
				return fmt.Errorf("holds more than %d bytes of files", maxVolumeBytes)
			}
			data, err := readNoFollow(p)
			if err != nil {
				return err
			}
			v.Entries = append(v.Entries, guestproto.VolumeEntry{Path: filepath.ToSlash(rel), Mode: mode, GID: gid, Data: data})
		}
		return nil
	})
	return v, size, err
}

// readNoFollow reads the regular file at p, refusing a symbolic link.
func readNoFollow(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
