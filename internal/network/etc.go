package network

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// writeEtcFiles writes hosts, hostname and resolv.conf into dir.
func writeEtcFiles(dir string, ip netip.Addr, hostname string, nameservers []netip.Addr, search []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create /etc directory: %w", err)
	}
	short, _, _ := strings.Cut(hostname, ".")
	names := hostname
	if short != hostname {
		names += " " + short
	}
	hosts := "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		ip.String() + "\t" + names + "\n"

	var rc strings.Builder
	for _, ns := range nameservers {
		fmt.Fprintf(&rc, "nameserver %s\n", ns)
	}
	if len(search) > 0 {
		fmt.Fprintf(&rc, "search %s\n", strings.Join(search, " "))
	}
	files := map[string]string{
		"hosts":       hosts,
		"hostname":    hostname + "\n",
		"resolv.conf": rc.String(),
	}
	for name, content := range files {
		if err := writeFileDurable(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
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
