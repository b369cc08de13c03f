package agentproto

import (
	"context"
	"net"
	"net/netip"
	"slices"
)

// ServerAddrs are the addresses the client reaches the control plane
// replicas at: its URLs' IP literals, and their names resolved now. A
// host's fleet network walls its tasks off from them.
func (c *Client) ServerAddrs(ctx context.Context) []netip.Addr {
	var out []netip.Addr
	for _, u := range c.bases {
		h := u.Hostname()
		if a, err := netip.ParseAddr(h); err == nil {
			out = append(out, a.Unmap())
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		if err != nil {
			continue
		}
		for _, a := range ips {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
