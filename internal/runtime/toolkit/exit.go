package toolkit

import (
	"context"
	"errors"
	"os"
	"time"

	"vessel.dev/vessel/internal/fsutil"
	"vessel.dev/vessel/internal/runtime"
)

// pollInterval is how often WaitExit looks for a container's exit.
// Polling a file is simpler than inotify and cheap at the scale of one
// host.
const pollInterval = 50 * time.Millisecond

// lostEvery is how many polls pass between two calls of WaitExit's lost:
// about a second.
const lostEvery = 20

// WaitExit is the loop of runtime.Runtime's Wait. It calls exited every
// pollInterval until it reports the container's end (ok) or an error,
// and returns those; ctx's end returns ctx.Err(). About every second it
// calls lost, which says whether the exit can still come: nil to keep
// waiting, or the error to give up with (the sandbox, its VM or the
// container's monitor is gone). Before it gives up it calls exited once
// more, since the exit may have come meanwhile.
func WaitExit(ctx context.Context, exited func() (runtime.ExitStatus, bool, error), lost func() error) (runtime.ExitStatus, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for n := 0; ; n++ {
		st, ok, err := exited()
		if err != nil || ok {
			return st, err
		}
		if n%lostEvery == lostEvery-1 {
			if lerr := lost(); lerr != nil {
				if st, ok, err := exited(); err != nil || ok {
					return st, err
				}
				return runtime.ExitStatus{}, lerr
			}
		}
		select {
		case <-ctx.Done():
			return runtime.ExitStatus{}, ctx.Err()
		case <-ticker.C:
		}
	}
}

// SetAsideExit removes a container's exit file (path) before it runs
// again, and returns the function that puts the file back should the new
// run not start, so that the container still shows as exited; putBack
// joins its own error, if any, to err and returns it. A missing file is
// an error for which errors.Is(err, os.ErrNotExist) holds.
func SetAsideExit(path string) (putBack func(err error) error, err error) {
	last, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil {
		return nil, err
	}
	return func(err error) error {
		if werr := fsutil.WriteFileAtomic(path, last, ""); werr != nil {
			err = errors.Join(err, werr)
		}
		return err
	}, nil
}
