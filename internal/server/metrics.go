package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"vessel.dev/vessel/internal/task"
)

// metrics are the control plane's Prometheus metrics, on a registry of
// their own so that several servers can live in one test process.
type metrics struct {
	reg              *prometheus.Registry
	tasksByStatus    *prometheus.GaugeVec
	tasksLaunched    prometheus.Counter
	placements       prometheus.Counter
	schedulerSeconds prometheus.Histogram
	apiSeconds       *prometheus.HistogramVec
	authFailures     *prometheus.CounterVec
	throttled        *prometheus.CounterVec
	leader           prometheus.Gauge
	leaderChanges    prometheus.Counter
	storeSeconds     *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		tasksByStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vessel_tasks",
			Help: "Tasks by last status, as of the controller's latest pass."}, []string{"status"}),
		tasksLaunched: prometheus.NewCounter(prometheus.CounterOpts{Name: "vessel_tasks_launched_total",
			Help: "Tasks created by RunTask."}),
		placements: prometheus.NewCounter(prometheus.CounterOpts{Name: "vessel_placements_total",
			Help: "Tasks placed on a host."}),
		schedulerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vessel_scheduler_duration_seconds",
			Help: "Time the scheduler takes per plan.", Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10)}),
		apiSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vessel_api_request_duration_seconds",
			Help: "API latency by operation and HTTP status.", Buckets: prometheus.DefBuckets}, []string{"operation", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vessel_auth_failures_total",
			Help: "Requests refused by SigV4 verification, by error code."}, []string{"code"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vessel_throttled_total",
			Help: "Requests and task launches refused or deferred for their rate: api (per access key), launch (RunTask, bridge), service_launch (the service scheduler)."}, []string{"kind"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vessel_leader",
			Help: "1 while this replica leads (runs the controllers), else 0."}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "vessel_leadership_changes_total",
			Help: "Terms of leadership this replica began."}),
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vessel_store_request_duration_seconds",
			Help: "Store latency by operation (get, list, put, delete, watch) and result (ok, error).", Buckets: prometheus.ExponentialBuckets(1e-4, 4, 9)},
			[]string{"operation", "result"}),
	}
	m.reg.MustRegister(m.tasksByStatus, m.tasksLaunched, m.placements, m.schedulerSeconds, m.apiSeconds,
		m.authFailures, m.throttled, m.leader, m.leaderChanges, m.storeSeconds, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range task.Lifecycle {
		m.tasksByStatus.WithLabelValues(string(s))
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) setTaskCounts(counts map[task.Status]int) {
	for _, s := range task.Lifecycle {
		m.tasksByStatus.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// observeTask is a hook for per-change accounting; counts are refreshed by
// the controller's pass.
func (m *metrics) observeTask(*task.Task) {}

type opKey struct{}

// opHolder lets a handler name the operation for the latency metric.
type opHolder struct{ name string }

type statusWriter struct {
	http.ResponseWriter
	code int
	op   *opHolder
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Hijack lets an exec take its connection over (an upgrade to SPDY).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metrics) setOperation(r *http.Request, name string) {
	if w, ok := r.Context().Value(opKey{}).(*opHolder); ok {
		w.name = name
	}
}

// instrument records the latency of every request by operation.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		op := &opHolder{name: "other"}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK, op: op}
		next.ServeHTTP(sw, r.WithContext(contextWithOp(r, op)))
		if r.URL.Path == "/metrics" || r.URL.Path == "/healthz" {
			op.name = r.URL.Path
		}
		m.apiSeconds.WithLabelValues(op.name, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

func contextWithOp(r *http.Request, op *opHolder) context.Context {
	return context.WithValue(r.Context(), opKey{}, op)
}
