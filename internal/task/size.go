package task

import "vessel.dev/vessel/internal/errdefs"

// Ephemeral storage a task gets and may ask for, in GiB, as on Fargate.
const (
	DefaultEphemeralStorageGiB = 20
	MinEphemeralStorageGiB     = 21
	MaxEphemeralStorageGiB     = 200
)

// CheckEphemeralStorage checks an ephemeral storage size asked for in
// field: MinEphemeralStorageGiB..MaxEphemeralStorageGiB. Out of range is
// an error of kind errdefs.ErrInvalidArgument.
func CheckEphemeralStorage(field string, gib int32) error {
	if gib < MinEphemeralStorageGiB || gib > MaxEphemeralStorageGiB {
		return errdefs.InvalidArgument("%s %d is out of range: accepted values are %d..%d",
			field, gib, MinEphemeralStorageGiB, MaxEphemeralStorageGiB)
	}
	return nil
}

// CheckReservations checks that the containers' own reservations fit in
// the task's provisioned size: no container's memory above the task's, and
// the containers' cpu adding up to no more than the task's. A reservation
// that does not fit is an error of kind errdefs.ErrInvalidArgument.
func (t *Task) CheckReservations() error {
	var cpu int64
	for _, c := range t.Containers {
		if c.MemoryMiB > t.MemoryMiB {
			return errdefs.InvalidArgument("container %q: memory %d MiB exceeds the task's %d MiB", c.Name, c.MemoryMiB, t.MemoryMiB)
		}
		cpu += c.CPUUnits
	}
	if cpu > t.CPUUnits {
		return errdefs.InvalidArgument("the containers' cpu adds up to %d units, more than the task's %d", cpu, t.CPUUnits)
	}
	return nil
}
