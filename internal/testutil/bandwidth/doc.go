// Package bandwidth limits what a test's HTTP server sends, to stand in for
// a network: one Limit is shared by every connection it wraps, so that
// parallel downloads get no more than the limit in all. Only _test.go
// files import it; it imports golang.org/x/time/rate besides the
// standard library.
//
//	bw := bandwidth.New(100 << 20) // 100 MiB/s
//	srv := httptest.NewServer(bw.Handler(registry.New(), func(r *http.Request) bool {
//		return strings.Contains(r.URL.Path, "/blobs/")
//	}))
package bandwidth
