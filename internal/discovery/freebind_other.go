//go:build !linux

package discovery

import "syscall"

// freeBind does nothing off Linux: addresses must exist to be bound.
func freeBind(network, address string, c syscall.RawConn) error { return nil }
