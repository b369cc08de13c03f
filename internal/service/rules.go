package service

import (
	"fmt"
	"strings"

	"vessel.dev/vessel/internal/task"
)

// CircuitBreakerThreshold is how many tasks of a deployment may fail before
// its circuit breaker trips: min(max(10, desired/2), 200), as ECS.
func CircuitBreakerThreshold(desired int32) int {
	return min(max(10, int(desired+1)/2), 200)
}

// SpreadKey is the placement spread key of a task: the tasks of one service
// are spread across its subnets and hosts; others, and stopping ones, are
// not spread.
func SpreadKey(t *task.Task) string {
	if strings.HasPrefix(t.Group, GroupPrefix) && t.StopCode == "" {
		return t.Cluster + "/" + t.Group
	}
	return ""
}

// taskHealthy reports whether a task counts as healthy for a deployment:
// RUNNING, and every essential container with a health check HEALTHY.
func taskHealthy(t *task.Task) bool {
	if t.LastStatus != task.StatusRunning {
		return false
	}
	for _, c := range t.Containers {
		if c.Essential && c.HealthCheck != nil && c.HealthStatus != task.HealthHealthy {
			return false
		}
	}
	return true
}

func countHealthy(ts []*task.Task) int {
	n := 0
	for _, t := range ts {
		if taskHealthy(t) {
			n++
		}
	}
	return n
}

// taskFailed reports whether a stopped task counts against its deployment:
// it failed to start or its essential container exited.
func taskFailed(t *task.Task) bool {
	return t.Stopped() && (t.StopCode == task.StopCodeTaskFailedToStart || t.StopCode == task.StopCodeEssentialContainerExited)
}

// taskFailedToStart reports whether a stopped task never reached RUNNING
// for a reason of its own (not a stop asked by a user or the scheduler).
func taskFailedToStart(t *task.Task) bool {
	return taskFailed(t) && t.StartedAt.IsZero()
}

// taskList writes task IDs as ECS's events do, "(task a) (task b)", with
// at most 20 named.
func taskList(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if i == 20 {
			fmt.Fprintf(&b, " and %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("(task " + id + ")")
	}
	return b.String()
}
