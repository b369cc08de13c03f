package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"

	"vessel.dev/vessel/internal/agent"
	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/discovery"
	"vessel.dev/vessel/internal/network"
	"vessel.dev/vessel/internal/task"
)

// dnsGateways is the --dns-listen value for each subnet's gateway, port 53.
const dnsGateways = "gateways"

// dnsOptions are the flags of `vessel server` and `vessel agent` for names
// of tasks. Every host (the server's in-process agent, each `vessel
// agent`) runs a DNS server of its own, fed with the names by the control
// plane (agent.NameFeed).
type dnsOptions struct {
	listen    []string
	advertise []string
}

// addFlags adds --dns-listen, and for the server (which decides what
// tasks are told) --dns-advertise.
func (o *dnsOptions) addFlags(cmd *cobra.Command, server bool) {
	usage := `where this host's DNS server for task names (<service>.<cluster>.vessel.local) listens, UDP and TCP: "gateways" for each --subnet's gateway on port 53, IP:port addresses, or "" for no DNS server`
	if server {
		usage += ` (and, on the server, tasks of every host are then told of none)`
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.listen, "dns-listen", []string{dnsGateways}, usage)
	if server {
		f.StringSliceVar(&o.advertise, "dns-advertise", nil, "nameserver IPs every ECS task's resolv.conf names instead of its subnet's gateway on its own host (default: that gateway, or the --dns-listen IPs on port 53 when the server listens on no gateway)")
	}
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
	// name their subnet's gateway (on the server: tasks of every host, each
	// host answering on its own gateways).
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

// taskDNS is the server's Config.TaskDNS: the nameservers and the
// cluster's zone, when tasks can reach a DNS server: their own host's on
// its subnets' gateways (no nameservers: the host's network names the
// gateway when its DNS server listens, else the host's resolvers), or
// those of --dns-advertise or --dns-listen.
func (p *dnsPlan) taskDNS(cluster string) *task.DNSConfig {
	if p == nil || !p.gateway && len(p.nameservers) == 0 {
		return nil
	}
	zone, ok := discovery.ClusterZone(cluster, discovery.DefaultDomain)
	if !ok {
		return nil
	}
	return &task.DNSConfig{Nameservers: append([]string(nil), p.nameservers...), Searches: []string{zone}}
}

// startNames starts this host's DNS server, answering from the names of
// the fleet's tasks that src (the control plane: in process for `vessel
// server`, over the agent protocol for `vessel agent`) feeds it. It
// returns the feed, to be run (NameFeed.Run with the host's ID) until ctx
// ends, or nil when this host serves no names. A failure to listen on the
// default addresses (not root, port 53 taken) only turns names off on this
// host.
func (p *dnsPlan) startNames(ctx context.Context, src agentproto.NameSource, log *slog.Logger) (*agent.NameFeed, error) {
	if p == nil || len(p.listen) == 0 {
		return nil, nil
	}
	feed := agent.NewNameFeed(src, log)
	d, err := discovery.New(discovery.Config{Source: feed, Listen: p.listen, FreeBind: p.freeBind, Logger: log})
	if err == nil {
		err = d.Start(ctx)
	}
	if err != nil {
		if p.explicit {
			return nil, fmt.Errorf("DNS server: %w (--dns-listen \"\" turns it off)", err)
		}
		log.Warn("no DNS server for task names on this host", "err", err, "hint", "run as root, or choose --dns-listen; --dns-listen \"\" silences this")
		return nil, nil
	}
	p.serving.Store(true)
	if !p.gateway && len(p.nameservers) == 0 {
		log.Warn("tasks are not told of the DNS server: it listens on no port 53 they reach; set --dns-advertise on the server", "listen", strings.Join(p.listen, ","))
	}
	return feed, nil
}

// serverListens says whether `vessel server` runs a DNS server: with its
// in-process agent, as every host does; without one (--no-agent) only on
// the addresses --dns-listen names, since this host then has no task
// subnets' gateways of its own (a `vessel agent` on this machine answers
// on them).
func (p *dnsPlan) serverListens(noAgent bool) bool {
	return p != nil && (!noAgent || p.explicit)
}

// runNames runs feed (if any) for host hostID until ctx ends.
func runNames(ctx context.Context, wg *sync.WaitGroup, feed *agent.NameFeed, hostID string) {
	if feed == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		feed.Run(ctx, hostID)
	}()
}

// gatewayDNS reports whether tasks of this host name their subnet's
// gateway: its DNS server listens there and the server advertises no
// other nameservers.
func (p *dnsPlan) gatewayDNS() bool {
	return p != nil && p.serving.Load() && p.gateway && len(p.nameservers) == 0
}

// startNames starts this host's DNS server (startNames of --dns-listen) on
// subnets' gateways, fed by the control plane over the agent protocol;
// tasks of this host name it when it listens on their gateways.
func (o *agentOptions) startNames(ctx context.Context, cp agentproto.NameSource, subnets []network.Subnet, log *slog.Logger) (*agent.NameFeed, error) {
	plan, err := o.dns.plan(subnets)
	if err != nil {
		return nil, err
	}
	feed, err := plan.startNames(ctx, cp, log)
	o.host.gatewayDNS = plan.gatewayDNS()
	return feed, err
}
