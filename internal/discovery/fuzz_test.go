package discovery

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"vessel.dev/vessel/internal/task"
)

// replyRecorder is the dns.ResponseWriter of one query: it packs what the
// handler writes, as the library's writer does, and keeps the bytes.
type replyRecorder struct {
	remote  net.Addr
	replies [][]byte
	packErr error
}

var _ dns.ResponseWriter = (*replyRecorder)(nil)

func (w *replyRecorder) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *replyRecorder) RemoteAddr() net.Addr { return w.remote }
func (w *replyRecorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		w.packErr = err
		return err
	}
	w.replies = append(w.replies, b)
	return nil
}
func (w *replyRecorder) Write(b []byte) (int, error) {
	w.replies = append(w.replies, append([]byte(nil), b...))
	return len(b), nil
}
func (w *replyRecorder) Close() error        { return nil }
func (w *replyRecorder) TsigStatus() error   { return nil }
func (w *replyRecorder) TsigTimersOnly(bool) {}
func (w *replyRecorder) Hijack()             {}

// FuzzServeDNS hands the server fuzzed query packets (those the DNS library
// parses; the others it drops before the server sees them), over UDP or
// TCP, with an index of a few tasks and no upstream resolvers. Properties:
//   - the server never panics and answers within seconds (no hang);
//   - it writes exactly one reply, which packs, parses back, carries the
//     query's ID and question, and is marked a response;
//   - over UDP the reply fits the size the client advertised (512 bytes
//     without EDNS0);
//   - answers to a question under the task domain name only the question's
//     name, and come with the authoritative bit.
func FuzzServeDNS(f *testing.F) {
	seed := func(name string, qtype uint16, edns bool) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edns {
			m.SetEdns0(4096, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"web.default.vessel.local.", dns.TypeA, false},
		{"web.default.vessel.local.", dns.TypeSRV, true},
		{"_http._tcp.web.default.vessel.local.", dns.TypeSRV, false},
		{"t1.default.vessel.local.", dns.TypeAAAA, false},
		{"default.vessel.local.", dns.TypeSOA, false},
		{"DEFAULT.Vessel.Local.", dns.TypeANY, true},
		{"nope.default.vessel.local.", dns.TypeA, false},
		{"big.default.vessel.local.", dns.TypeA, false},
		{"example.com.", dns.TypeA, false},
		{"vessel.local.", dns.TypeNS, false},
	} {
		f.Add(false, seed(q.name, q.qtype, q.edns))
		f.Add(true, seed(q.name, q.qtype, q.edns))
	}
	two := new(dns.Msg)
	two.SetQuestion("a.default.vessel.local.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	b, _ := two.Pack()
	f.Add(false, b)
	upd := new(dns.Msg)
	upd.SetUpdate("default.vessel.local.")
	b, _ = upd.Pack()
	f.Add(false, b)

	s, err := New(Config{Source: newFakeSource(), Listen: []string{"127.0.0.1:0"}, Upstreams: []string{}, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	var tasks []*task.Task
	for i, ip := range []string{"10.0.0.1", "10.0.0.2", "fd00::3"} {
		t := running([]string{"t1", "t2", "t3"}[i], "default", "service:web", ip)
		t.Containers = []task.Container{{Name: "app", Essential: true, Ports: []task.Port{{ContainerPort: 80, Protocol: "tcp", Name: "http"}, {ContainerPort: 443, Protocol: "tcp"}}}}
		tasks = append(tasks, t)
	}
	// Enough tasks behind one name that an answer needs truncating over UDP.
	for i := range 60 {
		t := running("b"+strings.Repeat("x", i%40)+string(rune('a'+i%26))+string(rune('a'+i/26)), "default", "service:big", "10.1.0."+strconv.Itoa(i+1))
		tasks = append(tasks, t)
	}
	s.ix.Store(buildIndex(NamesOf(tasks), "vessel.local"))

	f.Fuzz(func(t *testing.T, tcp bool, packet []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(packet); err != nil {
			return // the library drops it (or answers FORMERR) itself
		}
		w := &replyRecorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5353}}
		if tcp {
			w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5353}
		}
		done := make(chan struct{})
		go func() { defer close(done); s.ServeDNS(w, r) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeDNS did not return within 10s for %v", r)
		}
		if w.packErr != nil {
			t.Fatalf("the reply to %v does not pack: %v", r, w.packErr)
		}
		if len(w.replies) != 1 {
			t.Fatalf("%d replies to %v, want 1", len(w.replies), r)
		}
		raw := w.replies[0]
		m := new(dns.Msg)
		if err := m.Unpack(raw); err != nil {
			t.Fatalf("the reply to %v does not parse: %v", r, err)
		}
		if m.Id != r.Id || !m.Response {
			t.Fatalf("reply id %d response %v to query id %d", m.Id, m.Response, r.Id)
		}
		if !tcp {
			limit := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				limit = max(int(o.UDPSize()), dns.MinMsgSize)
			}
			if len(raw) > limit {
				t.Fatalf("UDP reply of %d bytes exceeds the client's %d", len(raw), limit)
			}
		}
		if len(r.Question) != 1 || r.Opcode != dns.OpcodeQuery {
			if m.Rcode != dns.RcodeNotImplemented {
				t.Fatalf("query with %d questions and opcode %d: rcode %s, want NOTIMP", len(r.Question), r.Opcode, dns.RcodeToString[m.Rcode])
			}
			return
		}
		q := r.Question[0]
		if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, q.Name) {
			t.Fatalf("reply question %v, want %v", m.Question, q)
		}
		if q.Qclass != dns.ClassINET || !dns.IsSubDomain(s.domain, strings.ToLower(q.Name)) {
			return
		}
		if !m.Authoritative {
			t.Fatalf("answer for %s under the task domain is not authoritative", q.Name)
		}
		for _, rr := range m.Answer {
			if !strings.EqualFold(rr.Header().Name, q.Name) {
				t.Fatalf("answer %v for question %s names another name", rr, q.Name)
			}
		}
	})
}
