package network

import "github.com/coreos/go-iptables/iptables"

// iptablesAPI is the part of go-iptables this package uses; tests fake it.
type iptablesAPI interface {
	AppendUnique(table, chain string, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
}

var _ iptablesAPI = (*iptables.IPTables)(nil)

// newIPTables fails when the iptables command is not installed.
func newIPTables() (iptablesAPI, error) {
	return iptables.New()
}

// masqueradeRule is the nat/POSTROUTING rule for a subnet with NAT on: its
// traffic leaving through any interface but its own bridge is masqueraded.
// Traffic between tasks of the subnet and to the host is left alone.
func masqueradeRule(s Subnet, bridge string) []string {
	return []string{
		"-s", s.CIDR.String(),
		"!", "-o", bridge,
		"-m", "comment", "--comment", "vessel subnet " + s.Name,
		"-j", "MASQUERADE",
	}
}
