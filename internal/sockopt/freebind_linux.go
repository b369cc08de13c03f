package sockopt

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// FreeBind sets IP_FREEBIND (and its IPv6 twin), so that a socket may bind
// an address the host does not have yet.
func FreeBind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		if serr == nil && (network == "udp6" || network == "tcp6") {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
