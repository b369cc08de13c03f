//go:build !linux

package sockopt

import "syscall"

// FreeBind does nothing off Linux: addresses must exist to be bound.
func FreeBind(network, address string, c syscall.RawConn) error { return nil }
