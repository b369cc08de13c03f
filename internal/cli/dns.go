package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/server"
	"vessel.dev/vessel/internal/task"
)

// dnsGateways is the --dns-listen value for each subnet's gateway, port 53.
const dnsGateways = "gateways"

// dnsOptions are the flags of `vessel server` for names of tasks.
type dnsOptions struct {
	listen    []string
	advertise []string
}

func (o *dnsOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&o.listen, "dns-listen", []string{dnsGateways}, `where the DNS server for task names (<service>.<cluster>.vessel.local) listens, UDP and TCP: "gateways" for each --subnet's gateway on port 53, IP:port addresses, or "" for no DNS server`)
	f.StringSliceVar(&o.advertise, "dns-advertise", nil, "nameserver IPs ECS tasks' resolv.conf names (default: the gateway of the task's subnet on this host, or the --dns-listen IPs on port 53); set it to an address of this server that tasks of remote agents reach")
}

// dnsPlan is what the flags make of the DNS server: where it listens and
// what tasks are told.
type dnsPlan struct {
	listen   []string
	freeBind bool
	// explicit is set when the user chose the addresses: failing to
	// listen is then an error, not a warning.
	explicit bool
	// gateway: the DNS server answers on every subnet's gateway, so tasks
	// of the in-process agent name their subnet's gateway.
	gateway     bool
	nameservers []string
	// serving is set once the DNS server listens; tasks are told of it
	// only then.
	serving atomic.Bool
}

func (o *dnsOptions) plan(subnets []network.Subnet) (*dnsPlan, error) {
	p := &dnsPlan{}
	listen := o.listen
	if len(listen) == 1 && listen[0] == "" || len(listen) == 0 {
		return nil, nil
	}
	for _, a := range o.advertise {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("--dns-advertise %q is not an IP address", a)
		}
		p.nameservers = append(p.nameservers, ip.String())
	}
	if len(p.nameservers) > task.MaxNameservers {
		return nil, fmt.Errorf("--dns-advertise names %d addresses; a resolv.conf holds at most %d", len(p.nameservers), task.MaxNameservers)
	}
	gateways := map[netip.Addr]bool{}
	for _, s := range subnets {
		gateways[s.CIDR.Addr().Next()] = true
	}
	covered := map[netip.Addr]bool{}
	var on53 []string
	for _, l := range listen {
		if l == dnsGateways {
			for _, s := range subnets {
				p.listen = append(p.listen, netip.AddrPortFrom(s.CIDR.Addr().Next(), 53).String())
			}
			// A bridge, and so its gateway address, appears with the
			// subnet's first task.
			p.freeBind = true
			p.gateway = true
			continue
		}
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return nil, fmt.Errorf("--dns-listen %q: give IP:port such as 10.89.0.1:53, %q, or \"\" for no DNS server", l, dnsGateways)
		}
		p.explicit = true
		p.listen = append(p.listen, ap.String())
		if ap.Port() != 53 {
			continue
		}
		if ap.Addr().IsUnspecified() {
			p.gateway = true
		} else {
			on53 = append(on53, ap.Addr().String())
		}
		covered[ap.Addr()] = true
	}
	if !p.gateway && len(gateways) > 0 {
		all := true
		for g := range gateways {
			all = all && covered[g]
		}
		p.gateway = all
	}
	if len(p.nameservers) == 0 && !p.gateway && len(on53) > 0 {
		p.nameservers = on53[:min(len(on53), task.MaxNameservers)]
	}
	return p, nil
}

// taskDNS is the server's Config.TaskDNS: the DNS server and the cluster's
// zone, once the DNS server listens and when tasks can reach it.
func (p *dnsPlan) taskDNS(cluster string) *task.DNSConfig {
	if p == nil || !p.serving.Load() || !p.gateway && len(p.nameservers) == 0 {
		return nil
	}
	zone, ok := discovery.ClusterZone(cluster, discovery.DefaultDomain)
	if !ok {
		return nil
	}
	return &task.DNSConfig{Nameservers: append([]string(nil), p.nameservers...), Searches: []string{zone}}
}

// cachedTasks feeds the DNS server from the server's task cache: it
// rebuilds its index at every change, so a store read each time (what
// TaskSnapshot does, for the bridge) would only cost.
type cachedTasks struct{ *server.Server }

func (c cachedTasks) TaskSnapshot(ctx context.Context) ([]*task.Task, error) {
	return c.CachedTaskSnapshot(ctx)
}

// start starts the DNS server fed by src. A failure to listen on the
// default addresses (not root, port 53 taken) only turns names off.
func (p *dnsPlan) start(ctx context.Context, src discovery.Source, log *slog.Logger) error {
	if p == nil || len(p.listen) == 0 {
		return nil
	}
	d, err := discovery.New(discovery.Config{Source: src, Listen: p.listen, FreeBind: p.freeBind, Logger: log})
	if err == nil {
		err = d.Start(ctx)
	}
	if err != nil {
		if p.explicit {
			return fmt.Errorf("DNS server: %w (--dns-listen \"\" turns it off)", err)
		}
		log.Warn("no DNS server for task names", "err", err, "hint", "run as root, or choose --dns-listen; --dns-listen \"\" silences this")
		return nil
	}
	p.serving.Store(true)
	if !p.gateway && len(p.nameservers) == 0 {
		log.Warn("tasks are not told of the DNS server: it listens on no port 53 they reach; set --dns-advertise", "listen", strings.Join(p.listen, ","))
	}
	return nil
}

// gatewayDNS reports whether tasks of the in-process agent name their
// subnet's gateway.
func (p *dnsPlan) gatewayDNS() bool {
	return p != nil && p.serving.Load() && p.gateway && len(p.nameservers) == 0
}
