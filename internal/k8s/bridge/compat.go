package bridge

import (
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"

	"vessel.dev/vessel/internal/k8s/podtask"
	"vessel.dev/vessel/internal/runtime"
	"vessel.dev/vessel/internal/task"
)

// setToken hands the pod's service-account token to Convert.
func setToken(in *podtask.Inputs, tok string) { in.ServiceAccountToken = tok }

// setResize forwards terminal size changes to an exec.
func setResize(p *runtime.ExecProcess, ch <-chan api.TermSize) {
	if ch == nil {
		return
	}
	out := make(chan runtime.TerminalSize, 1)
	p.Resize = out
	go func() {
		defer close(out)
		for s := range ch {
			out <- runtime.TerminalSize{Width: s.Width, Height: s.Height}
		}
	}()
}

// previousRun returns when the container's previous run started and
// ended, for `kubectl logs --previous`.
func previousRun(c *task.Container) (start, end time.Time, ok bool) {
	if c.LastFinishedAt.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	return c.LastStartedAt, c.LastFinishedAt, true
}
