package discovery

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// heldUpstream answers only when release is closed; arrived counts the
// queries that reached it.
func heldUpstream(t *testing.T) (addr string, arrived chan string, release chan struct{}) {
	t.Helper()
	arrived, release = make(chan string, 64), make(chan struct{})
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		arrived <- r.Question[0].Name
		<-release
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		srv.Shutdown()
	})
	return pc.LocalAddr().String(), arrived, release
}

func exchangeFrom(t *testing.T, s *Server, src, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 10 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	in, _, err := c.Exchange(m, s.Addrs()[0])
	if err != nil {
		t.Fatalf("%s from %s: %v", name, src, err)
	}
	return in
}

func TestForwardInFlightCap(t *testing.T) {
	up, arrived, release := heldUpstream(t)
	s := startServer(t, Config{Source: newFakeSource(), Upstreams: []string{up},
		ForwardTimeout: 10 * time.Second, MaxInFlight: 2})
	var wg sync.WaitGroup
	rcodes := make(chan int, 2)
	for _, n := range []string{"one.example", "two.example"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcodes <- exchangeFrom(t, s, "127.0.0.1", n).Rcode
		}()
	}
	<-arrived
	<-arrived
	// Two queries are with the upstream: the third is turned away at once.
	if m := exchangeFrom(t, s, "127.0.0.1", "three.example"); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("third query while two are in flight: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	close(release)
	wg.Wait()
	close(rcodes)
	for rc := range rcodes {
		if rc != dns.RcodeSuccess {
			t.Errorf("a query in flight got %s", dns.RcodeToString[rc])
		}
	}
	select {
	case n := <-arrived:
		t.Errorf("%s reached the upstream past the cap", n)
	default:
	}
	// Room again once they are answered.
	if m := exchangeFrom(t, s, "127.0.0.1", "four.example"); m.Rcode != dns.RcodeSuccess {
		t.Errorf("a query after the others finished: %s", dns.RcodeToString[m.Rcode])
	}
}

func TestForwardRateLimitPerSource(t *testing.T) {
	up, asked := upstream(t)
	// Three at once, then one every 100 s: the test never waits that long.
	s := startServer(t, Config{Source: newFakeSource(), Upstreams: []string{up},
		ForwardRate: 0.01, ForwardBurst: 3})
	for i := range 3 {
		if m := exchangeFrom(t, s, "127.0.0.1", "example.com"); m.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d within the burst: %s", i, dns.RcodeToString[m.Rcode])
		}
	}
	if m := exchangeFrom(t, s, "127.0.0.1", "example.com"); m.Rcode != dns.RcodeRefused {
		t.Errorf("query past the burst: %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}
	if asked() != 3 {
		t.Errorf("upstream asked %d times, want 3", asked())
	}
	// Another source has its own budget; names of the domain are answered
	// whatever the budget.
	if m := exchangeFrom(t, s, "127.0.0.2", "example.com"); m.Rcode != dns.RcodeSuccess {
		t.Errorf("another source: %s", dns.RcodeToString[m.Rcode])
	}
	if m := exchangeFrom(t, s, "127.0.0.1", "x.default.vessel.local"); m.Rcode != dns.RcodeNameError {
		t.Errorf("a name of the domain from a limited source: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}
