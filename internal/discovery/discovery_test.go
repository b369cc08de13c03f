package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"vessel.dev/vessel/internal/task"
	"vessel.dev/vessel/internal/testutil"
)

// fakeSource stands in for the host's names, made of its tasks as the
// control plane makes them (NamesOf).
type fakeSource struct {
	mu     sync.Mutex
	tasks  map[string]*task.Task
	change chan struct{}
}

var _ Source = (*fakeSource)(nil)

func newFakeSource(ts ...*task.Task) *fakeSource {
	f := &fakeSource{tasks: map[string]*task.Task{}, change: make(chan struct{})}
	for _, t := range ts {
		f.tasks[t.ID] = t
	}
	return f
}

func (f *fakeSource) Names(ctx context.Context) (Names, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*task.Task
	for _, t := range f.tasks {
		out = append(out, t.Clone())
	}
	return NamesOf(out), nil
}

func (f *fakeSource) Changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.change
}

// update changes or adds a task and announces the change.
func (f *fakeSource) update(id string, fn func(t *task.Task)) {
	f.mu.Lock()
	t, ok := f.tasks[id]
	if !ok {
		t = &task.Task{ID: id}
		f.tasks[id] = t
	}
	fn(t)
	close(f.change)
	f.change = make(chan struct{})
	f.mu.Unlock()
}

func running(id, cluster, group, ip string, cs ...task.Container) *task.Task {
	return &task.Task{ID: id, Cluster: cluster, Group: group, IP: ip,
		LastStatus: task.StatusRunning, DesiredStatus: task.StatusRunning, Containers: cs}
}

func withCheck(essential bool, health string) task.Container {
	return task.Container{Name: "app", Essential: essential, HealthStatus: health,
		HealthCheck: &task.HealthCheck{Command: []string{"CMD", "true"}}}
}

var quiet = slog.New(slog.DiscardHandler)

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = []string{}
	}
	cfg.Logger = quiet
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

func query(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	in, _, err := c.Exchange(m, s.Addrs()[0])
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return in
}

func aRecords(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitForA polls a query until its A records are want (none: NXDOMAIN).
func waitForA(t *testing.T, s *Server, name string, want ...string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		m := query(t, s, "udp", name, dns.TypeA)
		got := aRecords(m)
		if slices.Equal(got, want) || len(want) == 0 && m.Rcode == dns.RcodeNameError {
			return nil
		}
		return fmt.Errorf("%s: A %v (rcode %s), want %v", name, got, dns.RcodeToString[m.Rcode], want)
	})
}

func TestServiceAnswersFollowTasks(t *testing.T) {
	src := newFakeSource(
		running("healthy", "default", "service:web", "10.0.0.1", withCheck(true, task.HealthHealthy)),
		running("nocheck", "default", "service:web", "10.0.0.2", task.Container{Name: "app", Essential: true}),
		running("unhealthy", "default", "service:web", "10.0.0.3", withCheck(true, task.HealthUnhealthy)),
		running("unknown", "default", "service:web", "10.0.0.4", withCheck(true, task.HealthUnknown)),
		running("sidecar", "default", "service:web", "10.0.0.5", task.Container{Name: "app", Essential: true}, withCheck(false, task.HealthUnhealthy)),
		running("other-svc", "default", "service:api", "10.0.0.6"),
		running("family", "default", "family:web", "10.0.0.7"),
		running("other-cluster", "prod", "service:web", "10.0.1.1"),
	)
	stopping := running("stopping", "default", "service:web", "10.0.0.8")
	stopping.DesiredStatus = task.StatusStopped
	src.tasks[stopping.ID] = stopping
	pending := running("pending", "default", "service:web", "")
	pending.LastStatus = task.StatusActivating
	src.tasks[pending.ID] = pending

	s := startServer(t, Config{Source: src})
	waitForA(t, s, "web.default.vessel.local", "10.0.0.1", "10.0.0.2", "10.0.0.5")
	waitForA(t, s, "WEB.Default.Vessel.Local", "10.0.0.1", "10.0.0.2", "10.0.0.5")
	waitForA(t, s, "api.default.vessel.local", "10.0.0.6")
	waitForA(t, s, "web.prod.vessel.local", "10.0.1.1")

	m := query(t, s, "udp", "web.default.vessel.local", dns.TypeA)
	if !m.Authoritative || m.Answer[0].Header().Ttl != 5 {
		t.Errorf("answer not authoritative or TTL %d, want 5: %v", m.Answer[0].Header().Ttl, m)
	}
	// Over TCP too.
	if got := aRecords(query(t, s, "tcp", "web.default.vessel.local", dns.TypeA)); len(got) != 3 {
		t.Errorf("TCP: %v", got)
	}

	// A task becomes healthy, another unhealthy, a third is stopped.
	src.update("unknown", func(t *task.Task) { t.Containers[0].HealthStatus = task.HealthHealthy })
	src.update("healthy", func(t *task.Task) { t.Containers[0].HealthStatus = task.HealthUnhealthy })
	src.update("nocheck", func(t *task.Task) { t.DesiredStatus = task.StatusStopped })
	waitForA(t, s, "web.default.vessel.local", "10.0.0.4", "10.0.0.5")
	src.update("sidecar", func(t *task.Task) {
		t.DesiredStatus, t.LastStatus = task.StatusStopped, task.StatusStopped
	})
	src.update("pending", func(t *task.Task) { t.LastStatus, t.IP = task.StatusRunning, "10.0.0.9" })
	waitForA(t, s, "web.default.vessel.local", "10.0.0.4", "10.0.0.9")
	src.update("unknown", func(t *task.Task) { t.LastStatus = task.StatusStopped })
	src.update("pending", func(t *task.Task) { t.LastStatus = task.StatusDeactivating })
	waitForA(t, s, "web.default.vessel.local") // NXDOMAIN once none serve
}

func TestTaskNamesAndRecordTypes(t *testing.T) {
	src := newFakeSource(
		running("0123abcd", "default", "service:web", "10.0.0.1", withCheck(true, task.HealthUnhealthy)),
		running("4567ef", "default", "service:web", "10.0.0.2"),
	)
	s := startServer(t, Config{Source: src})
	// A task answers under its ID whatever its health.
	waitForA(t, s, "0123abcd.default.vessel.local", "10.0.0.1")
	waitForA(t, s, "web.default.vessel.local", "10.0.0.2")

	srv := query(t, s, "udp", "web.default.vessel.local", dns.TypeSRV)
	if len(srv.Answer) != 1 || len(srv.Extra) != 1 {
		t.Fatalf("SRV: %v", srv)
	}
	if r := srv.Answer[0].(*dns.SRV); r.Target != "4567ef.default.vessel.local." || r.Port != 0 {
		t.Errorf("SRV record %v", r)
	}
	if a := srv.Extra[0].(*dns.A); a.Hdr.Name != "4567ef.default.vessel.local." || a.A.String() != "10.0.0.2" {
		t.Errorf("SRV additional %v", a)
	}

	// Declared ports: every port under the service's name, a named port
	// under _<name>._<proto>.
	web := task.Container{Name: "web", Essential: true, Ports: []task.Port{
		{Name: "http", ContainerPort: 8080, Protocol: "tcp"}, {Name: "metrics", ContainerPort: 9090, Protocol: "tcp"}}}
	api := running("89abcd", "default", "service:api", "10.0.0.3", web)
	src.update(api.ID, func(t *task.Task) { *t = *api })
	waitForA(t, s, "api.default.vessel.local", "10.0.0.3")
	all := query(t, s, "udp", "api.default.vessel.local", dns.TypeSRV)
	var ports []int
	for _, rr := range all.Answer {
		ports = append(ports, int(rr.(*dns.SRV).Port))
	}
	if slices.Sort(ports); !slices.Equal(ports, []int{8080, 9090}) {
		t.Errorf("SRV ports of api: %v, want 8080 and 9090", ports)
	}
	named := query(t, s, "udp", "_http._tcp.api.default.vessel.local", dns.TypeSRV)
	if len(named.Answer) != 1 || named.Answer[0].(*dns.SRV).Port != 8080 || named.Answer[0].(*dns.SRV).Target != "89abcd.default.vessel.local." {
		t.Errorf("SRV _http._tcp.api: %v", named.Answer)
	}
	if none := query(t, s, "udp", "_grpc._tcp.api.default.vessel.local", dns.TypeSRV); none.Rcode != dns.RcodeNameError {
		t.Errorf("an undeclared port name answered %v", none)
	}

	// A name with no records of the type: NOERROR, no answer, the SOA.
	aaaa := query(t, s, "udp", "web.default.vessel.local", dns.TypeAAAA)
	if aaaa.Rcode != dns.RcodeSuccess || len(aaaa.Answer) != 0 || len(aaaa.Ns) != 1 {
		t.Errorf("AAAA: %v", aaaa)
	}

	for name, zone := range map[string]string{
		"nope.default.vessel.local":           "default.vessel.local.",
		"a.b.default.vessel.local":            "default.vessel.local.",
		"_http._tcp.web.default.vessel.local": "default.vessel.local.",
		"web.nocluster.vessel.local":          "vessel.local.",
	} {
		m := query(t, s, "udp", name, dns.TypeA)
		if m.Rcode != dns.RcodeNameError || !m.Authoritative || len(m.Ns) != 1 {
			t.Errorf("%s: %v, want NXDOMAIN with the SOA", name, m)
			continue
		}
		soa := m.Ns[0].(*dns.SOA)
		if soa.Hdr.Name != zone || soa.Minttl != 5 {
			t.Errorf("%s: SOA %v, want zone %s with minimum TTL 5", name, soa, zone)
		}
	}
	apex := query(t, s, "udp", "default.vessel.local", dns.TypeSOA)
	if apex.Rcode != dns.RcodeSuccess || len(apex.Answer) != 1 {
		t.Errorf("SOA of the zone: %v", apex)
	}
}

// upstream starts a resolver on loopback that answers every A question
// with 192.0.2.1, over UDP and TCP, and counts what it was asked.
func upstream(t *testing.T) (addr string, asked func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		n++
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.ParseIP("192.0.2.1")})
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestForwarding(t *testing.T) {
	up, asked := upstream(t)
	// A dead upstream first: the next one is tried.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := startServer(t, Config{Source: newFakeSource(), Upstreams: []string{dead.LocalAddr().String(), up},
		ForwardTimeout: 200 * time.Millisecond})
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, s, network, "example.com", dns.TypeA)
		if got := aRecords(m); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Errorf("%s: forwarded answer %v", network, m)
		}
	}
	if asked() != 2 {
		t.Errorf("upstream asked %d times, want 2", asked())
	}
	// Names of the domain are never forwarded.
	query(t, s, "udp", "x.default.vessel.local", dns.TypeA)
	if asked() != 2 {
		t.Errorf("a name of the domain was forwarded")
	}
}

func TestNoUpstream(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	// The host's only resolver is the server itself: it is not used.
	if err := os.WriteFile(rc, []byte("# test\nnameserver 127.0.0.1\nsearch example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Source: newFakeSource(), Listen: []string{"127.0.0.1:53"}, ResolvConf: rc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if ups := s.Upstreams(); len(ups) != 0 {
		t.Fatalf("upstreams %v, want none (the server itself)", ups)
	}
	s, err = New(Config{Source: newFakeSource(), Listen: []string{"0.0.0.0:5353"}, ResolvConf: rc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if ups := s.Upstreams(); !slices.Equal(ups, []string{"127.0.0.1:53"}) {
		t.Fatalf("upstreams %v, want 127.0.0.1:53 (another port)", ups)
	}
	s, err = New(Config{Source: newFakeSource(), Listen: []string{"0.0.0.0:53"}, ResolvConf: rc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if ups := s.Upstreams(); len(ups) != 0 {
		t.Fatalf("upstreams %v, want none (a wildcard listen on the same port is the server itself)", ups)
	}

	if s, err = New(Config{Source: newFakeSource(), Listen: []string{"127.0.0.1:53"}, ResolvConf: filepath.Join(dir, "missing"), Logger: quiet}); err != nil || len(s.Upstreams()) != 0 {
		t.Fatalf("no resolv.conf: %v, upstreams %v", err, s.Upstreams())
	}
	s2 := startServer(t, Config{Source: newFakeSource(), Upstreams: []string{}})
	if m := query(t, s2, "udp", "example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream: rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
}

func TestConfig(t *testing.T) {
	src := newFakeSource()
	for _, cfg := range []Config{
		{Listen: []string{"127.0.0.1:53"}},
		{Source: src},
		{Source: src, Listen: []string{"localhost:53"}},
		{Source: src, Listen: []string{"127.0.0.1:53"}, Domain: "bad domain"},
		{Source: src, Listen: []string{"127.0.0.1:53"}, TTL: time.Millisecond},
		{Source: src, Listen: []string{"127.0.0.1:53"}, Upstreams: []string{"dns.google"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestClusterZone(t *testing.T) {
	for cluster, want := range map[string]string{"default": "default.vessel.local", "Prod_1": "prod_1.vessel.local", "": "", "a.b": "", "-x": ""} {
		got, ok := ClusterZone(cluster, "vessel.local.")
		if got != want || ok != (want != "") {
			t.Errorf("ClusterZone(%q) = %q %v, want %q", cluster, got, ok, want)
		}
	}
}

// TestNamesOf: the names of tasks are the same whatever order the tasks
// come in (so that equal names encode equally on every replica), hold the
// clusters of every task and only the tasks that answer under their own
// name, and come through JSON (the agent protocol) unchanged.
func TestNamesOf(t *testing.T) {
	healthy := task.Container{Name: "app", Essential: true, HealthCheck: &task.HealthCheck{Command: []string{"CMD", "true"}}, HealthStatus: task.HealthHealthy,
		Ports: []task.Port{{ContainerPort: 80, Protocol: "tcp", Name: "http"}}}
	sick := healthy
	sick.HealthStatus = task.HealthUnhealthy
	stopped := running("t4", "other", "", "10.0.0.4")
	stopped.LastStatus = task.StatusStopped
	tasks := []*task.Task{
		running("t3", "default", "service:web", "10.0.0.3", sick),
		running("t1", "default", "service:web", "10.0.0.1", healthy),
		running("t2", "default", "", "10.0.0.2"),
		stopped,
		running("t5", "default", "service:web", ""),
	}
	n := NamesOf(tasks)
	want := Names{Clusters: []string{"default", "other"}, Records: []Record{
		{TaskID: "t1", Cluster: "default", Service: "web", IP: netip.MustParseAddr("10.0.0.1"), Serving: true, Ports: []Port{{Port: 80, Name: "http", Protocol: "tcp"}}},
		{TaskID: "t2", Cluster: "default", IP: netip.MustParseAddr("10.0.0.2")},
		{TaskID: "t3", Cluster: "default", Service: "web", IP: netip.MustParseAddr("10.0.0.3"), Ports: []Port{{Port: 80, Name: "http", Protocol: "tcp"}}},
	}}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("NamesOf:\n%+v\nwant\n%+v", n, want)
	}
	slices.Reverse(tasks)
	if again := NamesOf(tasks); !reflect.DeepEqual(again, n) {
		t.Fatalf("NamesOf depends on the tasks' order:\n%+v\n%+v", again, n)
	}
	data, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back Names
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back, n) {
		t.Fatalf("through JSON: %+v, %v; want %+v", back, err, n)
	}
}
