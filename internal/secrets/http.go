package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// Target prefixes of the two APIs' X-Amz-Target headers, and the services
// their actions name in access key policies.
const (
	SecretsManagerTargetPrefix = "secretsmanager."
	SSMTargetPrefix            = "AmazonSSM."
	SecretsManagerService      = "secretsmanager"
	SSMService                 = "ssm"
	contentType                = "application/x-amz-json-1.1"
	maxRequestBytes            = 1 << 20
)

type operation func(ctx context.Context, body []byte) (any, error)

func op[I, O any](fn func(context.Context, *I) (*O, error)) operation {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(I)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, newError("SerializationException", errdefs.ErrInvalidArgument,
					"the request body is not valid JSON for this operation: %v", err)
			}
		}
		return fn(ctx, in)
	}
}

func (s *Service) managerOps() map[string]operation {
	return map[string]operation{
		"CreateSecret":   op(s.CreateSecret),
		"GetSecretValue": op(s.GetSecretValue),
		"PutSecretValue": op(s.PutSecretValue),
		"DescribeSecret": op(s.DescribeSecret),
		"ListSecrets":    op(s.ListSecrets),
		"UpdateSecret":   op(s.UpdateSecret),
		"DeleteSecret":   op(s.DeleteSecret),
		"RestoreSecret":  op(s.RestoreSecret),
	}
}

func (s *Service) parameterOps() map[string]operation {
	return map[string]operation{
		"PutParameter":        op(s.PutParameter),
		"GetParameter":        op(s.GetParameter),
		"GetParameters":       op(s.GetParameters),
		"GetParametersByPath": op(s.GetParametersByPath),
		"DeleteParameter":     op(s.DeleteParameter),
		"DeleteParameters":    op(s.DeleteParameters),
		"DescribeParameters":  op(s.DescribeParameters),
	}
}

// Action returns the action a request with X-Amz-Target target performs
// ("secretsmanager:GetSecretValue", "ssm:PutParameter"), what an access
// key's policy must allow; ok is false when target is neither API's.
// An unknown operation of either API is still that API's action.
func Action(target string) (action string, ok bool) {
	if op, ok := strings.CutPrefix(target, SecretsManagerTargetPrefix); ok {
		return SecretsManagerService + ":" + op, true
	}
	if op, ok := strings.CutPrefix(target, SSMTargetPrefix); ok {
		return SSMService + ":" + op, true
	}
	return "", false
}

// Actions lists every action the two APIs perform.
func Actions() []string {
	var s Service
	var out []string
	for name := range s.managerOps() {
		out = append(out, SecretsManagerService+":"+name)
	}
	for name := range s.parameterOps() {
		out = append(out, SSMService+":"+name)
	}
	sort.Strings(out)
	return out
}

// ServeHTTP serves POST / with an X-Amz-Target of either API, already
// authenticated and authorised by the caller. Errors are answered in JSON
// 1.1's shape with the API's exception names.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	ssm := strings.HasPrefix(target, SSMTargetPrefix)
	var ops map[string]operation
	var name string
	switch {
	case strings.HasPrefix(target, SecretsManagerTargetPrefix):
		ops, name = s.managerOps(), strings.TrimPrefix(target, SecretsManagerTargetPrefix)
	case ssm:
		ops, name = s.parameterOps(), strings.TrimPrefix(target, SSMTargetPrefix)
	default:
		s.writeError(w, false, newError("UnknownOperationException", errdefs.ErrInvalidArgument,
			"X-Amz-Target %q is not a Secrets Manager or SSM operation: expected %s<Operation> or %s<Operation>", target, SecretsManagerTargetPrefix, SSMTargetPrefix))
		return
	}
	fn, ok := ops[name]
	if !ok {
		names := make([]string, 0, len(ops))
		for n := range ops {
			names = append(names, n)
		}
		slices.Sort(names)
		s.writeError(w, ssm, newError("UnknownOperationException", errdefs.ErrInvalidArgument,
			"operation %s is not supported; supported operations: %s", name, strings.Join(names, ", ")))
		return
	}
	if r.Method != http.MethodPost {
		s.writeError(w, ssm, newError("UnknownOperationException", errdefs.ErrInvalidArgument,
			"%s operations are POST / with X-Amz-Target; got %s", target, r.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		s.writeError(w, ssm, errdefs.InvalidArgument("reading the request body: %v", err))
		return
	}
	if len(body) > maxRequestBytes {
		s.writeError(w, ssm, errdefs.InvalidArgument("the request body is larger than %d bytes", maxRequestBytes))
		return
	}
	out, err := fn(r.Context(), body)
	if err != nil {
		s.writeError(w, ssm, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	json.NewEncoder(w).Encode(out)
}

// errorFor is err's exception name and HTTP status in one API.
func errorFor(err error, ssm bool) (string, int) {
	if code := Code(err); code != "" {
		if code == CodeSMInternalFailure || code == CodeSSMInternalServerError {
			return code, http.StatusInternalServerError
		}
		return code, http.StatusBadRequest
	}
	type pair struct{ sm, ssm string }
	var p pair
	switch {
	case errdefs.IsNotFound(err):
		p = pair{CodeResourceNotFound, CodeParameterNotFound}
	case errdefs.IsInvalidArgument(err):
		p = pair{CodeInvalidParameter, CodeValidation}
	case errdefs.IsAlreadyExists(err):
		p = pair{CodeResourceExists, CodeParameterAlreadyExists}
	case errdefs.IsConflict(err):
		p = pair{CodeInvalidRequest, "TooManyUpdates"}
	default:
		if ssm {
			return CodeSSMInternalServerError, http.StatusInternalServerError
		}
		return CodeSMInternalFailure, http.StatusInternalServerError
	}
	if ssm {
		return p.ssm, http.StatusBadRequest
	}
	return p.sm, http.StatusBadRequest
}

func (s *Service) writeError(w http.ResponseWriter, ssm bool, err error) {
	code, status := errorFor(err, ssm)
	msg := err.Error()
	if status >= 500 {
		s.log.Error("secrets request failed", "code", code, "err", err)
		if errors.Is(err, context.Canceled) {
			msg = "request canceled"
		}
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, msg})
}
