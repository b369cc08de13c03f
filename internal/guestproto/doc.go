// Package guestproto is the wire protocol of the micro-VM's control
// channel, the one thing the guest agent (internal/guest, inside the VM)
// and the host side (internal/runtime/microvm and its monitor) share: JSON
// lines of Msg over the virtio-serial port PortName, the sandbox's Config
// the first hello carries, and Conn, which reads them with a bound on the
// line's size (a line over it is read to its end, dropped, and reported as
// ErrBadMsg; the stream goes on).
//
// The host speaks first (OpHello); the guest sends nothing before it,
// because QEMU drops what a guest writes while no client holds the socket.
// The host then sends start, restart, signal, exec, stdin and resize; the
// guest answers ready (or, to a later hello, state: every container, so
// that a new monitor catches up; a guest booted with a Warm config answers
// the first later hello with a task's config, its claim, with ready), reply, started, log (one line per
// message, long lines split and marked partial), exit, output and
// exec-exit. What the guest sends is untrusted: the host reads it with
// NewConn (MaxMsg), the guest reads the host with NewConnLimit
// (MaxConfigMsg, for the volumes' files in the configuration).
//
//	c := guestproto.NewConn(sock, sock)
//	c.Send(guestproto.Msg{Op: guestproto.OpHello, Config: &cfg})
//	m, err := c.Recv() // errors.Is(err, guestproto.ErrBadMsg): one line dropped
//
// This package imports no other Vessel package: the static guest binary
// and the host both link it, and neither links the other's side through it.
package guestproto
