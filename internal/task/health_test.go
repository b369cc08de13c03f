package task

import "testing"

func TestHealth(t *testing.T) {
	hc := &HealthCheck{Command: []string{"CMD", "true"}}
	c := func(essential bool, check *HealthCheck, status string) Container {
		return Container{Name: "c", Essential: essential, HealthCheck: check, HealthStatus: status}
	}
	for _, tc := range []struct {
		name       string
		containers []Container
		want       string
	}{
		{"no containers", nil, HealthUnknown},
		{"no health checks", []Container{c(true, nil, "")}, HealthUnknown},
		{"healthy", []Container{c(true, hc, HealthHealthy), c(true, nil, "")}, HealthHealthy},
		{"unhealthy", []Container{c(true, hc, HealthHealthy), c(true, hc, HealthUnhealthy)}, HealthUnhealthy},
		{"a non-essential container does not count", []Container{c(true, hc, HealthHealthy), c(false, hc, HealthUnhealthy)}, HealthHealthy},
		// The first container not yet known decides, as ECS's: UNKNOWN.
		{"unknown before unhealthy", []Container{c(true, hc, HealthUnknown), c(true, hc, HealthUnhealthy)}, HealthUnknown},
		{"not yet reported", []Container{c(true, hc, "")}, HealthUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Task{Containers: tc.containers}).Health(); got != tc.want {
				t.Errorf("Health() = %s, want %s", got, tc.want)
			}
		})
	}
}
