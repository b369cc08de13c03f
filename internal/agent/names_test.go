package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/testutil"
)

// controlPlaneNames stands in for the control plane's names route (a
// network edge): a long poll over names the test sets, or an outage.
type controlPlaneNames struct {
	mu      sync.Mutex
	names   agentproto.Names
	down    bool
	changed chan struct{}
	asked   [][2]int64 // after and seen of every call
}

func (c *controlPlaneNames) Names(ctx context.Context, hostID string, after, seen int64) (agentproto.Names, error) {
	for {
		c.mu.Lock()
		c.asked = append(c.asked, [2]int64{after, seen})
		n, down, changed := c.names, c.down, c.changed
		c.mu.Unlock()
		if down {
			return agentproto.Names{}, errdefs.Unavailable("control plane at 192.0.2.1 unreachable")
		}
		if n.Revision != 0 && n.Revision != after {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-changed:
		}
	}
}

func (c *controlPlaneNames) set(n agentproto.Names, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names, c.down = n, down
	close(c.changed)
	c.changed = make(chan struct{})
}

// lastAsked is the after and seen of the last call, and how many calls
// were made.
func (c *controlPlaneNames) lastAsked() ([2]int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked[len(c.asked)-1], len(c.asked)
}

// TestNameFeedServesTheHostsDNS: a host's DNS server answers from its
// NameFeed: nothing (SERVFAIL) before the control plane's first names, a
// service's task once it is named, the same through an outage of the
// control plane, and NXDOMAIN once the task is gone.
func TestNameFeedServesTheHostsDNS(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cp := &controlPlaneNames{changed: make(chan struct{})}
	feed := agent.NewNameFeed(cp, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := discovery.New(discovery.Config{Source: feed, Listen: []string{"127.0.0.1:0"}, Upstreams: []string{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { feed.Run(ctx, "h1"); close(done) }()
	defer func() { cancel(); <-done; d.Wait() }()

	ask := func(name string) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		c := &dns.Client{Timeout: 2 * time.Second}
		in, _, err := c.Exchange(m, d.Addrs()[0])
		return in, err
	}
	answers := func(name string, rcode int, ips ...string) func() error {
		return func() error {
			in, err := ask(name)
			if err != nil {
				return err
			}
			var got []string
			for _, rr := range in.Answer {
				if a, ok := rr.(*dns.A); ok {
					got = append(got, a.A.String())
				}
			}
			if in.Rcode != rcode || fmt.Sprint(got) != fmt.Sprint(ips) {
				return fmt.Errorf("%s: %s %v, want %s %v", name, dns.RcodeToString[in.Rcode], got, dns.RcodeToString[rcode], ips)
			}
			return nil
		}
	}
	if err := answers("web.default.vessel.local.", dns.RcodeServerFailure)(); err != nil {
		t.Fatalf("before the first names: %v", err)
	}

	web := agentproto.Names{Names: discovery.Names{Clusters: []string{"default"}, Records: []discovery.Record{
		{TaskID: "t1", Cluster: "default", Service: "web", IP: netip.MustParseAddr("10.89.0.2"), Serving: true}}},
		Revision: 11, StoreRevision: 100}
	cp.set(web, false)
	testutil.Eventually(t, 10*time.Second, answers("web.default.vessel.local.", dns.RcodeSuccess, "10.89.0.2"))
	testutil.Eventually(t, 10*time.Second, func() error {
		if got, _ := cp.lastAsked(); got != [2]int64{11, 100} {
			return fmt.Errorf("the feed polls after %v, want revision 11, store revision 100", got)
		}
		return nil
	})

	// The control plane is gone: the host answers what it had.
	_, before := cp.lastAsked()
	cp.set(agentproto.Names{}, true)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got, n := cp.lastAsked(); got != [2]int64{11, 100} || n < before+2 {
			return fmt.Errorf("the feed has not retried during the outage (%d calls, the last after %v)", n-before, got)
		}
		return nil
	})
	if err := answers("t1.default.vessel.local.", dns.RcodeSuccess, "10.89.0.2")(); err != nil {
		t.Fatalf("during the outage: %v", err)
	}
	if feed.Revision() != 11 {
		t.Fatalf("the feed holds revision %d during the outage, want 11", feed.Revision())
	}

	// Back, with the task stopped: its names go.
	cp.set(agentproto.Names{Names: discovery.Names{Clusters: []string{"default"}, Records: []discovery.Record{}}, Revision: 12, StoreRevision: 101}, false)
	testutil.Eventually(t, 10*time.Second, answers("web.default.vessel.local.", dns.RcodeNameError))
	testutil.Eventually(t, 10*time.Second, answers("t1.default.vessel.local.", dns.RcodeNameError))
}
