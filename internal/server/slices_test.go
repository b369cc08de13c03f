package server_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/testutil"
)

// fleetConfig defines subnet-a (10.89.0.0/22, slices /24: four of them) and
// subnet-b (10.90.0.0/16).
func fleetConfig(c *server.Config) {
	c.Fleet = server.FleetNetwork{Subnets: []agentproto.FleetSubnet{
		{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/22"), SliceBits: 24},
		{Name: "subnet-b", CIDR: netip.MustParsePrefix("10.90.0.0/16"), NAT: true},
	}}
}

// runcHost is a host whose tasks take addresses, serving subnet-a.
func runcHost(id string) agentproto.Host {
	return agentproto.Host{ID: id, MilliCPU: 2000, MemoryMiB: 4096, Runtimes: []string{"runc"}, Subnets: []string{"subnet-a"},
		Address: netip.MustParseAddr("198.19.0.10")}
}

func sliceOf(t *testing.T, src agentproto.NetworkSource, hostID, subnet string) (netip.Prefix, bool) {
	t.Helper()
	hn, err := src.HostNetwork(ctx(t), hostID, 0)
	if err != nil {
		t.Fatalf("HostNetwork(%s): %v", hostID, err)
	}
	for _, s := range hn.Slices {
		if s.Subnet == subnet {
			return s.CIDR, true
		}
	}
	return netip.Prefix{}, false
}

// TestHostSlices: each host serving a subnet gets a slice of its own, kept
// across re-registration and a restart of the control plane; a host beyond
// the subnet's slices registers with none; a simulated host gets none; a
// slice is released only once its host is removed and its tasks are gone,
// and then goes to another host.
func TestHostSlices(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, fleetConfig)
	c := ctx(t)
	got := map[netip.Prefix]string{}
	for i := range 4 {
		id := fmt.Sprintf("h%d", i)
		if err := e.srv.RegisterHost(c, runcHost(id)); err != nil {
			t.Fatal(err)
		}
		p, ok := sliceOf(t, e.srv, id, "subnet-a")
		if !ok || p.Bits() != 24 || !netip.MustParsePrefix("10.89.0.0/22").Contains(p.Addr()) {
			t.Fatalf("host %s: slice %v %v, want a /24 of 10.89.0.0/22", id, p, ok)
		}
		if other, dup := got[p]; dup {
			t.Fatalf("slice %s given to %s and %s", p, other, id)
		}
		got[p] = id
	}
	// Re-registering keeps the slice.
	h0, _ := sliceOf(t, e.srv, "h0", "subnet-a")
	if err := e.srv.RegisterHost(c, runcHost("h0")); err != nil {
		t.Fatal(err)
	}
	if again, _ := sliceOf(t, e.srv, "h0", "subnet-a"); again != h0 {
		t.Fatalf("re-registered h0 has slice %s, had %s", again, h0)
	}
	// No slice left: the host registers and serves no address there.
	if err := e.srv.RegisterHost(c, runcHost("h4")); err != nil {
		t.Fatalf("a host beyond the slices must still register: %v", err)
	}
	if p, ok := sliceOf(t, e.srv, "h4", "subnet-a"); ok {
		t.Fatalf("h4 got slice %s, but every slice is held", p)
	}
	// A simulated host takes no slice.
	sim := runcHost("sim-host")
	sim.Runtimes = []string{"sim"}
	if err := e.srv.RegisterHost(c, sim); err != nil {
		t.Fatal(err)
	}
	if hn, err := e.srv.HostNetwork(c, "sim-host", 0); err != nil || len(hn.Slices) != 0 {
		t.Fatalf("simulated host: %+v %v, want no slice", hn.Slices, err)
	}

	// The view: subnets served, slices, peers with their addresses.
	hn, err := e.srv.HostNetwork(c, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if hn.Backend != agentproto.BackendVXLAN || hn.VNI != server.DefaultVNI || hn.Port != server.DefaultVXLANPort || len(hn.Subnets) != 1 ||
		hn.Subnets[0].Name != "subnet-a" || hn.Subnets[0].SliceBits != 24 || len(hn.Peers) != 3 || hn.Revision <= 0 {
		t.Fatalf("HostNetwork(h1) = %+v", hn)
	}
	for _, p := range hn.Peers {
		if p.HostID == "h1" || p.Address != netip.MustParseAddr("198.19.0.10") || len(p.Slices) != 1 || got[p.Slices[0].CIDR] != p.HostID {
			t.Errorf("peer %+v", p)
		}
	}
	if _, err := e.srv.HostNetwork(c, "nobody", 0); !errdefs.IsNotFound(err) {
		t.Errorf("HostNetwork of an unknown host: %v, want not found", err)
	}

	// A new control plane on the same store: the same slices.
	srv2, err := server.New(server.Config{Store: e.st, Keys: []auth.Key{e.key}, Logger: quietLogger(), Fleet: fleetSubnets()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.RegisterHost(c, runcHost("h0")); err != nil {
		t.Fatal(err)
	}
	if again, _ := sliceOf(t, srv2, "h0", "subnet-a"); again != h0 {
		t.Fatalf("after a restart h0 has slice %s, had %s", again, h0)
	}
	// The revision is the view's: the same on every control plane, and
	// unchanged by a registration that changes nothing of it.
	v1, err1 := e.srv.HostNetwork(c, "h1", 0)
	v2, err2 := srv2.HostNetwork(c, "h1", 0)
	if err1 != nil || err2 != nil || v1.Revision != v2.Revision {
		t.Fatalf("two control planes give h1's view revisions %d and %d (%v %v)", v1.Revision, v2.Revision, err1, err2)
	}
	if err := srv2.RegisterHost(c, runcHost("h3")); err != nil {
		t.Fatal(err)
	}
	if v3, err := e.srv.HostNetwork(c, "h1", 0); err != nil || v3.Revision != v1.Revision {
		t.Fatalf("h3 registering again changed h1's revision from %d to %d (%v)", v1.Revision, v3.Revision, err)
	}

	// Release: refused while the host is registered, then after its
	// removal the slice goes to the host that had none.
	if err := e.srv.ReleaseHostSlices(c, "h2"); !errdefs.IsConflict(err) {
		t.Fatalf("releasing a registered host's slices: %v, want conflict", err)
	}
	h2, _ := sliceOf(t, e.srv, "h2", "subnet-a")
	if err := e.st.Delete(c, "hosts/h2", store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.ReleaseHostSlices(c, "h2"); err != nil {
		t.Fatalf("releasing a removed host's slices: %v", err)
	}
	if err := e.srv.ReleaseHostSlices(c, "h2"); err != nil {
		t.Fatalf("releasing again: %v", err)
	}
	if err := e.srv.RegisterHost(c, runcHost("h4")); err != nil {
		t.Fatal(err)
	}
	if p, ok := sliceOf(t, e.srv, "h4", "subnet-a"); !ok || p != h2 {
		t.Fatalf("h4 got %s %v, want the released %s", p, ok, h2)
	}
}

func fleetSubnets() server.FleetNetwork {
	var c server.Config
	fleetConfig(&c)
	return c.Fleet
}

// TestSlicesNeverHandedOutTwice: two control planes on one store register
// hosts at once; every host gets a slice of its own (the records are
// created only if absent).
func TestSlicesNeverHandedOutTwice(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, func(c *server.Config) {
		c.Fleet = server.FleetNetwork{Subnets: []agentproto.FleetSubnet{{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/20"), SliceBits: 26}}}
	})
	srv2, err := server.New(server.Config{Store: e.st, Keys: []auth.Key{e.key}, Logger: quietLogger(),
		Fleet: server.FleetNetwork{Subnets: []agentproto.FleetSubnet{{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/20"), SliceBits: 26}}}})
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*server.Server{e.srv, srv2}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each host registers through both replicas at once.
			id := fmt.Sprintf("host-%02d", i/2)
			errs <- replicas[i%2].RegisterHost(context.Background(), runcHost(id))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[netip.Prefix]string{}
	for i := range 20 {
		id := fmt.Sprintf("host-%02d", i)
		hn, err := srv2.HostNetwork(ctx(t), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(hn.Slices) != 1 {
			t.Fatalf("host %s holds %d slices of subnet-a, want 1: %+v", id, len(hn.Slices), hn.Slices)
		}
		p := hn.Slices[0].CIDR
		for q, other := range seen {
			if q.Overlaps(p) {
				t.Fatalf("slices %s (%s) and %s (%s) overlap", q, other, p, id)
			}
		}
		seen[p] = id
	}
}

// TestHostSubnetDefinitions: a host may name the fleet's subnets, or give
// their definitions when they are the control plane's; another definition,
// or a subnet the fleet lacks, is refused naming both.
func TestHostSubnetDefinitions(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, fleetConfig)
	c := ctx(t)
	def := func(d agentproto.FleetSubnet) agentproto.Host {
		h := runcHost("h-def")
		h.Subnets = []string{d.Name}
		h.SubnetDefinitions = []agentproto.FleetSubnet{d}
		return h
	}
	if err := e.srv.RegisterHost(c, def(agentproto.FleetSubnet{Name: "subnet-b", CIDR: netip.MustParsePrefix("10.90.0.0/16"), NAT: true})); err != nil {
		t.Fatalf("the fleet's own definition: %v", err)
	}
	for _, tc := range []struct {
		name string
		h    agentproto.Host
		want []string
	}{
		{"another CIDR", def(agentproto.FleetSubnet{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.200.0.0/24")}),
			[]string{"subnet-a=10.200.0.0/24", "subnet-a=10.89.0.0/22,slice=/24", "--subnet subnet-a alone"}},
		{"without nat", def(agentproto.FleetSubnet{Name: "subnet-b", CIDR: netip.MustParsePrefix("10.90.0.0/16")}),
			[]string{"subnet-b=10.90.0.0/16,nat"}},
		{"another slice", def(agentproto.FleetSubnet{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/22"), SliceBits: 26}),
			[]string{"slice=/26", "slice=/24"}},
		{"unknown subnet", func() agentproto.Host { h := runcHost("h-def"); h.Subnets = []string{"subnet-x"}; return h }(),
			[]string{`"subnet-x"`, "subnet-a, subnet-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.srv.RegisterHost(c, tc.h)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("got %v, want invalid argument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}

// TestHostNetworkLongPoll: a poll with the current revision waits until a
// host's records change, over HTTP as in process.
func TestHostNetworkLongPoll(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true}, fleetConfig)
	c := ctx(t)
	if err := e.srv.RegisterHost(c, runcHost("h0")); err != nil {
		t.Fatal(err)
	}
	client, err := agentproto.NewClient(e.url, e.key, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	first, err := client.HostNetwork(c, "h0", 0)
	if err != nil || len(first.Slices) != 1 || len(first.Peers) != 0 {
		t.Fatalf("first answer %+v %v", first, err)
	}
	// Unchanged: a short poll returns the same view and revision.
	short, cancel := context.WithTimeout(c, 300*time.Millisecond)
	same, err := e.srv.HostNetwork(short, "h0", first.Revision)
	cancel()
	if err != nil || same.Revision != first.Revision || len(same.Peers) != 0 {
		t.Fatalf("unchanged poll: %+v %v", same, err)
	}
	// A poll from the first revision answers once h1 registers (as many
	// times as its records change), each answer with a new revision.
	next := make(chan agentproto.HostNetwork, 1)
	go func() {
		rev := first.Revision
		for {
			hn, err := client.HostNetwork(c, "h0", rev)
			if err != nil {
				t.Error(err)
				next <- hn
				return
			}
			if hn.Revision == rev {
				continue // the poll ran out
			}
			rev = hn.Revision
			if len(hn.Peers) > 0 {
				next <- hn
				return
			}
		}
	}()
	if err := e.srv.RegisterHost(c, runcHost("h1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 40*time.Second, func() error {
		select {
		case hn := <-next:
			if hn.Revision == first.Revision || len(hn.Peers) != 1 || hn.Peers[0].HostID != "h1" || len(hn.Peers[0].Slices) != 1 {
				t.Fatalf("after h1 registered: %+v", hn)
			}
			return nil
		default:
			return fmt.Errorf("the long poll has not answered with h1")
		}
	})
}

// TestTaskWaitsForAnAddress: a host whose slice is full takes no more
// tasks: the next one waits PENDING and, past the pending timeout, stops
// with RESOURCE:ENI naming the subnet.
func TestTaskWaitsForAnAddress(t *testing.T) {
	e := newEnvWith(t, envOptions{noAgent: true, pendingTimeout: 3 * time.Second}, func(c *server.Config) {
		// One /29 slice: 6 addresses, 5 of them for tasks (the gateway's
		// slice).
		c.Fleet = server.FleetNetwork{Subnets: []agentproto.FleetSubnet{{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.0.0/29")}}}
	})
	if err := e.srv.RegisterHost(ctx(t), runcHost("h0")); err != nil {
		t.Fatal(err)
	}
	def := e.register("addr", "256", "512", "sleep", "60")
	var arns []string
	for range 6 {
		arns = append(arns, e.run(def))
	}
	var stopped []string
	testutil.Eventually(t, 30*time.Second, func() error {
		stopped = nil
		for _, arn := range arns {
			if tk := e.describe(arn); tk.StoppedReason != nil {
				stopped = append(stopped, *tk.StoppedReason)
			}
		}
		if len(stopped) == 0 {
			return fmt.Errorf("no task stopped yet")
		}
		return nil
	})
	if len(stopped) != 1 || !strings.Contains(stopped[0], "RESOURCE:ENI") || !strings.Contains(stopped[0], `"subnet-a"`) {
		t.Fatalf("stopped: %q; want one task, with RESOURCE:ENI naming subnet-a (5 addresses for 6 tasks)", stopped)
	}
}
