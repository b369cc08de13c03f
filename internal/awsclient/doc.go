// Package awsclient holds what Vessel's own AWS SDK clients (the vessel
// CLI's, the tests' and the chaos run's) share: an HTTP client that sends
// each request's body from memory.
//
// Why: the SDK closes a request's body as soon as the response's headers
// arrive, while net/http's connection writer may still read it once more;
// the closed body's error then makes net/http close the connection under
// the response ("deserialization failed, read tcp ...: use of closed
// network connection"), and the SDK retries a call the server carried out
// (a RunTask sent twice). With the body in memory net/http writes the request
// in one piece and never reads the SDK's body after Do returns.
//
// It imports nothing of Vessel's.
//
//	cfg.HTTPClient = awsclient.HTTPClient(nil)
//	client := ecs.NewFromConfig(cfg)
package awsclient
