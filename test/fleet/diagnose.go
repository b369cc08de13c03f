package fleet

import (
	"fmt"
	"os/exec"
	"strings"
)

// diagnosis runs each command (argv) through run and returns their
// outputs, each under its command line.
func diagnosis(run func(argv ...string) *exec.Cmd, cmds [][]string) string {
	var b strings.Builder
	for _, argv := range cmds {
		out, err := run(argv...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s", strings.Join(argv, " "))
		if err != nil {
			fmt.Fprintf(&b, "  (%v)", err)
		}
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(string(out), "\n"))
	}
	return b.String()
}

// Diagnose returns the state of the machine's network, for a test that
// failed to reach something from it: addresses, routes, neighbours,
// the firewall (nftables and iptables), conntrack's entries, and the
// sysctls that decide what is forwarded and what reverse-path filtering
// drops.
func (m *Machine) Diagnose() string {
	return diagnosis(func(argv ...string) *exec.Cmd { return m.Command(argv[0], argv[1:]...) }, [][]string{
		{"ip", "-br", "addr"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "rule"},
		{"ip", "neigh"},
		{"nft", "list", "ruleset"},
		{"iptables-save"},
		{"conntrack", "-L"},
		{"sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/conf/*/forwarding /proc/sys/net/ipv4/conf/*/proxy_arp /proc/sys/net/bridge/* 2>/dev/null"},
	})
}

// Diagnose returns the state of the fleet's bridge in the test's own
// namespace (its neighbours, forwarding database and ports), how that
// namespace routes to each machine, and the netfilter rules of that
// namespace that name the bridge or its addresses.
func (f *Fleet) Diagnose() string {
	f.mu.Lock()
	machines := append([]*Machine(nil), f.machines...)
	f.mu.Unlock()
	cmds := [][]string{
		{"ip", "-d", "link", "show", f.bridge},
		{"ip", "link", "show", "master", f.bridge},
		{"ip", "neigh", "show", "dev", f.bridge},
		{"bridge", "fdb", "show", "br", f.bridge},
		{"sh", "-c", "grep -H . /proc/sys/net/bridge/* /proc/sys/net/ipv4/conf/" + f.bridge + "/rp_filter /proc/sys/net/ipv4/conf/all/rp_filter 2>/dev/null"},
		{"sh", "-c", "iptables-save | grep -n -e '" + f.prefix.Addr().String() + "' -e '" + f.bridge + "' -e '-P ' -e 'INVALID'"},
		{"sh", "-c", "conntrack -L 2>/dev/null | grep -F '" + strings.TrimSuffix(f.prefix.Addr().String(), "0") + "'"},
	}
	for _, m := range machines {
		cmds = append(cmds, []string{"ip", "route", "get", m.Addr.String()})
	}
	return diagnosis(func(argv ...string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }, cmds)
}

// Machines returns the fleet's machines, in the order they were made.
func (f *Fleet) Machines() []*Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Machine(nil), f.machines...)
}
