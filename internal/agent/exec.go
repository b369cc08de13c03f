package agent

import (
	"context"
	"net/http"

	"vessel.dev/vessel/internal/agentproto"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/runtime"
)

var _ runtime.Execer = (*Agent)(nil)

// Exec implements runtime.Execer for the tasks this host runs: id is the
// task's ID (its sandbox's). A task the host does not run is an error of
// kind errdefs.ErrNotFound; a runtime without exec one of kind
// errdefs.ErrInvalidArgument.
func (a *Agent) Exec(ctx context.Context, id, container string, p runtime.ExecProcess) (int, error) {
	ex, err := a.execer(id)
	if err != nil {
		return -1, err
	}
	return ex.Exec(ctx, id, container, p)
}

// execer returns the Execer of the runtime that runs task id.
func (a *Agent) execer(id string) (runtime.Execer, error) {
	a.mu.Lock()
	w := a.workers[id]
	a.mu.Unlock()
	if w == nil {
		return nil, errdefs.NotFound("task %s does not run on host %s", id, a.cfg.Host.ID)
	}
	ex, ok := w.rt.(runtime.Execer)
	if !ok {
		return nil, errdefs.InvalidArgument("task %s runs on the %s runtime, which cannot exec", id, w.rt.Name())
	}
	return ex, nil
}

// Handler serves the agent's HTTP endpoint (Host.LogsEndpoint) for a
// control plane: GET /agent/v1/logs/{task} (agentproto.ServeLogs), POST
// /agent/v1/exec/{task} (agentproto.ServeExec) and POST
// /agent/v1/portforward/{task}?port=N (agentproto.ServePortForward, to
// the task's own address only: DialTaskPort). The caller authenticates
// requests before they reach it (auth.Verifier.Middleware).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/v1/logs/{task}", func(w http.ResponseWriter, r *http.Request) {
		agentproto.ServeLogs(w, r, a, r.PathValue("task"))
	})
	mux.HandleFunc("POST /agent/v1/exec/{task}", func(w http.ResponseWriter, r *http.Request) {
		agentproto.ServeExec(w, r, &execTarget{a: a, id: r.PathValue("task")})
	})
	mux.HandleFunc("POST /agent/v1/portforward/{task}", func(w http.ResponseWriter, r *http.Request) {
		agentproto.ServePortForward(w, r, portTarget{a: a, id: r.PathValue("task")})
	})
	return mux
}

// execTarget is one task's agentproto.ExecTarget.
type execTarget struct {
	a  *Agent
	id string
}

func (t *execTarget) CheckExec(ctx context.Context, container string) error {
	_, err := t.a.execer(t.id)
	return err
}

func (t *execTarget) Exec(ctx context.Context, container string, p runtime.ExecProcess) (int, error) {
	return t.a.Exec(ctx, t.id, container, p)
}
