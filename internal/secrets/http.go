package secrets

import (
	"net/http"
	"sort"
	"strings"

	"vessel.dev/vessel/internal/awsjson"
	"vessel.dev/vessel/internal/errdefs"
)

// Target prefixes of the two APIs' X-Amz-Target headers, and the services
// their actions name in access key policies.
const (
	SecretsManagerTargetPrefix = "secretsmanager."
	SSMTargetPrefix            = "AmazonSSM."
	SecretsManagerService      = "secretsmanager"
	SSMService                 = "ssm"
)

func (s *Service) managerOps() map[string]awsjson.Operation {
	return map[string]awsjson.Operation{
		"CreateSecret":   awsjson.Op(s.CreateSecret),
		"GetSecretValue": awsjson.Op(s.GetSecretValue),
		"PutSecretValue": awsjson.Op(s.PutSecretValue),
		"DescribeSecret": awsjson.Op(s.DescribeSecret),
		"ListSecrets":    awsjson.Op(s.ListSecrets),
		"UpdateSecret":   awsjson.Op(s.UpdateSecret),
		"DeleteSecret":   awsjson.Op(s.DeleteSecret),
		"RestoreSecret":  awsjson.Op(s.RestoreSecret),
	}
}

func (s *Service) parameterOps() map[string]awsjson.Operation {
	return map[string]awsjson.Operation{
		"PutParameter":        awsjson.Op(s.PutParameter),
		"GetParameter":        awsjson.Op(s.GetParameter),
		"GetParameters":       awsjson.Op(s.GetParameters),
		"GetParametersByPath": awsjson.Op(s.GetParametersByPath),
		"DeleteParameter":     awsjson.Op(s.DeleteParameter),
		"DeleteParameters":    awsjson.Op(s.DeleteParameters),
		"DescribeParameters":  awsjson.Op(s.DescribeParameters),
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
	fail := func(err error) { s.writeError(w, ssm, err) }
	switch {
	case strings.HasPrefix(target, SecretsManagerTargetPrefix):
		awsjson.Dispatch(w, r, strings.TrimPrefix(target, SecretsManagerTargetPrefix), s.managerOps(), fail)
	case ssm:
		awsjson.Dispatch(w, r, strings.TrimPrefix(target, SSMTargetPrefix), s.parameterOps(), fail)
	default:
		fail(newError(awsjson.UnknownOperation, errdefs.ErrInvalidArgument,
			"X-Amz-Target %q is not a Secrets Manager or SSM operation: expected %s<Operation> or %s<Operation>", target, SecretsManagerTargetPrefix, SSMTargetPrefix))
	}
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
	awsjson.WriteError(w, s.log, status, code, err)
}
