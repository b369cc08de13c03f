package task

import (
	"net/netip"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// DNSConfig is the resolver configuration of a task: what the host agent
// writes into the task's /etc/resolv.conf. A task without one gets a copy
// of its host's resolvers.
type DNSConfig struct {
	// Nameservers are IP addresses, at most MaxNameservers.
	Nameservers []string `json:"nameservers,omitempty"`
	// Searches are the search domains, at most MaxSearches.
	Searches []string `json:"searches,omitempty"`
	// Options are resolv.conf options such as "ndots:5" or "edns0".
	Options []string `json:"options,omitempty"`
}

// Limits of a DNSConfig, those of glibc's and musl's resolvers (and of
// Kubernetes' dnsConfig).
const (
	MaxNameservers = 3
	MaxSearches    = 32
)

// Clone returns a deep copy of c; nil stays nil.
func (c *DNSConfig) Clone() *DNSConfig {
	if c == nil {
		return nil
	}
	return &DNSConfig{
		Nameservers: append([]string(nil), c.Nameservers...),
		Searches:    append([]string(nil), c.Searches...),
		Options:     append([]string(nil), c.Options...),
	}
}

// Validate checks c: at most MaxNameservers nameservers, each an IP
// address; at most MaxSearches search domains, each a DNS name (a trailing
// dot is allowed); options of resolv.conf's form, a name of letters, digits,
// '-' and '_' with an optional ":value" of one word. A nil config is valid.
// Errors are of kind errdefs.ErrInvalidArgument.
func (c *DNSConfig) Validate() error {
	if c == nil {
		return nil
	}
	if len(c.Nameservers) > MaxNameservers {
		return errdefs.InvalidArgument("dns: %d nameservers given; at most %d are accepted", len(c.Nameservers), MaxNameservers)
	}
	for _, ns := range c.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			return errdefs.InvalidArgument("dns: nameserver %q is not an IP address; give one such as 10.0.0.2 or fd00::53", ns)
		}
	}
	if len(c.Searches) > MaxSearches {
		return errdefs.InvalidArgument("dns: %d search domains given; at most %d are accepted", len(c.Searches), MaxSearches)
	}
	for _, s := range c.Searches {
		if !ValidDNSName(s) {
			return errdefs.InvalidArgument("dns: search domain %q is not a DNS name; give dot-separated labels of letters, digits and '-', such as default.vessel.local", s)
		}
	}
	for _, o := range c.Options {
		if !validResolvOption(o) {
			return errdefs.InvalidArgument("dns: option %q is not a resolv.conf option; give a name with an optional :value, such as ndots:5 or edns0", o)
		}
	}
	return nil
}

// ValidDNSName reports whether s is a DNS name: at most 253 characters
// (not counting a trailing dot), dot-separated labels of 1 to 63 letters,
// digits and '-' that neither start nor end with '-'.
func ValidDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}

func validResolvOption(o string) bool {
	name, value, hasValue := strings.Cut(o, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	if !hasValue {
		return true
	}
	return value != "" && !strings.ContainsAny(value, " \t\r\n#;:")
}

// ResolvConf renders c as the content of a resolv.conf.
func (c *DNSConfig) ResolvConf() []byte {
	var b strings.Builder
	for _, ns := range c.Nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(c.Searches) > 0 {
		b.WriteString("search " + strings.Join(c.Searches, " ") + "\n")
	}
	if len(c.Options) > 0 {
		b.WriteString("options " + strings.Join(c.Options, " ") + "\n")
	}
	return []byte(b.String())
}
