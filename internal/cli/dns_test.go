package cli

import (
	"net/netip"
	"slices"
	"testing"

	"vessel.dev/vessel/internal/network"
)

func TestDNSPlan(t *testing.T) {
	subnets := []network.Subnet{
		{Name: "a", CIDR: netip.MustParsePrefix("10.89.0.0/16")},
		{Name: "b", CIDR: netip.MustParsePrefix("10.90.0.0/24")},
	}
	tests := []struct {
		name        string
		o           dnsOptions
		listen      []string
		gateway     bool
		nameservers []string
		bad         bool
	}{
		{name: "off", o: dnsOptions{listen: []string{""}}},
		{name: "default", o: dnsOptions{listen: []string{"gateways"}},
			listen: []string{"10.89.0.1:53", "10.90.0.1:53"}, gateway: true},
		{name: "wildcard", o: dnsOptions{listen: []string{"0.0.0.0:53"}}, listen: []string{"0.0.0.0:53"}, gateway: true},
		{name: "both gateways", o: dnsOptions{listen: []string{"10.89.0.1:53", "10.90.0.1:53"}},
			listen: []string{"10.89.0.1:53", "10.90.0.1:53"}, gateway: true},
		{name: "one address", o: dnsOptions{listen: []string{"192.0.2.10:53"}},
			listen: []string{"192.0.2.10:53"}, nameservers: []string{"192.0.2.10"}},
		{name: "another port", o: dnsOptions{listen: []string{"127.0.0.1:5353"}}, listen: []string{"127.0.0.1:5353"}},
		{name: "advertised", o: dnsOptions{listen: []string{"gateways", "192.0.2.10:53"}, advertise: []string{"192.0.2.10"}},
			listen: []string{"10.89.0.1:53", "10.90.0.1:53", "192.0.2.10:53"}, gateway: true, nameservers: []string{"192.0.2.10"}},
		{name: "bad listen", o: dnsOptions{listen: []string{"localhost:53"}}, bad: true},
		{name: "bad advertise", o: dnsOptions{listen: []string{"gateways"}, advertise: []string{"dns"}}, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.o.plan(subnets)
			if tt.bad {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.listen == nil {
				if p != nil || p.taskDNS("default") != nil {
					t.Fatalf("plan %+v, want none", p)
				}
				return
			}
			if !slices.Equal(p.listen, tt.listen) || p.gateway != tt.gateway || !slices.Equal(p.nameservers, tt.nameservers) {
				t.Fatalf("plan listen %v gateway %v nameservers %v", p.listen, p.gateway, p.nameservers)
			}
			// Tasks are told of their own host's DNS server (or those
			// advertised), whether or not this process's listens.
			d := p.taskDNS("Default")
			reachable := tt.gateway || len(tt.nameservers) > 0
			if (d != nil) != reachable {
				t.Fatalf("taskDNS = %+v, want one: %v", d, reachable)
			}
			if d != nil && (!slices.Equal(d.Searches, []string{"default.vessel.local"}) || !slices.Equal(d.Nameservers, tt.nameservers)) {
				t.Fatalf("taskDNS = %+v", d)
			}
			if !p.serverListens(false) || p.serverListens(true) != (tt.name != "default") {
				t.Fatalf("serverListens: with an agent %v, without %v", p.serverListens(false), p.serverListens(true))
			}
			if p.gatewayDNS() {
				t.Fatal("tasks of this host name its gateway before its DNS server listens")
			}
			p.serving.Store(true)
			if p.gatewayDNS() != (tt.gateway && len(tt.nameservers) == 0) {
				t.Fatalf("gatewayDNS = %v", p.gatewayDNS())
			}
		})
	}
}
