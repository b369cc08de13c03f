package cli

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/store/bolt"
)

func TestParseSubnetOptions(t *testing.T) {
	got, err := parseSubnets([]string{"a=10.89.1.0/24,nat,peer=b,peer=c", "b=10.89.2.0/24"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].NAT || !slices.Equal(got[0].Peers, []string{"b", "c"}) || got[1].NAT || got[1].Peers != nil {
		t.Fatalf("got %+v", got)
	}
	// As the string-slice flag hands them over, split at commas.
	split, err := parseSubnets([]string{"a=10.89.0.0/16", "nat", "peer=b", "slice=/26", "b=10.90.0.0/16", "peer=a"}, false)
	if err != nil || len(split) != 2 || !split[0].NAT || !slices.Equal(split[0].Peers, []string{"b"}) || split[0].SliceBits != 26 ||
		!slices.Equal(split[1].Peers, []string{"a"}) || split[1].SliceBits != 0 {
		t.Fatalf("split flags: %+v %v", split, err)
	}
	for _, tc := range []struct {
		value, want string
	}{
		{"a=10.89.1.0/24,peer=", "unknown option"},
		{"a=10.89.1.0/24,open", "options are nat, peer=SUBNET and slice=/N"},
		{"a=10.89.0.0/16,slice=/8", "from 16 (the whole subnet) to 30"},
		{"a=10.89.0.0/16,slice=/31", "from 16"},
		{"a=10.89.0.0/16,slice=big", "is not accepted"},
		{"a", "use NAME=CIDR"},
	} {
		if _, err := parseSubnets([]string{tc.value}, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.value, err, tc.want)
		}
	}
	// An agent may name a subnet alone.
	named, err := parseSubnets([]string{"a", "b=10.90.0.0/16"}, true)
	if err != nil || len(named) != 2 || named[0].Name != "a" || named[0].CIDR.IsValid() || named[1].CIDR != netip.MustParsePrefix("10.90.0.0/16") {
		t.Fatalf("names: %+v %v", named, err)
	}
	if _, err := parseSubnets([]string{"a,nat"}, true); err == nil {
		t.Error("a name with options accepted")
	}
}

// TestHostSubnets: a host's network gets the subnets it has a slice of,
// with the slice, and peers it serves only; those without a slice are
// named.
func TestHostSubnets(t *testing.T) {
	p := netip.MustParsePrefix
	got, noSlice := hostSubnets(agentproto.HostNetwork{
		Subnets: []agentproto.FleetSubnet{
			{Name: "a", CIDR: p("10.89.0.0/16"), NAT: true, Peers: []string{"b", "c"}},
			{Name: "b", CIDR: p("10.90.0.0/16")},
			{Name: "c", CIDR: p("10.91.0.0/16")},
		},
		Slices: []agentproto.Slice{{Subnet: "a", CIDR: p("10.89.3.0/24")}, {Subnet: "b", CIDR: p("10.90.0.0/24")}},
	})
	if len(got) != 2 || got[0].Name != "a" || got[0].Slice != p("10.89.3.0/24") || !got[0].NAT || !slices.Equal(got[0].Peers, []string{"b"}) ||
		got[1].Name != "b" || got[1].Slice != p("10.90.0.0/24") || !slices.Equal(noSlice, []string{"c"}) {
		t.Fatalf("hostSubnets = %+v, no slice %v", got, noSlice)
	}
}

// TestJoinFleet: a host registers and is told its slices; a host that
// defines a subnet otherwise than the control plane is refused at once,
// the error naming both definitions.
func TestJoinFleet(t *testing.T) {
	st, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "vessel.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, _, err := auth.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := parseSubnets([]string{"subnet-default=10.89.0.0/16,slice=/26"}, false)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Keys: keys, Logger: quiet, Fleet: server.FleetNetwork{Subnets: fleet}})
	if err != nil {
		t.Fatal(err)
	}
	host := agentproto.Host{ID: "h1", MilliCPU: 1000, MemoryMiB: 1024, Runtimes: []string{"runc"}}
	hn, err := joinFleet(t.Context(), srv, host, quiet)
	if err != nil {
		t.Fatal(err)
	}
	own, noSlice := hostSubnets(hn)
	if len(own) != 1 || own[0].Slice != netip.MustParsePrefix("10.89.0.0/26") || len(noSlice) != 0 {
		t.Fatalf("h1's subnets %+v, no slice %v; want subnet-default with slice 10.89.0.0/26", own, noSlice)
	}
	other, err := parseSubnets([]string{"subnet-default=10.200.0.0/24"}, true)
	if err != nil {
		t.Fatal(err)
	}
	host.ID, host.SubnetDefinitions = "h2", other
	_, err = joinFleet(t.Context(), srv, host, quiet)
	if err == nil || !strings.Contains(err.Error(), "subnet-default=10.200.0.0/24") || !strings.Contains(err.Error(), "subnet-default=10.89.0.0/16,slice=/26") {
		t.Fatalf("joining with another definition: %v, want a refusal naming both", err)
	}
}
