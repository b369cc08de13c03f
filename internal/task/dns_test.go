package task

import (
	"encoding/json"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestDNSConfigValidate(t *testing.T) {
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	tests := []struct {
		name string
		c    *DNSConfig
		bad  string // part of the error; "" = valid
	}{
		{"nil", nil, ""},
		{"empty", &DNSConfig{}, ""},
		{"full", &DNSConfig{Nameservers: []string{"10.0.0.2", "fd00::53", "1.1.1.1"},
			Searches: []string{"default.vessel.local", "svc.cluster.local.", "example-1.com"},
			Options:  []string{"ndots:5", "edns0", "timeout:2", "single-request-reopen"}}, ""},
		{"four nameservers", &DNSConfig{Nameservers: many(4, "10.0.0.1")}, "at most 3"},
		{"name as nameserver", &DNSConfig{Nameservers: []string{"dns.google"}}, "not an IP address"},
		{"33 searches", &DNSConfig{Searches: many(33, "a.example")}, "at most 32"},
		{"search with space", &DNSConfig{Searches: []string{"a b"}}, "not a DNS name"},
		{"search leading dash", &DNSConfig{Searches: []string{"-a.example"}}, "not a DNS name"},
		{"empty search", &DNSConfig{Searches: []string{""}}, "not a DNS name"},
		{"long label", &DNSConfig{Searches: []string{strings.Repeat("a", 64) + ".example"}}, "not a DNS name"},
		{"option with space", &DNSConfig{Options: []string{"ndots:5 rotate"}}, "not a resolv.conf option"},
		{"option empty value", &DNSConfig{Options: []string{"ndots:"}}, "not a resolv.conf option"},
		{"option no name", &DNSConfig{Options: []string{":5"}}, "not a resolv.conf option"},
		{"option newline", &DNSConfig{Options: []string{"edns0\nnameserver 1.2.3.4"}}, "not a resolv.conf option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.bad == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tt.bad != "" && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.bad)):
				t.Fatalf("Validate: %v, want invalid argument with %q", err, tt.bad)
			}
		})
	}
}

func TestDNSConfigCloneAndJSON(t *testing.T) {
	tk := &Task{ID: "t1", DNS: &DNSConfig{Nameservers: []string{"10.0.0.2"}, Searches: []string{"a.local"}, Options: []string{"ndots:5"}}}
	c := tk.Clone()
	c.DNS.Nameservers[0], c.DNS.Searches[0], c.DNS.Options[0] = "x", "y", "z"
	if tk.DNS.Nameservers[0] != "10.0.0.2" || tk.DNS.Searches[0] != "a.local" || tk.DNS.Options[0] != "ndots:5" {
		t.Fatalf("Clone shares the DNS config: %+v", tk.DNS)
	}
	if (&Task{}).Clone().DNS != nil {
		t.Fatal("Clone of a task without DNS has one")
	}
	b, _ := json.Marshal(tk)
	if !strings.Contains(string(b), `"dns":{"nameservers":["10.0.0.2"],"searches":["a.local"],"options":["ndots:5"]}`) {
		t.Errorf("JSON: %s", b)
	}
	b, _ = json.Marshal(&Task{})
	if strings.Contains(string(b), "dns") {
		t.Errorf("JSON of a task without DNS: %s", b)
	}
	if got := string(tk.DNS.ResolvConf()); got != "nameserver 10.0.0.2\nsearch a.local\noptions ndots:5\n" {
		t.Errorf("ResolvConf = %q", got)
	}
}
