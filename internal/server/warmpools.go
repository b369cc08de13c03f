package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/sizing"
	"vessel.dev/vessel/internal/store"
)

// prefixWarmPools holds each host's warm pools as its agent last reported
// them: warmpools/<host id>. They live beside the host's registration, not
// in it, because a change of hosts/ changes every host's network view.
const prefixWarmPools = "warmpools/"

// warmPoolRecord is a host's reported warm pools.
type warmPoolRecord struct {
	HostID     string                `json:"hostId"`
	Pools      []agentproto.WarmPool `json:"pools"`
	ReportedAt time.Time             `json:"reportedAt"`
}

var _ agentproto.WarmPoolReporter = (*Server)(nil)

// ReportWarmPools implements agentproto.WarmPoolReporter: the host's warm
// pools replace what it reported before. Agents send them when they
// change, at most once per heartbeat.
func (s *Server) ReportWarmPools(ctx context.Context, hostID string, pools []agentproto.WarmPool) error {
	if len(pools) > maxWarmPools {
		return errdefs.InvalidArgument("host %s reports %d warm pools; a host has at most %d", hostID, len(pools), maxWarmPools)
	}
	seen := map[string]bool{}
	for _, p := range pools {
		if !runtime.Known(p.Runtime) {
			return errdefs.InvalidArgument("host %s: warm pool of runtime %q: the runtimes are %s", hostID, p.Runtime, strings.Join(runtime.Names, ", "))
		}
		if len(p.Class) > 32 || !validPoolClass(p.Class) {
			return errdefs.InvalidArgument("host %s: warm pool of runtime %s: class %.32q is not VCPU/GB (e.g. 4/8), nor empty for every size", hostID, p.Runtime, p.Class)
		}
		key := p.Runtime + ":" + p.Class
		if seen[key] {
			return errdefs.InvalidArgument("host %s: warm pool of runtime %s and class %q is given twice; give each runtime and class at most once", hostID, p.Runtime, p.Class)
		}
		seen[key] = true
		if p.Target < 0 || p.Ready < 0 || p.Hits < 0 || p.Misses < 0 || p.MemoryMiB < 0 {
			return errdefs.InvalidArgument("host %s: warm pool of runtime %s: counts must not be negative (%+v)", hostID, p.Runtime, p)
		}
		if p.Primed > p.Ready || p.PrimedHits > p.Hits || p.Primed < 0 || p.PrimedHits < 0 {
			return errdefs.InvalidArgument("host %s: warm pool of runtime %s: primed counts must be between 0 and the ready sandboxes and hits (%+v)", hostID, p.Runtime, p)
		}
	}
	if _, err := s.store.Get(ctx, hostKey(hostID)); err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("host %s is not registered", hostID)
		}
		return err
	}
	_, err := putJSON(ctx, s.store, prefixWarmPools+hostID, warmPoolRecord{HostID: hostID, Pools: pools, ReportedAt: s.cfg.Now()}, store.AnyRevision)
	return err
}

// maxWarmPools bounds the pools one host reports: per runtime, its own
// class and one per size of the Fargate table.
var maxWarmPools = len(runtime.Names) * (len(sizing.Table()) + 1)

// validPoolClass reports whether class is empty or VCPU/GB, each a
// positive decimal number.
func validPoolClass(class string) bool {
	if class == "" {
		return true
	}
	c, m, ok := strings.Cut(class, "/")
	for _, n := range []string{c, m} {
		f, err := strconv.ParseFloat(n, 64)
		if err != nil || !(f > 0 && f < 1e6) || strings.ContainsAny(n, "eEnNxX+ ") {
			return false
		}
	}
	return ok
}

// warmPools returns the hosts' reported warm pools by host ID.
func (s *Server) warmPools(ctx context.Context) (map[string][]agentproto.WarmPool, error) {
	recs, _, _, err := listJSON[warmPoolRecord](ctx, s.reads(ctx), prefixWarmPools)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]agentproto.WarmPool, len(recs))
	for _, r := range recs {
		out[r.HostID] = r.Pools
	}
	return out, nil
}

func (s *Server) routeWarmPools(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/hosts/{id}/warm-pools", func(w http.ResponseWriter, r *http.Request) {
		if err := agentCaller(r, r.PathValue("id")); err != nil {
			writeAgent(w, nil, err)
			return
		}
		var pools []agentproto.WarmPool
		if !decodeAgent(w, r, &pools) {
			return
		}
		writeAgent(w, nil, s.ReportWarmPools(r.Context(), r.PathValue("id"), pools))
	})
}

// warmPoolCollector serves the hosts' warm pools on /metrics, from the
// store (any replica shows every host's), per host, runtime and class
// (VCPU/GB, empty for a pool of every size): vessel_warm_pool_size (ready
// warm sandboxes), vessel_warm_pool_target, and the hits and misses each
// host's agent counted since it started (counters: a restart of the
// agent starts them over, which Prometheus's rate() takes as a reset).
type warmPoolCollector struct {
	s                                  *Server
	size, target, memory, hits, misses *prometheus.Desc
	primed, primedHits                 *prometheus.Desc
}

func newWarmPoolCollector(s *Server) *warmPoolCollector {
	l := []string{"host", "runtime", "class"}
	return &warmPoolCollector{s: s,
		size:   prometheus.NewDesc("vessel_warm_pool_size", "Warm sandboxes ready on a host, per runtime.", l, nil),
		target: prometheus.NewDesc("vessel_warm_pool_target", "Warm sandboxes a host's pool is asked to hold (--warm-pool), per runtime.", l, nil),
		memory: prometheus.NewDesc("vessel_warm_pool_memory_mib", "Host memory a host's ready warm sandboxes are counted for, per runtime.", l, nil),
		hits:   prometheus.NewDesc("vessel_warm_pool_hits_total", "Tasks that took a warm sandbox, per host and runtime, since the host's agent started.", l, nil),
		misses: prometheus.NewDesc("vessel_warm_pool_misses_total", "Tasks of a runtime with a warm pool that started cold, per host and runtime, since the host's agent started.", l, nil),
		primed: prometheus.NewDesc("vessel_warm_pool_primed", "Ready warm sandboxes whose containers were created ahead for a task definition, per host and runtime.", l, nil),
		primedHits: prometheus.NewDesc("vessel_warm_pool_primed_hits_total",
			"Tasks that took a warm sandbox primed for their task definition, per host and runtime, since the host's agent started.", l, nil),
	}
}

func (c *warmPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.target, c.memory, c.hits, c.misses, c.primed, c.primedHits} {
		ch <- d
	}
}

func (c *warmPoolCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	byHost, err := c.s.warmPools(ctx)
	if err != nil {
		c.s.log.Warn("metrics: reading the hosts' warm pools failed", "err", err)
		return
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		for _, p := range byHost[h] {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(p.Ready), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.target, prometheus.GaugeValue, float64(p.Target), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(p.MemoryMiB), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(p.Hits), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(p.Misses), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.primed, prometheus.GaugeValue, float64(p.Primed), h, p.Runtime, p.Class)
			ch <- prometheus.MustNewConstMetric(c.primedHits, prometheus.CounterValue, float64(p.PrimedHits), h, p.Runtime, p.Class)
		}
	}
}
