package discovery

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"vessel.dev/vessel/internal/task"
)

// Names is what the server answers from: the name-relevant part of every
// task of the fleet, small enough for the control plane to send to every
// host (NamesOf makes it from the tasks). Its zero value knows no names.
type Names struct {
	// Clusters are the clusters that have tasks (running or not): their
	// zones exist, so an unknown name in one is NXDOMAIN with its SOA.
	Clusters []string `json:"clusters"`
	// Records are the tasks that answer under their own name: RUNNING,
	// not asked to stop, with an address.
	Records []Record `json:"records"`
}

// Record is one task behind names.
type Record struct {
	TaskID  string `json:"taskId"`
	Cluster string `json:"cluster"`
	// Service is the service's name (the task's Group without
	// ServiceGroupPrefix); empty for a task of no service.
	Service string     `json:"service,omitempty"`
	IP      netip.Addr `json:"ip"`
	// Serving says the task belongs in its service's answers (Serving).
	Serving bool `json:"serving,omitempty"`
	// Ports are the container ports the task declares, in order.
	Ports []Port `json:"ports,omitempty"`
}

// Port is one declared container port.
type Port struct {
	Port     uint16 `json:"port"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// NamesOf returns the names of tasks, in a canonical order (clusters by
// name, records by task ID), so that equal names encode equally.
func NamesOf(tasks []*task.Task) Names {
	n := Names{Clusters: []string{}, Records: []Record{}}
	for _, t := range tasks {
		if _, ok := label(t.Cluster); ok {
			n.Clusters = append(n.Clusters, t.Cluster)
		}
		if !reachable(t) {
			continue
		}
		ip, err := netip.ParseAddr(t.IP)
		if err != nil {
			continue
		}
		r := Record{TaskID: t.ID, Cluster: t.Cluster, IP: ip}
		if svc, ok := strings.CutPrefix(t.Group, ServiceGroupPrefix); ok {
			r.Service, r.Serving = svc, Serving(t)
		}
		for _, c := range t.Containers {
			for _, p := range c.Ports {
				r.Ports = append(r.Ports, Port{Port: uint16(p.ContainerPort), Name: p.Name, Protocol: p.Protocol})
			}
		}
		n.Records = append(n.Records, r)
	}
	slices.Sort(n.Clusters)
	n.Clusters = slices.Compact(n.Clusters)
	slices.SortFunc(n.Records, func(a, b Record) int {
		return cmp.Or(strings.Compare(a.TaskID, b.TaskID), strings.Compare(a.Cluster, b.Cluster))
	})
	return n
}

// ServiceGroupPrefix starts the Group of a service's tasks, as in ECS:
// the tasks of service S have Group "service:S".
const ServiceGroupPrefix = "service:"

// ClusterZone returns the zone of a cluster's names, "<cluster>.<domain>"
// in lower case, and false when the cluster's name is not a DNS label (at
// most 63 letters, digits and '-', as ECS cluster names mostly are).
func ClusterZone(cluster, domain string) (string, bool) {
	l, ok := label(cluster)
	if !ok {
		return "", false
	}
	return l + "." + strings.ToLower(strings.TrimSuffix(domain, ".")), true
}

// label returns s in lower case if it can be one DNS label: 1 to 63
// letters, digits, '-' and '_', not starting or ending with '-'.
func label(s string) (string, bool) {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// Serving reports whether a task's address belongs in its service's
// answers: it is RUNNING, not asked to stop, has an address, and is healthy:
// every essential container with a health check reports HEALTHY and every
// container with a readiness probe is ready (containers without either
// count as healthy).
func Serving(t *task.Task) bool {
	if !reachable(t) {
		return false
	}
	for i := range t.Containers {
		c := &t.Containers[i]
		if c.Essential && c.HealthCheck != nil && c.HealthStatus != task.HealthHealthy {
			return false
		}
		if c.ReadinessProbe != nil && !c.Ready {
			return false
		}
	}
	return true
}

// reachable reports whether a task answers under its own name: RUNNING,
// not asked to stop, with an address. Health does not matter there: whoever
// names one task wants that task.
func reachable(t *task.Task) bool {
	return t.IP != "" && t.LastStatus == task.StatusRunning && t.DesiredStatus != task.StatusStopped
}
