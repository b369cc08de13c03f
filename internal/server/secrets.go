package server

import (
	"net/http"
	"slices"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
)

// serveSecrets hands a Secrets Manager or SSM request (X-Amz-Target
// secretsmanager.* or AmazonSSM.*), verified and authorised, to
// the secrets store.
func (s *Server) serveSecrets(w http.ResponseWriter, r *http.Request) {
	action, _ := secrets.Action(r.Header.Get("X-Amz-Target"))
	if !slices.Contains(secrets.Actions(), action) {
		action = "secrets:unknown" // a bounded set of metric labels
	}
	s.metrics.setOperation(r, action)
	if s.secrets == nil {
		s.writeECSError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "this control plane serves no secrets store: Secrets Manager and SSM operations are not available"})
		return
	}
	s.secrets.ServeHTTP(w, r)
}
