// Package awsclient holds what Vessel's own AWS SDK clients (the vessel
// CLI's and the tests') share: an HTTP client that sends each request's
// body from memory.
//
// Why: the SDK (smithy-go) closes a request's body as soon as the HTTP
// client's Do returns, which is when the response's headers have arrived.
// net/http's connection writer may at that moment still be reading the
// body (after writing Content-Length bytes it reads once more to check
// that nothing is left); the SDK's closed body then answers io.EOF as an
// error, and net/http closes the connection under the response whose body
// the SDK is about to read. The SDK reports "https response error
// StatusCode: 200 ... deserialization failed, read tcp ...: use of closed
// network connection" and counts it as retryable, so a RunTask that Vessel
// carried out is sent again. Under load (the writer goroutine scheduled
// late) this happened now and then in the server's and the end-to-end
// tests. With the body in memory as a *bytes.Reader net/http writes the
// request in one piece and never reads the SDK's body after Do returns.
package awsclient
