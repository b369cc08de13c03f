package discovery

import (
	"strings"

	"vessel.dev/vessel/internal/task"
)

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
