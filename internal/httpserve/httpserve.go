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
// follows, exec) last as long as they need.
func New(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, IdleTimeout: IdleTimeout}
}

// LiftReadDeadline lifts the connection's read deadline before calling
// h: for handlers that run beyond ReadTimeout once the request's body has
// been read (or it has none), such as long polls and streams. Go's server
// would otherwise end them when the deadline passes: it cancels a
// request's context when its background read fails, and a hijacked
// connection keeps the deadline it had.
func LiftReadDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
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
