package service

import (
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

// Throttle is ECS's service throttle logic: when a service's tasks keep
// stopping before they reach RUNNING, the planner waits longer and longer
// before it launches the next ones, and says so in an event. A task that
// reaches RUNNING, or a new deployment, ends it. Tasks that stop after
// RUNNING (an exit, a failed health check) do not count, as in ECS.
type Throttle struct {
	// After is how many tasks in a row must fail to start before the first
	// delay; 3 by default.
	After int
	// Delay is the first delay, doubled for each later launch round whose
	// tasks fail again; 10 s by default.
	Delay time.Duration
	// MaxDelay caps the delay; 27 min by default (or Delay, if longer),
	// ECS's documented maximum.
	MaxDelay time.Duration
}

// Service throttle defaults.
const (
	DefaultThrottleAfter    = 3
	DefaultThrottleDelay    = 10 * time.Second
	DefaultThrottleMaxDelay = 27 * time.Minute
)

// Fill sets the defaults of the zero fields, and refuses negative values
// and a MaxDelay shorter than Delay.
func (c *Throttle) Fill() error {
	if c.After < 0 || c.Delay < 0 || c.MaxDelay < 0 {
		return errdefs.InvalidArgument("ServiceThrottle %+v must not be negative (0: the default)", *c)
	}
	if c.After == 0 {
		c.After = DefaultThrottleAfter
	}
	if c.Delay == 0 {
		c.Delay = DefaultThrottleDelay
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = max(DefaultThrottleMaxDelay, c.Delay)
	}
	if c.MaxDelay < c.Delay {
		return errdefs.InvalidArgument("ServiceThrottle.MaxDelay %v is shorter than its Delay %v", c.MaxDelay, c.Delay)
	}
	return nil
}

// delay is the wait of the level-th round (1, 2, ...): Delay doubled
// level-1 times, at most MaxDelay.
func (c Throttle) delay(level int) time.Duration {
	d := c.Delay
	for i := 1; i < level && d < c.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// ThrottleState is a service's throttle state, stored with it so that a
// restarted control plane keeps waiting.
type ThrottleState struct {
	// Level is how many delays the current streak of failures has caused;
	// 0 when the service is not throttled.
	Level int `json:"level,omitempty"`
	// Since opens the window of launches looked at: the primary
	// deployment's tasks created at or after it.
	Since time.Time `json:"since,omitzero"`
	// Until is when the planner may launch again.
	Until time.Time `json:"until,omitzero"`
}
