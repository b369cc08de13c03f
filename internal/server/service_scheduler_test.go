package server

import (
	"testing"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/service"
	"vessel.dev/vessel/internal/task"
)

// The planner's own tests are internal/service's; here, that what the
// server stores or derives is what it answers.

// TestStatusesAreECS: a stored service's status and a task's health are
// answered as they are, so the models' values must be ECS's.
func TestStatusesAreECS(t *testing.T) {
	for stored, wire := range map[string]string{
		service.StatusActive:   api.ServiceStatusActive,
		service.StatusDraining: api.ServiceStatusDraining,
		service.StatusInactive: api.ServiceStatusInactive,
		task.HealthHealthy:     api.HealthStatusHealthy,
		task.HealthUnhealthy:   api.HealthStatusUnhealthy,
		task.HealthUnknown:     api.HealthStatusUnknown,
	} {
		if stored != wire {
			t.Errorf("stored status %q is answered as ECS's %q", stored, wire)
		}
	}
}
