package httpserve

import (
	"net/http"
	"time"
)

// The timeouts of New's servers.
const (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included (the API
	// takes bodies of up to 10 MiB).
	ReadTimeout = 60 * time.Second
	// IdleTimeout bounds a keep-alive connection's wait for its next
	// request.
	IdleTimeout = 120 * time.Second
)

// New returns a server for h with ReadHeaderTimeout, ReadTimeout and
// IdleTimeout set. It sets no WriteTimeout: answers that stream (log
// follows, exec) last as long as they need. ReadTimeout bounds reading the
// request only: Go's server lifts the read deadline once the body has been
// read (its background read) and when a handler hijacks the connection,
// so long polls and exec streams outlive it (httpserve_test proves both).
func New(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, IdleTimeout: IdleTimeout}
}

// BodyDeadline sets a read deadline of d from now on the request's
// connection before calling h: ReadTimeout for servers whose http.Server
// Vessel does not build (controller-runtime's webhook server).
func BodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}
