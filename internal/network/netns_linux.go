package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vessel.dev/vessel/internal/errdefs"
)

// createNetNS makes a new network namespace and bind-mounts it on path. It
// does the unshare on a dedicated, locked OS thread and switches that thread
// back to its original namespace afterwards; if switching back fails the
// thread stays locked and is thrown away when the goroutine ends.
func createNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace file: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(mountErr, fmt.Errorf("switch back to the host network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		if mountErr != nil {
			mountErr = fmt.Errorf("bind-mount network namespace on %s: %w", path, mountErr)
		}
		errc <- mountErr
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and removes path; a missing file or mount is fine.
func removeNetNS(path string) error {
	for range 8 { // in case it was mounted more than once
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount network namespace %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace file: %w", err)
	}
	return nil
}

// isNetNS reports whether path is a mounted network namespace.
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

func enableIPv4Forwarding() error {
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
}

// DialInNamespace connects to address (an IP literal and a port; names are
// refused, since resolving them would send queries from other threads) with
// a socket made in the network namespace at nsPath, so that 127.0.0.1 is
// the namespace's loopback and the host's addresses are reached, if at all,
// as the namespace's own traffic would reach them. The socket keeps its
// namespace after the calling thread switches back.
func DialInNamespace(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, errdefs.InvalidArgument("network: dial %q: %v", address, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, errdefs.InvalidArgument("network: dial %q in a namespace: %q is not an IP address", address, host)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("network: open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("network: open current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("network: enter network namespace %s: %w", nsPath, err)}
			return
		}
		// An IP literal dials in this goroutine, on this locked thread.
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it dies with this goroutine.
			if c != nil {
				c.Close()
			}
			ch <- result{err: fmt.Errorf("network: switch back to the host network namespace: %w", serr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c: c, err: err}
	}()
	r := <-ch
	return r.c, r.err
}
