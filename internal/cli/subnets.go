package cli

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/network"
)

// DefaultSubnet is the private subnet tasks use when they name none.
const DefaultSubnet = "subnet-default=10.89.0.0/16"

// parseSubnets reads --subnet values: NAME=CIDR, with ",nat" to masquerade
// the subnet's outbound traffic (subnets are private by default),
// ",peer=OTHER" (repeatable) to let its tasks and OTHER's reach each other
// (tasks of different subnets are cut off by default) and ",slice=/N" for
// the size of each host's share of it (SliceBits 0 when not given: the
// control plane's default). With names, a value may be a NAME alone (an
// agent taking the control plane's definition): its CIDR is then invalid.
func parseSubnets(values []string, names bool) ([]agentproto.FleetSubnet, error) {
	// The flag is a string slice, which splits "a=CIDR,nat" at commas:
	// options standing alone belong to the subnet before them.
	var joined []string
	for _, v := range values {
		if len(joined) > 0 && (v == "nat" || strings.HasPrefix(v, "peer=") || strings.HasPrefix(v, "slice=")) {
			joined[len(joined)-1] += "," + v
			continue
		}
		joined = append(joined, v)
	}
	var out []agentproto.FleetSubnet
	for _, v := range joined {
		spec, opts, _ := strings.Cut(v, ",")
		name, cidr, ok := strings.Cut(spec, "=")
		if names && !ok && name != "" && opts == "" {
			out = append(out, agentproto.FleetSubnet{Name: name})
			continue
		}
		if !ok || name == "" {
			if names {
				return nil, fmt.Errorf("subnet %q: give NAME (the control plane's definition) or NAME=CIDR as the control plane defines it, e.g. %s", v, DefaultSubnet)
			}
			return nil, fmt.Errorf("subnet %q: use NAME=CIDR, e.g. %s (append ,nat for outbound NAT, ,slice=/N for each host's share)", v, DefaultSubnet)
		}
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("subnet %q: %q is not a CIDR: %v", v, cidr, err)
		}
		s := agentproto.FleetSubnet{Name: name, CIDR: p}
		for _, o := range strings.Split(opts, ",") {
			peer, isPeer := strings.CutPrefix(o, "peer=")
			slice, isSlice := strings.CutPrefix(o, "slice=")
			switch {
			case o == "":
			case o == "nat":
				s.NAT = true
			case isPeer && peer != "":
				s.Peers = append(s.Peers, peer)
			case isSlice:
				bits, err := strconv.Atoi(strings.TrimPrefix(slice, "/"))
				if err != nil || bits < p.Bits() || bits > 30 {
					return nil, fmt.Errorf("subnet %q: slice %q is not accepted: give slice=/N, N from %d (the whole subnet) to 30, e.g. slice=/%d", v, slice, p.Bits(), min(30, max(24, p.Bits()+2)))
				}
				s.SliceBits = bits
			default:
				return nil, fmt.Errorf("subnet %q: unknown option %q; options are nat, peer=SUBNET and slice=/N", v, o)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func subnetNames(subnets []agentproto.FleetSubnet) []string {
	names := make([]string, len(subnets))
	for i, s := range subnets {
		names[i] = s.Name
	}
	return names
}

// networkSubnets are subnets as the host's network sees them (no slices).
func networkSubnets(subnets []agentproto.FleetSubnet) []network.Subnet {
	out := make([]network.Subnet, len(subnets))
	for i, s := range subnets {
		out[i] = network.Subnet{Name: s.Name, CIDR: s.CIDR, NAT: s.NAT, Peers: s.Peers}
	}
	return out
}

// hostSubnets are the fleet's subnets this host has a slice of, each with
// its slice, as the host's network takes them, and the names of those it
// serves without one (every slice held by other hosts). Peers it does not
// serve are left out: the host's firewall knows only its own subnets.
func hostSubnets(hn agentproto.HostNetwork) (subnets []network.Subnet, noSlice []string) {
	slices := map[string]netip.Prefix{}
	for _, s := range hn.Slices {
		slices[s.Subnet] = s.CIDR
	}
	for _, s := range hn.Subnets {
		if _, ok := slices[s.Name]; !ok {
			noSlice = append(noSlice, s.Name)
		}
	}
	for _, s := range hn.Subnets {
		slice, ok := slices[s.Name]
		if !ok {
			continue
		}
		ns := network.Subnet{Name: s.Name, CIDR: s.CIDR, NAT: s.NAT, Slice: slice}
		for _, p := range s.Peers {
			if _, ok := slices[p]; ok {
				ns.Peers = append(ns.Peers, p)
			}
		}
		subnets = append(subnets, ns)
	}
	return subnets, noSlice
}
