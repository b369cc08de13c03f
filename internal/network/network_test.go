package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

// Tests in this file need neither root nor netlink.

func TestOpenValidation(t *testing.T) {
	p := netip.MustParsePrefix
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state dir", Config{}, "StateDir is required"},
		{"ipv6", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("fd00::/64")}}}, "not an IPv4 prefix"},
		{"too small", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.1.0/31")}}}, "use /8 to /30"},
		{"host bits", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.1.5/24")}}}, "use 10.89.1.0/24"},
		{"no name", Config{StateDir: dir, Subnets: []Subnet{{CIDR: p("10.89.1.0/24")}}}, "no name"},
		{"dup name", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.1.0/24")}, {Name: "a", CIDR: p("10.89.2.0/24")}}}, "configured twice"},
		{"slice outside", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.0.0/16"), Slice: p("10.90.1.0/24")}}}, "not a prefix inside"},
		{"slice larger", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.0.0/16"), Slice: p("10.88.0.0/15")}}}, "not a prefix inside"},
		{"slice host bits", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.0.0/16"), Slice: p("10.89.1.1/24")}}}, "not a prefix inside"},
		{"slice of no task address", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.0.0/16"), Slice: p("10.89.0.0/31")}}}, "leaves no address"},
		{"overlap", Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.0.0/16")}, {Name: "b", CIDR: p("10.89.2.0/24")}}}, "overlaps"},
		{"bad dns", Config{StateDir: dir, DNSServers: []string{"dns.example"}}, "not an IP address"},
		{"bad search", Config{StateDir: dir, SearchDomains: []string{"a b"}}, "not a valid DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.cfg)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: got %v, want invalid argument containing %q", err, tt.want)
			}
		})
	}
	m, err := Open(Config{StateDir: dir, Subnets: []Subnet{{Name: "a", CIDR: p("10.89.1.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.List()) != 0 {
		t.Fatal("fresh manager has attachments")
	}
}

func TestBridgeName(t *testing.T) {
	a := bridgeName(Subnet{Name: "subnet-default", CIDR: netip.MustParsePrefix("10.89.0.0/16")})
	b := bridgeName(Subnet{Name: "subnet-default", CIDR: netip.MustParsePrefix("10.90.0.0/16")})
	if len(a) > 15 || !strings.HasPrefix(a, "vsl-") || a == b {
		t.Fatalf("bridge names %q %q", a, b)
	}
}

func TestNextFree(t *testing.T) {
	a := netip.MustParseAddr
	p24 := netip.MustParsePrefix("10.89.1.0/24")
	p30 := netip.MustParsePrefix("10.89.1.0/30")
	set := func(addrs ...string) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, s := range addrs {
			m[a(s)] = true
		}
		return m
	}
	tests := []struct {
		name   string
		p      netip.Prefix
		last   netip.Addr
		used   map[netip.Addr]bool
		want   string // "" = full
		usable int
	}{
		{"first skips network and gateway", p24, netip.Addr{}, nil, "10.89.1.2", 253},
		{"after last", p24, a("10.89.1.7"), nil, "10.89.1.8", 253},
		{"skips used", p24, a("10.89.1.7"), set("10.89.1.8", "10.89.1.9"), "10.89.1.10", 253},
		{"released one not reused", p24, a("10.89.1.4"), set("10.89.1.2", "10.89.1.4"), "10.89.1.5", 253},
		{"wraps and skips broadcast", p24, a("10.89.1.254"), set("10.89.1.2"), "10.89.1.3", 253},
		{"last outside range", p24, a("10.1.1.1"), nil, "10.89.1.2", 253},
		{"/30 one address", p30, netip.Addr{}, nil, "10.89.1.2", 1},
		{"/30 full", p30, a("10.89.1.2"), set("10.89.1.2"), "", 1},
		{"/30 reuse after wrap", p30, a("10.89.1.2"), nil, "10.89.1.2", 1},
		// Slices of 10.89.0.0/16, whose gateway is 10.89.0.1.
		{"first slice skips the subnet's gateway", netip.MustParsePrefix("10.89.0.0/24"), netip.Addr{}, nil, "10.89.0.2", 253},
		{"other slice starts at its first address", netip.MustParsePrefix("10.89.7.0/24"), netip.Addr{}, nil, "10.89.7.1", 254},
		{"other slice skips its broadcast", netip.MustParsePrefix("10.89.7.0/24"), a("10.89.7.254"), set("10.89.7.1"), "10.89.7.2", 254},
		{"last slice skips the subnet's broadcast", netip.MustParsePrefix("10.89.255.0/24"), a("10.89.255.253"), nil, "10.89.255.254", 254},
		{"small slice", netip.MustParsePrefix("10.89.3.4/30"), netip.Addr{}, set("10.89.3.5"), "10.89.3.6", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := tt.p.Masked().Addr().Next()
			if !tt.p.Contains(a("10.89.1.1")) {
				gw = a("10.89.0.1") // a slice of 10.89.0.0/16
			}
			got, ok := nextFree(tt.p, gw, tt.last, tt.used)
			if tt.want == "" {
				if ok {
					t.Fatalf("got %v, want full", got)
				}
			} else if !ok || got != a(tt.want) {
				t.Fatalf("got %v %v, want %s", got, ok, tt.want)
			}
			if n := usableCount(tt.p, gw); n != tt.usable {
				t.Fatalf("usable %d, want %d", n, tt.usable)
			}
		})
	}
}

func TestEtcFiles(t *testing.T) {
	dir := t.TempDir()
	ip := netip.MustParseAddr("10.89.1.2")
	err := writeEtcFiles(filepath.Join(dir, "etc"), ip, "web.internal", "", resolvConf{
		nameservers: []netip.Addr{netip.MustParseAddr("10.89.1.1")},
		search:      []string{"svc.local", "local"},
		options:     []string{"ndots:5", "edns0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, "etc", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	hosts := read("hosts")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost", "10.89.1.2\tweb.internal web\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if got := read("hostname"); got != "web.internal\n" {
		t.Errorf("hostname = %q", got)
	}
	if got, want := read("resolv.conf"), "nameserver 10.89.1.1\nsearch svc.local local\noptions ndots:5 edns0\n"; got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}

	// A hostname with a domain (a pod's subdomain): the fully qualified
	// name first, the hostname after it; the UTS name is the hostname.
	if err := writeEtcFiles(filepath.Join(dir, "etc"), ip, "web-0", "nginx.default.svc.cluster.local", resolvConf{}); err != nil {
		t.Fatal(err)
	}
	if hosts := read("hosts"); !strings.HasSuffix(hosts, "\n10.89.1.2\tweb-0.nginx.default.svc.cluster.local web-0\n") {
		t.Errorf("hosts of web-0 in nginx.default.svc.cluster.local:\n%s", hosts)
	}
	if got := read("hostname"); got != "web-0\n" {
		t.Errorf("hostname = %q, want web-0", got)
	}
}

func TestCheckDNS(t *testing.T) {
	rc, err := checkDNS(&DNS{Nameservers: []string{"10.0.0.1", " fd00::53"}, Searches: []string{"default.vessel.local."}, Options: []string{"ndots:5"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.nameservers) != 2 || rc.nameservers[1] != netip.MustParseAddr("fd00::53") || rc.search[0] != "default.vessel.local." || rc.options[0] != "ndots:5" {
		t.Errorf("checkDNS = %+v", rc)
	}
	if rc, err := checkDNS(&DNS{Searches: []string{"a.b"}}); err != nil || rc.nameservers != nil {
		t.Errorf("no nameservers: %+v, %v; want nil nameservers (the manager's)", rc, err)
	}
	for _, bad := range []*DNS{
		{Nameservers: []string{"dns.example.com"}},
		{Searches: []string{"bad domain"}},
		{Options: []string{"ndots:5 rotate"}},
		{Options: []string{""}},
	} {
		if _, err := checkDNS(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("checkDNS(%+v) = %v, want invalid argument", bad, err)
		}
	}
}

func TestNameservers(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sub := &subnetState{gateway: netip.MustParseAddr("10.89.1.1")}
	m := &Manager{}

	m.hostResolvConf = write("# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch lan\n")
	if got := m.nameservers(sub); !slices.Equal(got, []netip.Addr{sub.gateway}) {
		t.Errorf("only loopback on host: got %v, want the gateway", got)
	}
	m.hostResolvConf = write("nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\n")
	if got, want := m.nameservers(sub), []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}; !slices.Equal(got, want) {
		t.Errorf("mixed host: got %v, want %v", got, want)
	}
	m.dns = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	if got := m.nameservers(sub); !slices.Equal(got, m.dns) {
		t.Errorf("configured: got %v", got)
	}
	m.dns = nil
	m.hostResolvConf = filepath.Join(dir, "missing")
	if got := m.nameservers(sub); !slices.Equal(got, []netip.Addr{sub.gateway}) {
		t.Errorf("no host file: got %v", got)
	}
}

func TestMasqueradeRule(t *testing.T) {
	s := Subnet{Name: "subnet-a", CIDR: netip.MustParsePrefix("10.89.4.0/24"), NAT: true}
	got := masqueradeRule(s, "vsl-0123456789a")
	want := []string{"-s", "10.89.4.0/24", "!", "-o", "vsl-0123456789a", "-m", "comment", "--comment", "vessel subnet subnet-a", "-j", "MASQUERADE"}
	if !slices.Equal(got, want) {
		t.Fatalf("rule = %q\nwant   %q", got, want)
	}
}

func TestLeaseFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "leases.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{StateDir: dir}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Open with corrupt leases: %v", err)
	}
}

func TestInvalidTaskIDs(t *testing.T) {
	m, err := Open(Config{StateDir: t.TempDir(), Subnets: []Subnet{{Name: "a", CIDR: netip.MustParsePrefix("10.89.1.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "..", "../x", "a/b", ".hidden", strings.Repeat("x", 200)} {
		if _, err := m.Attach(t.Context(), id, "a", AttachOptions{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Attach(%q): %v, want invalid argument", id, err)
		}
		if err := m.Detach(t.Context(), id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Detach(%q): %v, want invalid argument", id, err)
		}
	}
	if _, err := m.Attach(t.Context(), "t1", "a", AttachOptions{Hostname: "bad host\n"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad hostname: %v", err)
	}
	for _, o := range []AttachOptions{{Domain: "svc.local"}, {Hostname: "web-0", Domain: "bad_domain.svc"},
		{Hostname: "web-0", Domain: strings.Repeat("a.", 124) + "a"}} {
		if _, err := m.Attach(t.Context(), "t1", "a", o); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "domain") && !strings.Contains(err.Error(), "DNS name") {
			t.Errorf("Attach with %+v: %v, want invalid argument about the domain", o, err)
		}
	}
	if _, err := m.Attach(t.Context(), "t1", "nope", AttachOptions{}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "configured subnets: a") {
		t.Errorf("unknown subnet: %v", err)
	}
	m.Close()
	if _, err := m.Attach(t.Context(), "t1", "a", AttachOptions{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("after Close: %v", err)
	}
}

// TestCheckHostname: the one rule for a sandbox's hostname, which
// task.New, the bridge, Attach and Rekey all apply.
func TestCheckHostname(t *testing.T) {
	for _, h := range []string{"web-0", "a", "ip-10-0-0-2", "web.svc.local", strings.Repeat("a", 63), "x" + strings.Repeat(".y", 31), "xx" + strings.Repeat(".y", 31)} {
		if err := CheckHostname(h); err != nil {
			t.Errorf("CheckHostname(%q) = %v; want it accepted", h, err)
		}
	}
	for _, h := range []string{"", strings.Repeat("a", 64), "xxx" + strings.Repeat(".y", 31), "web_0", "web 0", "-web", "web-", ".web", "web.", "web..0", "web-.a", "a.-b"} {
		if err := CheckHostname(h); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "at most 64 characters") {
			t.Errorf("CheckHostname(%q) = %v; want an invalid argument saying what is accepted", h, err)
		}
	}
}
