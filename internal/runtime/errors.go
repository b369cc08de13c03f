package runtime

import "vessel.dev/vessel/internal/errdefs"

// The errors every back end gives for the same faults, in the same words.

// AlreadyStarted is Start's error for a container started before.
func AlreadyStarted(id, container string) error {
	return errdefs.Conflict("container %q of sandbox %s was already started", container, id)
}

// NeverStarted is Restart's error for a container never started.
func NeverStarted(id, container string) error {
	return errdefs.Conflict("container %q of sandbox %s was never started; Start it first", container, id)
}

// StillRuns is Restart's error for a container that has not exited.
func StillRuns(id, container string) error {
	return errdefs.Conflict("container %q of sandbox %s still runs; only an exited container can be restarted", container, id)
}

// SandboxNotFound is the error, of kind errdefs.ErrNotFound, for a
// sandbox the runtime does not hold.
func SandboxNotFound(id string) error { return errdefs.NotFound("sandbox %s not found", id) }

// ContainerNotFound is the error, of kind errdefs.ErrNotFound, for a
// container the sandbox does not have.
func ContainerNotFound(id, container string) error {
	return errdefs.NotFound("container %q not found in sandbox %s", container, id)
}
