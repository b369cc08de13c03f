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
// the subnet's outbound traffic (subnets are private by default).
func parseSubnets(values []string) ([]network.Subnet, error) {
	var out []network.Subnet
	for _, v := range values {
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
		switch opts {
		case "":
		case "nat":
			s.NAT = true
		default:
			return nil, fmt.Errorf("subnet %q: unknown option %q; the only option is nat", v, opts)
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
