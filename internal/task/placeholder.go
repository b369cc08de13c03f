package task

import (
	"net/netip"
	"strings"
)

// Placeholders for what is known only once a task has its IP. Whoever makes
// a task before it is placed (the Kubernetes bridge) writes them into a
// container's Environment, EntryPoint and Command; the host agent replaces
// them with ExpandPlaceholders once it has attached the task to its subnet.
const (
	PlaceholderPodIP    = "__VESSEL_POD_IP__"
	PlaceholderNodeName = "__VESSEL_NODE_NAME__"
)

// NodeNameForIP is the name of the virtual node of the task with IP ip:
// "vessel-ip-10-0-1-7" for 10.0.1.7 (colons become '-' for IPv6). It is ""
// for an empty ip.
func NodeNameForIP(ip string) string {
	if ip == "" {
		return ""
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.Unmap().String()
	}
	r := strings.NewReplacer(".", "-", ":", "-")
	return "vessel-ip-" + strings.Trim(r.Replace(strings.ToLower(ip)), "-")
}

// ExpandPlaceholders returns a copy of c whose Environment values,
// EntryPoint and Command have PlaceholderPodIP replaced by ip and
// PlaceholderNodeName by NodeNameForIP(ip). With an empty ip (a simulated
// sandbox has none) c is returned unchanged. c is not modified.
func ExpandPlaceholders(c Container, ip string) Container {
	if ip == "" {
		return c
	}
	r := strings.NewReplacer(PlaceholderPodIP, ip, PlaceholderNodeName, NodeNameForIP(ip))
	expand := func(in []string) []string {
		if in == nil {
			return nil
		}
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = r.Replace(s)
		}
		return out
	}
	c.EntryPoint = expand(c.EntryPoint)
	c.Command = expand(c.Command)
	if c.Environment != nil {
		env := make(map[string]string, len(c.Environment))
		for k, v := range c.Environment {
			env[k] = r.Replace(v)
		}
		c.Environment = env
	}
	return c
}
