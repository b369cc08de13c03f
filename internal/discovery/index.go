package discovery

import (
	"net/netip"
	"slices"
	"strings"
)

// index is what the server answers from: built from one snapshot of the
// tasks, never changed afterwards.
type index struct {
	// zones are the known cluster zones, fully qualified ("default.vessel.local.").
	zones map[string]bool
	// names maps a fully qualified name to the addresses it answers.
	names map[string][]target
}

// target is one task behind a name.
type target struct {
	ip   netip.Addr
	name string // the task's own name, fully qualified: the SRV target
	// ports are what SRV answers for this name: every port of the task's
	// containers, or the one port a _<name>._<proto> name stands for.
	ports []uint16
}

// buildIndex indexes the names under domain (lower case, no trailing dot).
func buildIndex(n Names, domain string) *index {
	ix := &index{zones: map[string]bool{}, names: map[string][]target{}}
	for _, c := range n.Clusters {
		if zone, ok := ClusterZone(c, domain); ok {
			ix.zones[zone+"."] = true
		}
	}
	for _, r := range n.Records {
		zone, ok := ClusterZone(r.Cluster, domain)
		if !ok {
			continue
		}
		ix.zones[zone+"."] = true
		if !r.IP.IsValid() {
			continue
		}
		id, ok := label(r.TaskID)
		if !ok {
			continue
		}
		own := id + "." + zone + "."
		tg := target{ip: r.IP, name: own}
		for _, p := range r.Ports {
			tg.ports = append(tg.ports, p.Port)
		}
		ix.names[own] = append(ix.names[own], tg)
		if r.Service == "" || !r.Serving {
			continue
		}
		s, ok := label(r.Service)
		if !ok {
			continue
		}
		name := s + "." + zone + "."
		ix.names[name] = append(ix.names[name], tg)
		// Named ports, as RFC 2782 and Kubernetes name them:
		// _<port>._<protocol>.<service>.<zone>.
		for _, p := range r.Ports {
			pn, ok1 := label(p.Name)
			proto, ok2 := label(p.Protocol)
			if !ok1 || !ok2 {
				continue
			}
			n := "_" + pn + "._" + proto + "." + name
			ix.names[n] = append(ix.names[n], target{ip: r.IP, name: own, ports: []uint16{p.Port}})
		}
	}
	for _, ts := range ix.names {
		slices.SortFunc(ts, func(a, b target) int { return a.ip.Compare(b.ip) })
	}
	return ix
}

// zoneOf returns the cluster zone that holds name (fully qualified, lower
// case), or "" when no known cluster's zone does.
func (ix *index) zoneOf(name string) string {
	for {
		if ix.zones[name] {
			return name
		}
		_, rest, ok := strings.Cut(name, ".")
		if !ok || rest == "" {
			return ""
		}
		name = rest
	}
}
