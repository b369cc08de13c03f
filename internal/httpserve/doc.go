// Package httpserve gives every HTTP server of Vessel the same timeouts:
// the API, the agents' endpoints and the Kubernetes bridge's kubelet API
// and webhooks. A slow client cannot hold a connection by trickling its
// headers (ReadHeaderTimeout), its body (ReadTimeout) or by idling between
// requests (IdleTimeout). Handlers that outlive ReadTimeout once the
// request is read (long polls, log follows, exec streams on hijacked
// connections) keep running: Go's server lifts the read deadline then.
//
// It imports nothing of Vessel.
//
//	srv := httpserve.New(handler) // then srv.Serve(ln) or srv.ServeTLS(ln, "", "")
package httpserve
