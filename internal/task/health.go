package task

// Health is the task's health as ECS derives it from its essential
// containers that have health checks: UNHEALTHY if one is, HEALTHY if all
// are, else UNKNOWN (also when none has a health check).
func (t *Task) Health() string {
	status := HealthUnknown
	for _, c := range t.Containers {
		if !c.Essential || c.HealthCheck == nil {
			continue
		}
		switch c.HealthStatus {
		case HealthUnhealthy:
			return HealthUnhealthy
		case HealthHealthy:
			status = HealthHealthy
		default:
			return HealthUnknown
		}
	}
	return status
}
