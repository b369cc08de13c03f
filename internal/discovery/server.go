package discovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/sockopt"
	"vessel.dev/vessel/internal/task"
)

// Source is where the server learns of the tasks' names: on every host,
// the host agent's copy of them, fed by the control plane (agent.NameFeed).
type Source interface {
	// Names returns the current names, the caller's to keep. It blocks
	// until the first are known or ctx ends.
	Names(ctx context.Context) (Names, error)
	// Changes returns a channel closed at the next change of the names.
	Changes() <-chan struct{}
}

// Defaults of a Config.
const (
	DefaultDomain = "vessel.local"
	DefaultTTL    = 5 * time.Second

	DefaultMaxInFlight  = 256
	DefaultForwardRate  = 50
	DefaultForwardBurst = 100
)

// Config configures a Server.
type Config struct {
	// Source of the tasks. Required.
	Source Source
	// Listen are the host:port addresses to serve on, UDP and TCP each.
	// At least one is required; port 0 picks a free port (Addrs tells).
	Listen []string
	// FreeBind lets Listen name addresses the host does not have yet (a
	// subnet's gateway, whose bridge appears with the subnet's first task),
	// with Linux's IP_FREEBIND. Ignored elsewhere.
	FreeBind bool
	// Domain is the domain under which each cluster has its zone;
	// DefaultDomain when empty.
	Domain string
	// TTL of answers (and of negative answers, through the SOA); DefaultTTL
	// when zero.
	TTL time.Duration
	// Upstreams are the host:port resolvers that names outside Domain are
	// forwarded to. When nil, the nameservers of ResolvConf on port 53.
	Upstreams []string
	// ResolvConf is read for Upstreams; /etc/resolv.conf by default.
	ResolvConf string
	// ForwardTimeout bounds one forwarded exchange; 2 s by default.
	ForwardTimeout time.Duration
	// MaxInFlight caps the queries being forwarded at once, from all
	// sources; past it a query is answered SERVFAIL at once.
	// DefaultMaxInFlight when zero.
	MaxInFlight int
	// ForwardRate is how many queries per second each source address may
	// have forwarded, with bursts of ForwardBurst; past it a query is
	// answered REFUSED. Names under Domain are not limited.
	// DefaultForwardRate and DefaultForwardBurst when zero.
	ForwardRate  float64
	ForwardBurst int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server answers the names of tasks and forwards the rest. Create it with
// New, then Start it.
type Server struct {
	cfg       Config
	log       *slog.Logger
	domain    string // fully qualified, lower case: "vessel.local."
	ttl       uint32
	upstreams []string
	ix        atomic.Pointer[index]

	inFlight chan struct{} // a slot per query being forwarded
	limMu    sync.Mutex
	limiters map[netip.Addr]*sourceLimit

	mu      sync.Mutex
	servers []*dns.Server
	addrs   []string
	done    chan struct{}
}

// New checks cfg, fills its defaults and reads the upstream resolvers. It
// binds nothing yet.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errdefs.InvalidArgument("discovery: Config.Source is required (the names of the tasks, e.g. an agent.NameFeed)")
	}
	if len(cfg.Listen) == 0 {
		return nil, errdefs.InvalidArgument("discovery: Config.Listen needs at least one host:port address, e.g. 10.89.0.1:53")
	}
	for _, a := range cfg.Listen {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return nil, errdefs.InvalidArgument("discovery: listen address %q is not IP:port, e.g. 10.89.0.1:53", a)
		}
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	domain := strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if !task.ValidDNSName(domain) {
		return nil, errdefs.InvalidArgument("discovery: domain %q is not a DNS name such as %s", cfg.Domain, DefaultDomain)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, errdefs.InvalidArgument("discovery: TTL %v is shorter than a second, the unit of DNS TTLs", cfg.TTL)
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.ForwardRate == 0 {
		cfg.ForwardRate = DefaultForwardRate
	}
	if cfg.ForwardBurst == 0 {
		cfg.ForwardBurst = DefaultForwardBurst
	}
	if cfg.MaxInFlight < 0 || cfg.ForwardRate < 0 || cfg.ForwardBurst < 0 {
		return nil, errdefs.InvalidArgument("discovery: MaxInFlight %d, ForwardRate %v and ForwardBurst %d must not be negative (zero takes the default)", cfg.MaxInFlight, cfg.ForwardRate, cfg.ForwardBurst)
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "dns"), domain: domain + ".",
		ttl: uint32(cfg.TTL / time.Second), done: make(chan struct{}),
		inFlight: make(chan struct{}, cfg.MaxInFlight), limiters: map[netip.Addr]*sourceLimit{}}
	ups := cfg.Upstreams
	if ups == nil {
		ups = resolvConfNameservers(cfg.ResolvConf)
	}
	for _, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			return nil, errdefs.InvalidArgument("discovery: upstream %q is not IP:port, e.g. 192.0.2.53:53", u)
		}
		if s.isSelf(ap) {
			s.log.Warn("not forwarding to an upstream resolver that is this server", "upstream", u)
			continue
		}
		s.upstreams = append(s.upstreams, ap.String())
	}
	if len(s.upstreams) == 0 {
		s.log.Warn("no upstream resolvers: names outside the task domain get SERVFAIL", "resolv_conf", cfg.ResolvConf, "domain", domain)
	}
	return s, nil
}

// resolvConfNameservers returns the nameservers of a resolv.conf as
// IP:53 (IPv6 zones kept).
func resolvConfNameservers(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(fields[1]); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
	}
	return out
}

// isSelf reports whether an upstream is one of the server's own listen
// addresses (directly, or through a wildcard listen on a local address).
func (s *Server) isSelf(up netip.AddrPort) bool {
	ua := up.Addr().Unmap()
	for _, l := range s.cfg.Listen {
		lp, err := netip.ParseAddrPort(l)
		if err != nil || lp.Port() != up.Port() {
			continue
		}
		la := lp.Addr().Unmap()
		if la == ua || la.IsUnspecified() && isLocalAddr(ua) {
			return true
		}
	}
	return false
}

func isLocalAddr(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// Upstreams returns the resolvers names outside the domain are forwarded
// to, in order.
func (s *Server) Upstreams() []string { return append([]string(nil), s.upstreams...) }

// Start binds every Listen address for UDP and TCP and serves until ctx
// ends; it returns once all are bound, or the first error (nothing stays
// bound then). Names of tasks are answered once the Source's first
// snapshot is in (SERVFAIL before). Wait returns when serving has stopped.
func (s *Server) Start(ctx context.Context) error {
	var servers []*dns.Server
	var addrs []string
	fail := func(err error) error {
		for _, srv := range servers {
			srv.Shutdown()
		}
		return err
	}
	lc := net.ListenConfig{}
	if s.cfg.FreeBind {
		lc.Control = sockopt.FreeBind
	}
	for _, a := range s.cfg.Listen {
		pc, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			return fail(fmt.Errorf("discovery: listening on udp %s: %w", a, err))
		}
		// TCP on the same port as UDP, also when a was port 0.
		tcpAddr := pc.LocalAddr().String()
		ln, err := lc.Listen(ctx, "tcp", tcpAddr)
		if err != nil {
			pc.Close()
			return fail(fmt.Errorf("discovery: listening on tcp %s: %w", tcpAddr, err))
		}
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			errc := make(chan error, 1)
			go func() { errc <- srv.ActivateAndServe() }()
			select {
			case <-started:
			case err := <-errc:
				pc.Close()
				ln.Close()
				return fail(fmt.Errorf("discovery: serving on %s: %w", tcpAddr, err))
			}
			servers = append(servers, srv)
			go func() {
				if err := <-errc; err != nil && ctx.Err() == nil {
					s.log.Error("DNS server stopped", "addr", tcpAddr, "err", err)
				}
			}()
		}
		addrs = append(addrs, tcpAddr)
	}
	s.mu.Lock()
	s.servers, s.addrs = servers, addrs
	s.mu.Unlock()
	s.log.Info("DNS server listening", "addrs", addrs, "domain", strings.TrimSuffix(s.domain, "."), "upstreams", s.upstreams)
	go s.follow(ctx)
	go func() {
		<-ctx.Done()
		for _, srv := range servers {
			srv.Shutdown()
		}
		close(s.done)
	}()
	return nil
}

// Addrs returns the bound addresses (IP:port, the same port for UDP and
// TCP), once Start has returned.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Wait blocks until the server has stopped serving after its Start's ctx
// ended.
func (s *Server) Wait() { <-s.done }

// follow rebuilds the index on every change of the names.
func (s *Server) follow(ctx context.Context) {
	domain := strings.TrimSuffix(s.domain, ".")
	for {
		changed := s.cfg.Source.Changes()
		names, err := s.cfg.Source.Names(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("reading the names of tasks failed", "err", err)
		} else {
			s.ix.Store(buildIndex(names, domain))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(30 * time.Second):
		}
		// Changes come in bursts (a heartbeat, a health report): take
		// them in at most every 50 ms.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ServeDNS answers one query: names under the domain from the index,
// others through the upstreams.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 || r.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass == dns.ClassINET && dns.IsSubDomain(s.domain, name) {
		s.reply(w, r, s.answer(r, name))
		return
	}
	if !s.allow(w.RemoteAddr()) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		s.reply(w, r, m)
		return
	}
	select {
	case s.inFlight <- struct{}{}:
	default:
		s.log.Debug("too many queries in flight; answering SERVFAIL", "max", cap(s.inFlight), "name", q.Name)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		s.reply(w, r, m)
		return
	}
	defer func() { <-s.inFlight }()
	s.reply(w, r, s.forward(w, r))
}

// sourceLimit is one source address's forwarding budget.
type sourceLimit struct {
	lim  *rate.Limiter
	used time.Time
}

// maxSources bounds the budgets kept; idle ones go first.
const maxSources = 4096

// allow takes a token from the budget of addr's source address.
func (s *Server) allow(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	ip = ip.Unmap()
	now := time.Now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	sl := s.limiters[ip]
	if sl == nil {
		if len(s.limiters) >= maxSources {
			for k, v := range s.limiters {
				if now.Sub(v.used) > time.Minute {
					delete(s.limiters, k)
				}
			}
			if len(s.limiters) >= maxSources {
				s.log.Warn("too many DNS clients with forwarding budgets; starting the budgets afresh", "sources", len(s.limiters))
				clear(s.limiters)
			}
		}
		sl = &sourceLimit{lim: rate.NewLimiter(rate.Limit(s.cfg.ForwardRate), s.cfg.ForwardBurst)}
		s.limiters[ip] = sl
	}
	sl.used = now
	if !sl.lim.AllowN(now, 1) {
		s.log.Debug("source over its forwarding rate; answering REFUSED", "source", ip)
		return false
	}
	return true
}

// reply writes m, truncated to what the client accepts over UDP.
func (s *Server) reply(w dns.ResponseWriter, r *dns.Msg, m *dns.Msg) {
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("writing a DNS reply failed", "err", err)
	}
}

// answer answers a question about name (lower case, fully qualified), a
// name under the domain.
func (s *Server) answer(r *dns.Msg, name string) *dns.Msg {
	q := r.Question[0]
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	ix := s.ix.Load()
	if ix == nil {
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	zone := ix.zoneOf(name)
	if zone == "" {
		zone = s.domain
	}
	targets, ok := ix.names[name]
	switch {
	case !ok && name != zone:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(zone)}
		return m
	case name == zone && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY):
		m.Answer = append(m.Answer, s.soa(zone))
	case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
		// Random order spreads clients over the tasks.
		order := rand.Perm(len(targets))
		for _, i := range order {
			if ip := targets[i].ip; ip.Is4() {
				m.Answer = append(m.Answer, &dns.A{Hdr: s.hdr(q.Name, dns.TypeA), A: ip.AsSlice()})
			}
		}
	case q.Qtype == dns.TypeAAAA:
		for _, t := range targets {
			if t.ip.Is6() && !t.ip.Is4In6() {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: s.hdr(q.Name, dns.TypeAAAA), AAAA: t.ip.AsSlice()})
			}
		}
	case q.Qtype == dns.TypeSRV:
		// One SRV per task and port, naming the task, whose address comes
		// along; a task that declares no port gets one with port 0.
		for _, t := range targets {
			ports := t.ports
			if len(ports) == 0 {
				ports = []uint16{0}
			}
			for _, port := range ports {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: s.hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 10, Port: port, Target: t.name})
			}
			if t.ip.Is4() {
				m.Extra = append(m.Extra, &dns.A{Hdr: s.hdr(t.name, dns.TypeA), A: t.ip.AsSlice()})
			}
		}
	}
	if len(m.Answer) == 0 {
		// The name is there, with no records of this type.
		m.Ns = []dns.RR{s.soa(zone)}
	}
	return m
}

func (s *Server) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl}
}

// soa is the zone's SOA, whose minimum TTL (that of negative answers) is
// the server's TTL.
func (s *Server) soa(zone string) dns.RR {
	return &dns.SOA{Hdr: s.hdr(zone, dns.TypeSOA), Ns: "ns." + zone, Mbox: "hostmaster." + zone,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl}
}

// forward asks the upstreams in turn, over the protocol the query came in
// on (UDP falling back to TCP when the answer is truncated), and returns
// the first answer, or SERVFAIL.
func (s *Server) forward(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	var errs []error
	for _, up := range s.upstreams {
		c := &dns.Client{Net: "udp", Timeout: s.cfg.ForwardTimeout}
		if tcp {
			c.Net = "tcp"
		}
		in, _, err := c.Exchange(r, up)
		if err == nil && in.Truncated && !tcp {
			c.Net = "tcp"
			in, _, err = c.Exchange(r, up)
		}
		if err == nil {
			in.Id = r.Id
			return in
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	if len(errs) > 0 {
		s.log.Debug("forwarding failed", "name", r.Question[0].Name, "err", errors.Join(errs...))
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}
