package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/errdefs"
)

// apiError is an error with an explicit wire exception name, for the few
// places where the kind alone does not say which exception ECS or EKS uses.
type apiError struct {
	code string
	msg  string
	kind error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func clientException(err error) error {
	return &apiError{code: api.ECSClientException, msg: err.Error(), kind: err}
}

func clusterNotFound(name string) error {
	return &apiError{code: api.ECSClusterNotFoundException, kind: errdefs.ErrNotFound,
		msg: "Cluster not found: " + name + " (create it with CreateCluster, or omit cluster to use \"default\")"}
}

// ecsErrorFor maps an error to an ECS exception name and HTTP status.
func ecsErrorFor(err error) (string, int) {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.code == api.ECSServerException {
			return ae.code, http.StatusInternalServerError
		}
		return ae.code, http.StatusBadRequest
	}
	switch {
	case errdefs.IsPermissionDenied(err):
		return api.ECSAccessDeniedException, http.StatusBadRequest
	case errdefs.IsInvalidArgument(err):
		return api.ECSInvalidParameterException, http.StatusBadRequest
	case errdefs.IsNotFound(err), errdefs.IsAlreadyExists(err), errdefs.IsConflict(err),
		errors.Is(err, errdefs.ErrLimitExceeded):
		return api.ECSClientException, http.StatusBadRequest
	}
	return api.ECSServerException, http.StatusInternalServerError
}

// eksStatus is the HTTP status the EKS model gives each exception that is
// not answered with 400.
var eksStatus = map[string]int{
	api.EKSResourceNotFoundException:    http.StatusNotFound,
	"NotFoundException":                 http.StatusNotFound,
	api.EKSResourceInUseException:       http.StatusConflict,
	api.EKSAccessDeniedException:        http.StatusForbidden,
	"ThrottlingException":               http.StatusTooManyRequests,
	"ResourcePropagationDelayException": http.StatusPreconditionRequired,
	api.EKSServerException:              http.StatusInternalServerError,
	api.EKSServiceUnavailableException:  http.StatusServiceUnavailable,
}

// eksErrorFor maps an error to an EKS exception name and HTTP status.
func eksErrorFor(err error) (string, int) {
	var ae *apiError
	if errors.As(err, &ae) {
		if status, ok := eksStatus[ae.code]; ok {
			return ae.code, status
		}
		return ae.code, http.StatusBadRequest
	}
	switch {
	case errdefs.IsPermissionDenied(err):
		return api.EKSAccessDeniedException, http.StatusForbidden
	case errdefs.IsInvalidArgument(err):
		return api.EKSInvalidParameterException, http.StatusBadRequest
	case errdefs.IsNotFound(err):
		return api.EKSResourceNotFoundException, http.StatusNotFound
	case errdefs.IsAlreadyExists(err), errdefs.IsConflict(err):
		return api.EKSResourceInUseException, http.StatusConflict
	case errors.Is(err, errdefs.ErrLimitExceeded):
		return api.EKSResourceLimitExceededException, http.StatusBadRequest
	}
	return api.EKSServerException, http.StatusInternalServerError
}

func (s *Server) writeECSError(w http.ResponseWriter, r *http.Request, err error) {
	code, status := ecsErrorFor(err)
	msg := err.Error()
	if status >= 500 {
		s.log.Error("ECS request failed", "target", r.Header.Get("X-Amz-Target"), "err", err)
		if errors.Is(err, context.Canceled) {
			msg = "request canceled"
		}
	}
	writeJSONError(w, code, status, api.ECSContentType, api.ECSError{Type: code, Message: msg})
}

func (s *Server) writeEKSError(w http.ResponseWriter, r *http.Request, err error, body api.EKSError) {
	code, status := eksErrorFor(err)
	if status >= 500 {
		s.log.Error("EKS request failed", "path", r.URL.Path, "err", err)
	}
	body = eksErrorContext(code, body)
	body.Message = err.Error()
	writeJSONError(w, code, status, "application/json", body)
}

// eksErrorContext keeps the context members (clusterName, ...) that the
// EKS model gives exception code, and drops the others: e.g. only
// ResourceNotFoundException and InvalidParameterException carry
// fargateProfileName, and ResourceLimitExceededException no addonName.
func eksErrorContext(code string, b api.EKSError) api.EKSError {
	out := api.EKSError{Message: b.Message}
	switch code {
	case api.EKSResourceNotFoundException, api.EKSInvalidParameterException:
		out.ClusterName, out.NodegroupName, out.FargateProfileName, out.AddonName = b.ClusterName, b.NodegroupName, b.FargateProfileName, b.AddonName
	case api.EKSClientException, api.EKSInvalidRequestException, api.EKSResourceInUseException, api.EKSServerException:
		out.ClusterName, out.NodegroupName, out.AddonName = b.ClusterName, b.NodegroupName, b.AddonName
	case api.EKSResourceLimitExceededException:
		out.ClusterName, out.NodegroupName = b.ClusterName, b.NodegroupName
	}
	return out
}

func writeJSONError(w http.ResponseWriter, code string, status int, contentType string, body any) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// writeAuthError answers a request that failed SigV4 verification in the
// shape of the protocol it used.
func (s *Server) writeAuthError(w http.ResponseWriter, r *http.Request, e *auth.AuthError) {
	s.metrics.authFailures.WithLabelValues(e.Code).Inc()
	if r.Header.Get("X-Amz-Target") != "" {
		writeJSONError(w, e.Code, e.HTTPStatus, api.ECSContentType, api.ECSError{Type: e.Code, Message: e.Message})
		return
	}
	writeJSONError(w, e.Code, e.HTTPStatus, "application/json", api.EKSError{Message: e.Message})
}
