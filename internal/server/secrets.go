package server

import (
	"net/http"
	"slices"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
)

// serveSecrets hands a Secrets Manager or SSM request (X-Amz-Target
// secretsmanager.* or AmazonSSM.*), verified and authorised, to
// Config.Secrets.
func (s *Server) serveSecrets(w http.ResponseWriter, r *http.Request) {
	action, _ := secrets.Action(r.Header.Get("X-Amz-Target"))
	if !slices.Contains(secrets.Actions(), action) {
		action = "secrets:unknown" // a bounded set of metric labels
	}
	s.metrics.setOperation(r, action)
	if s.cfg.Secrets == nil {
		s.writeECSError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "this control plane serves no secrets store: Secrets Manager and SSM operations are not available"})
		return
	}
	s.cfg.Secrets.ServeHTTP(w, r)
}
