package agent

import (
	"context"
	"net/netip"

	"github.com/vishvananda/netlink"

	"vessel.dev/vessel/internal/agent/taskmeta"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// metadataNetwork is what the task metadata endpoint needs of the host's
// network beyond Network: where to listen, and which task holds an
// address (network.Manager has both).
type metadataNetwork interface {
	MetadataListen() []netip.AddrPort
	LookupIP(ip netip.Addr) (string, bool)
}

// serveMetadata runs the task metadata endpoint (internal/agent/taskmeta)
// until ctx ends, when the host's network serves one.
func (a *Agent) serveMetadata(ctx context.Context) {
	mn, ok := a.cfg.Network.(metadataNetwork)
	if !ok || len(mn.MetadataListen()) == 0 {
		return
	}
	s, err := taskmeta.New(taskmeta.Config{Source: metaSource{a: a, net: mn}, Listen: mn.MetadataListen(), Logger: a.log})
	if err == nil {
		err = s.Serve(ctx)
	}
	if err != nil {
		a.log.Warn("no task metadata endpoint on this host", "err", err)
	}
}

// metaSource finds the task that asks the metadata endpoint by its
// address: an ECS task this agent runs (pods of the Kubernetes bridge get
// none, as EKS pods have none).
type metaSource struct {
	a   *Agent
	net metadataNetwork
}

func (s metaSource) Caller(ip netip.Addr) (*taskmeta.Caller, bool) {
	id, ok := s.net.LookupIP(ip)
	if !ok {
		return nil, false
	}
	s.a.mu.Lock()
	w := s.a.workers[id]
	s.a.mu.Unlock()
	if w == nil {
		return nil, false
	}
	t := w.record.Load()
	if t == nil || !metadataFor(t) {
		return nil, false
	}
	att, ok := s.a.cfg.Network.Get(id)
	if !ok || att.IP != ip {
		return nil, false
	}
	c := &taskmeta.Caller{Task: t, IP: att.IP, Prefix: att.Prefix, Gateway: att.Gateway, MAC: att.MAC,
		Hostname: att.Hostname}
	if id := w.warmSandbox.Load(); id != nil {
		c.SandboxID = *id
	}
	if st, ok := w.rt.(runtime.Statser); ok {
		c.Stats = st
	}
	veth := att.HostVeth
	c.Net = func() (taskmeta.NetIO, error) { return vethCounters(veth) }
	return c, true
}

// vethCounters are eth0's counters as the task sees them: those of the
// host's end of its veth pair, received and sent swapped.
func vethCounters(veth string) (taskmeta.NetIO, error) {
	l, err := netlink.LinkByName(veth)
	if err != nil {
		return taskmeta.NetIO{}, err
	}
	s := l.Attrs().Statistics
	if s == nil {
		return taskmeta.NetIO{}, nil
	}
	return taskmeta.NetIO{RxBytes: s.TxBytes, RxPackets: s.TxPackets, RxErrors: s.TxErrors, RxDropped: s.TxDropped,
		TxBytes: s.RxBytes, TxPackets: s.RxPackets, TxErrors: s.RxErrors, TxDropped: s.RxDropped}, nil
}

// metadataFor says whether t's containers get the metadata endpoint: the
// tasks of ECS, not the pods of the Kubernetes bridge (which have a
// restart policy).
func metadataFor(t *task.Task) bool { return t.RestartPolicy == "" }
