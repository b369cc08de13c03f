package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"vessel.dev/vessel/internal/network"
)

// DefaultSubnet is the private subnet tasks use when they name none.
const DefaultSubnet = "subnet-default=10.89.0.0/16"

// parseSubnets reads --subnet values: NAME=CIDR, with ",nat" to masquerade
// the subnet's outbound traffic (subnets are private by default) and
// ",peer=OTHER" (repeatable) to let its tasks and OTHER's reach each other
// (tasks of different subnets are cut off by default).
func parseSubnets(values []string) ([]network.Subnet, error) {
	// The flag is a string slice, which splits "a=CIDR,nat" at commas:
	// options standing alone belong to the subnet before them.
	var joined []string
	for _, v := range values {
		if len(joined) > 0 && (v == "nat" || strings.HasPrefix(v, "peer=")) {
			joined[len(joined)-1] += "," + v
			continue
		}
		joined = append(joined, v)
	}
	var out []network.Subnet
	for _, v := range joined {
		spec, opts, _ := strings.Cut(v, ",")
		name, cidr, ok := strings.Cut(spec, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("subnet %q: use NAME=CIDR, e.g. %s (append ,nat for outbound NAT)", v, DefaultSubnet)
		}
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("subnet %q: %q is not a CIDR: %v", v, cidr, err)
		}
		s := network.Subnet{Name: name, CIDR: p}
		for _, o := range strings.Split(opts, ",") {
			switch peer, isPeer := strings.CutPrefix(o, "peer="); {
			case o == "":
			case o == "nat":
				s.NAT = true
			case isPeer && peer != "":
				s.Peers = append(s.Peers, peer)
			default:
				return nil, fmt.Errorf("subnet %q: unknown option %q; options are nat and peer=SUBNET", v, o)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func subnetNames(subnets []network.Subnet) []string {
	names := make([]string, len(subnets))
	for i, s := range subnets {
		names[i] = s.Name
	}
	return names
}
