// Package guestprototest holds what the tests of both ends of the guest
// protocol share: streams a guest sends, real and hostile, the seeds of
// the fuzz targets that read a guest (guestproto's FuzzConn, the
// monitor's FuzzMonitor). It imports only guestproto; only tests import it.
//
//	for _, s := range guestprototest.Streams() {
//		f.Add([]byte(s))
//	}
package guestprototest
