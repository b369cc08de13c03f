package network

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFleetPaths measures TCP throughput and round-trip latency
// between two tasks on two hosts (VXLAN, then host-gw), next to two tasks
// on one host and the two hosts' namespaces directly, in one run; it
// prints the ratios to the direct path. Run it alone:
//
//	go test -run x -bench FleetPaths -benchtime 1x ./internal/network/
//
// The machine is shared, so the paths take turns over VESSEL_BENCH_ROUNDS
// (5) rounds and each figure is the median of its rounds.
// VESSEL_BENCH_MB (64) is what each throughput run sends,
// VESSEL_BENCH_RTTS (2000) the round trips of each latency run.
func BenchmarkFleetPaths(b *testing.B) {
	mb, _ := strconv.Atoi(os.Getenv("VESSEL_BENCH_MB"))
	if mb <= 0 {
		mb = 64
	}
	rounds, _ := strconv.Atoi(os.Getenv("VESSEL_BENCH_ROUNDS"))
	if rounds <= 0 {
		rounds = 5
	}
	rtts, _ := strconv.Atoi(os.Getenv("VESSEL_BENCH_RTTS"))
	if rtts <= 0 {
		rtts = 2000
	}
	f := newTestFleet(b, 2)
	h1, h2 := f.hosts[0], f.hosts[1]
	f.setFleet(FleetVXLAN)
	a1 := h1.attach(b, "a1", fleetA.Name)
	a1b := h1.attach(b, "a1b", fleetA.Name)
	a2 := h2.attach(b, "a2", fleetA.Name)

	type path struct {
		name     string
		from     string
		to       string // namespace
		toIP     netip.Addr
		backend  string
		mbps, us []float64
	}
	paths := []*path{
		{name: "hosts directly", from: h1.ns, to: h2.ns, toIP: h2.addr},
		{name: "tasks on one host", from: a1.NetNSPath, to: a1b.NetNSPath, toIP: a1b.IP},
		{name: "tasks across hosts, VXLAN", from: a1.NetNSPath, to: a2.NetNSPath, toIP: a2.IP, backend: FleetVXLAN},
		{name: "tasks across hosts, host-gw", from: a1.NetNSPath, to: a2.NetNSPath, toIP: a2.IP, backend: FleetHostGW},
	}
	b.ResetTimer()
	for range b.N * rounds {
		for _, p := range paths {
			if p.backend != "" {
				f.setFleet(p.backend)
			}
			start := time.Now()
			if err := sendTCP(p.from, echoTCP(b, p.to, p.toIP), int64(mb)<<20); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.mbps = append(p.mbps, float64(mb)/time.Since(start).Seconds())
			d, err := pingPong(p.from, pingServer(b, p.to, p.toIP), rtts)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.us = append(p.us, float64(d.Microseconds())/float64(rtts))
		}
	}
	b.StopTimer()
	dMBps, dUs := median(paths[0].mbps), median(paths[0].us)
	b.Logf("%d MB per throughput run, %d round trips per latency run, median of %d rounds", mb, rtts, len(paths[0].mbps))
	b.Logf("%-28s %10s %8s %10s %8s", "path", "MB/s", "÷direct", "RTT µs", "÷direct")
	for _, p := range paths {
		b.Logf("%-28s %10.0f %8.2f %10.1f %8.2f", p.name, median(p.mbps), median(p.mbps)/dMBps, median(p.us), median(p.us)/dUs)
	}
	b.ReportMetric(median(paths[2].mbps)/dMBps, "vxlan-throughput/direct")
	b.ReportMetric(median(paths[2].us)/dUs, "vxlan-rtt/direct")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// pingServer echoes every byte it reads, on a TCP listener in ns.
func pingServer(tb testing.TB, ns string, ip netip.Addr) netip.AddrPort {
	tb.Helper()
	return serveTCP(tb, ns, ip, func(c net.Conn) { io.Copy(c, c) })
}

// pingPong makes n one-byte round trips to addr from ns.
func pingPong(ns string, addr netip.AddrPort, n int) (time.Duration, error) {
	var d time.Duration
	err := inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		buf := []byte{0}
		start := time.Now()
		for range n {
			if _, err := c.Write(buf); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return fmt.Errorf("round trip: %w", err)
			}
		}
		d = time.Since(start)
		return nil
	})
	return d, err
}
