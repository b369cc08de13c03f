package server

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// Throttling, as AWS does it, in three places:
//
//   - Requests: a token bucket per access key over the ECS and EKS APIs and
//     Vessel's own user routes (/vessel/v1: logs, exec, the remote
//     Kubernetes bridge). A refused request gets AWS's answer: ECS
//     ThrottlingException "Rate exceeded" (400), EKS ThrottlingException (429)
//     "Too Many Requests" (429), the agent protocol's LimitExceeded (429).
//     The agent protocol of hosts (/agent/v1) is not throttled: agents
//     long-poll and report all the time, and a host falling behind would be
//     taken for lost.
//   - Task launches: one bucket per control plane, counted in tasks, like
//     Fargate's per account and region. RunTask asks for its whole count at
//     once and is refused with ThrottlingException when the bucket holds
//     fewer tokens; the service scheduler launches what the bucket holds and
//     the rest on later passes; the Kubernetes bridge's SubmitTask is
//     refused with a LimitExceeded error and the bridge retries the pod.
//   - Services whose tasks keep failing to start: the service throttle
//     (internal/service), whose state is stored with the service.
//
// Bucket state lives in memory: a restarted control plane starts with full
// buckets, and so does every replica of a replicated one.

// Defaults of `vessel server`. A zero rate in Config means no limit, so that
// programs that embed the control plane opt in.
const (
	// DefaultAPIRate and DefaultAPIBurst are requests per second and burst
	// per access key: about what AWS allows an account across all of ECS's
	// API categories (20 to 40 a second each, bursts of 50 to 100).
	DefaultAPIRate  = 200
	DefaultAPIBurst = 400
	// DefaultLaunchRate and DefaultLaunchBurst are Fargate's task launch
	// rate: a bucket of 100 tasks refilled at 20 a second.
	DefaultLaunchRate  = 20
	DefaultLaunchBurst = 100
)

// RateExceeded is the message of AWS's ThrottlingException.
const RateExceeded = "Rate exceeded"

// errThrottled is a request or launch refused for its rate.
var errThrottled error = &apiError{code: api.ECSThrottlingException, msg: RateExceeded,
	kind: errdefs.LimitExceeded(RateExceeded)}

// bucketIdle is how often idle buckets are dropped.
const bucketIdle = time.Minute

// keyLimiter holds a token bucket per access key.
type keyLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

func newKeyLimiter(perSecond float64, burst int) *keyLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &keyLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// allow takes a token from key's bucket at now and reports whether there
// was one. A nil keyLimiter allows everything.
func (k *keyLimiter) allow(key string, now time.Time) bool {
	if k == nil {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.swept) >= bucketIdle {
		// A full bucket is the same as a new one: dropping it forgets
		// nothing.
		for id, b := range k.buckets {
			if b.TokensAt(now) >= float64(k.burst) {
				delete(k.buckets, id)
			}
		}
		k.swept = now
	}
	b := k.buckets[key]
	if b == nil {
		b = rate.NewLimiter(k.limit, k.burst)
		k.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// size is how many buckets are held.
func (k *keyLimiter) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

// launchBucket counts task launches; nil means no limit.
type launchBucket struct{ lim *rate.Limiter }

func newLaunchBucket(perSecond float64, burst int) *launchBucket {
	if perSecond <= 0 {
		return nil
	}
	return &launchBucket{lim: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))}
}

// take takes n tokens at now, all or none.
func (b *launchBucket) take(n int, now time.Time) bool {
	return b == nil || n <= 0 || b.lim.AllowN(now, n)
}

// available is how many whole tokens the bucket holds at now; -1 without a
// limit.
func (b *launchBucket) available(now time.Time) int {
	if b == nil {
		return -1
	}
	return max(int(b.lim.TokensAt(now)), 0)
}

// throttle is the middleware, after SigV4 verification, that takes a token
// of the signing key's bucket for every request but the agent protocol's.
func (s *Server) throttle(next http.Handler) http.Handler {
	if s.apiLimiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/agent/") {
			next.ServeHTTP(w, r)
			return
		}
		id, _ := auth.IdentityFrom(r.Context())
		if s.apiLimiter.allow(id.AccessKeyID, s.cfg.Now()) {
			next.ServeHTTP(w, r)
			return
		}
		s.metrics.throttled.WithLabelValues("api").Inc()
		switch {
		case r.Header.Get("X-Amz-Target") != "":
			writeJSONError(w, api.ECSThrottlingException, http.StatusBadRequest, api.ECSContentType,
				api.ECSError{Type: api.ECSThrottlingException, Message: RateExceeded})
		case strings.HasPrefix(r.URL.Path, "/vessel/"):
			agentproto.WriteError(w, errdefs.LimitExceeded("%s: access key %s sends more than %g requests a second (burst %d); retry later",
				RateExceeded, id.AccessKeyID, float64(s.apiLimiter.limit), s.apiLimiter.burst))
		default:
			// EKS's model names ThrottlingException with HTTP 429.
			writeJSONError(w, api.EKSThrottlingException, http.StatusTooManyRequests, "application/json",
				api.EKSError{Message: RateExceeded})
		}
	})
}
