package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testutil"
)

// TestWarmPoolsReported: a host's agent with a sim warm pool reports it;
// the host's record (Hosts, DescribeHost) and /metrics show its size,
// hits and misses, per host and runtime.
func TestWarmPoolsReported(t *testing.T) {
	e := newEnv(t, envOptions{warmPool: 2})
	pool := func() (agentproto.WarmPool, error) {
		hs, err := e.srv.Hosts(context.Background())
		if err != nil {
			return agentproto.WarmPool{}, err
		}
		for _, h := range hs {
			if h.ID == "h1" && len(h.WarmPools) == 1 {
				return h.WarmPools[0], nil
			}
		}
		return agentproto.WarmPool{}, fmt.Errorf("host h1 reports no warm pool: %+v", hs)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		p, err := pool()
		if err == nil && (p.Runtime != "sim" || p.Target != 2 || p.Ready != 2) {
			err = fmt.Errorf("pool %+v; want sim 2/2", p)
		}
		return err
	})
	arn := e.run(e.register("warm", "256", "512", "sleep", "1000"))
	e.waitStatus(arn, "RUNNING")
	testutil.Eventually(t, 10*time.Second, func() error {
		p, err := pool()
		if err == nil && (p.Hits != 1 || p.Misses != 0 || p.Ready != 2) {
			err = fmt.Errorf("pool %+v; want 1 hit, refilled to 2", p)
		}
		return err
	})
	for name, want := range map[string]string{
		`vessel_warm_pool_size{class="",host="h1",runtime="sim"}`:         "2",
		`vessel_warm_pool_target{class="",host="h1",runtime="sim"}`:       "2",
		`vessel_warm_pool_hits_total{class="",host="h1",runtime="sim"}`:   "1",
		`vessel_warm_pool_misses_total{class="",host="h1",runtime="sim"}`: "0",
	} {
		if l := metricLine(t, e.url, name); l != name+" "+want {
			t.Errorf("/metrics: %q; want %q", l, name+" "+want)
		}
	}
	d, err := e.srv.DescribeHost(context.Background(), "h1")
	if err != nil || len(d.WarmPools) != 1 || d.WarmPools[0].Hits != 1 {
		t.Errorf("DescribeHost: %+v, %v; want the sim pool with 1 hit", d.WarmPools, err)
	}
}

func TestReportWarmPoolsRefused(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := context.Background()
	if err := e.srv.ReportWarmPools(c, "nobody", nil); !errdefs.IsNotFound(err) {
		t.Errorf("pools of an unregistered host: %v; want ErrNotFound", err)
	}
	if err := e.srv.RegisterHost(c, agentproto.Host{ID: "h2", MilliCPU: 1000, MemoryMiB: 1024, Runtimes: []string{"sim"}}); err != nil {
		t.Fatal(err)
	}
	for _, ps := range [][]agentproto.WarmPool{
		{{Runtime: "nosuch", Target: 1}},
		{{Runtime: "sim", Target: 1}, {Runtime: "sim", Target: 2}},
		{{Runtime: "sim", Target: -1}},
		{{Runtime: "sim", Class: "2/4", Target: 1}, {Runtime: "sim", Class: "2/4", Target: 2}},
		{{Runtime: "sim", Class: "2", Target: 1}},
		{{Runtime: "sim", Class: "x/4", Target: 1}},
		{{Runtime: "sim", Class: "-2/4", Target: 1}},
		{{Runtime: "sim", Class: strings.Repeat("1", 40) + "/4", Target: 1}},
		{{Runtime: "runc", Target: 2, Ready: 1, Primed: 2}},
		{{Runtime: "runc", Target: 2, Ready: 2, Hits: 1, PrimedHits: 2}},
		{{Runtime: "runc", Target: 2, Ready: 2, Primed: -1}},
	} {
		if err := e.srv.ReportWarmPools(c, "h2", ps); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "h2") {
			t.Errorf("ReportWarmPools(%+v) = %v; want an invalid argument", ps, err)
		}
	}
	// One pool per runtime and class.
	ok := []agentproto.WarmPool{{Runtime: "sim", Target: 1}, {Runtime: "sim", Class: "2/4", Target: 1}, {Runtime: "sim", Class: "0.25/0.5", Target: 1},
		{Runtime: "runc", Target: 2, Ready: 2, Hits: 3, Primed: 1, PrimedHits: 2}}
	if err := e.srv.ReportWarmPools(c, "h2", ok); err != nil {
		t.Errorf("ReportWarmPools(%+v) = %v; want it taken", ok, err)
	}
}
