package network

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/fsutil"
)

// resolvConf is the content of a task's resolv.conf.
type resolvConf struct {
	nameservers []netip.Addr
	search      []string
	options     []string
}

// checkDNS checks a task's DNS wishes and returns them as a resolvConf
// (nameservers nil when none are given). Errors are ErrInvalidArgument.
func checkDNS(d *DNS) (resolvConf, error) {
	var rc resolvConf
	if d == nil {
		return rc, nil
	}
	for _, ns := range d.Nameservers {
		a, err := netip.ParseAddr(strings.TrimSpace(ns))
		if err != nil {
			return rc, errdefs.InvalidArgument("network: DNS nameserver %q is not an IP address", ns)
		}
		rc.nameservers = append(rc.nameservers, a)
	}
	for _, s := range d.Searches {
		if !validDNSName(strings.TrimSuffix(s, ".")) {
			return rc, errdefs.InvalidArgument("network: search domain %q is not a valid DNS name", s)
		}
		rc.search = append(rc.search, s)
	}
	for _, o := range d.Options {
		if o == "" || strings.ContainsAny(o, " \t\r\n#;") {
			return rc, errdefs.InvalidArgument("network: resolv.conf option %q is not one word such as ndots:5", o)
		}
		rc.options = append(rc.options, o)
	}
	return rc, nil
}

// writeEtcFiles writes hosts, hostname and resolv.conf into dir. hosts
// names ip by its fully qualified name first (hostname.domain, or a
// hostname with dots), then by the first label alone.
func writeEtcFiles(dir string, ip netip.Addr, hostname, domain string, r resolvConf) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create /etc directory: %w", err)
	}
	fqdn := hostname
	if domain != "" {
		fqdn += "." + domain
	}
	short, _, _ := strings.Cut(fqdn, ".")
	names := fqdn
	if short != fqdn {
		names += " " + short
	}
	hosts := "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		ip.String() + "\t" + names + "\n"

	var rc strings.Builder
	for _, ns := range r.nameservers {
		fmt.Fprintf(&rc, "nameserver %s\n", ns)
	}
	if len(r.search) > 0 {
		fmt.Fprintf(&rc, "search %s\n", strings.Join(r.search, " "))
	}
	if len(r.options) > 0 {
		fmt.Fprintf(&rc, "options %s\n", strings.Join(r.options, " "))
	}
	files := map[string]string{
		"hosts":       hosts,
		"hostname":    hostname + "\n",
		"resolv.conf": rc.String(),
	}
	// Not synced: the files go with the task's sandbox, which a machine's
	// crash ends too, and Attach writes them again for a lease it rebuilds.
	for name, content := range files {
		if err := fsutil.ReplaceFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// hostNameservers returns the nameservers of the host's resolv.conf that a
// task can reach: not loopback (e.g. systemd-resolved's 127.0.0.53), not
// link-local.
func hostNameservers(path string) []netip.Addr {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			continue
		}
		out = append(out, a)
	}
	return out
}
