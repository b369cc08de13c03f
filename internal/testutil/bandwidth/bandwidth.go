package bandwidth

import (
	"context"
	"net/http"

	"golang.org/x/time/rate"
)

// chunk is the most a limited answer writes at once.
const chunk = 32 << 10

// Limit is a bandwidth limit shared by the answers it wraps.
type Limit struct {
	lim *rate.Limiter
}

// New returns a limit of bytesPerSecond, which must be positive.
func New(bytesPerSecond int) *Limit {
	return &Limit{lim: rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)}
}

// Handler wraps h so that its answers to the requests match accepts (all,
// if match is nil) are sent through the limit.
func (l *Limit) Handler(h http.Handler, match func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if match == nil || match(r) {
			w = &writer{ResponseWriter: w, ctx: r.Context(), lim: l.lim}
		}
		h.ServeHTTP(w, r)
	})
}

// writer sends through the limit. It hides the ResponseWriter's other
// methods (ReaderFrom), so that every byte goes through Write.
type writer struct {
	http.ResponseWriter
	ctx context.Context
	lim *rate.Limiter
}

func (w *writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), chunk)
		if err := w.lim.WaitN(w.ctx, c); err != nil {
			return n, err
		}
		m, err := w.ResponseWriter.Write(p[:c])
		n += m
		if err != nil {
			return n, err
		}
		p = p[c:]
	}
	return n, nil
}
