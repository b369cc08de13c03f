package cwlogs

import (
	"net/http"
	"sort"
	"strings"

	"vessel.dev/vessel/internal/awsjson"
	"vessel.dev/vessel/internal/errdefs"
)

// TargetPrefix is the API's X-Amz-Target prefix; ActionService is the
// service its actions name in access key policies.
const (
	TargetPrefix  = "Logs_20140328."
	ActionService = "logs"
)

// Exception names of the API.
const (
	codeNotFound           = "ResourceNotFoundException"
	codeAlreadyExists      = "ResourceAlreadyExistsException"
	codeInvalidParameter   = "InvalidParameterException"
	codeServiceUnavailable = "ServiceUnavailableException"
)

func newError(code string, kind error, format string, args ...any) error {
	return awsjson.NewError(code, kind, format, args...)
}

func notFound(msg string) error { return newError(codeNotFound, errdefs.ErrNotFound, "%s", msg) }

func invalid(format string, args ...any) error {
	return newError(codeInvalidParameter, errdefs.ErrInvalidArgument, format, args...)
}

// Code returns the wire exception name of err, "" when it has none.
func Code(err error) string { return awsjson.Code(err) }

func (s *Service) ops() map[string]awsjson.Operation {
	return map[string]awsjson.Operation{
		"CreateLogGroup":        awsjson.Op(s.CreateLogGroup),
		"DeleteLogGroup":        awsjson.Op(s.DeleteLogGroup),
		"DescribeLogGroups":     awsjson.Op(s.DescribeLogGroups),
		"PutRetentionPolicy":    awsjson.Op(s.PutRetentionPolicy),
		"DeleteRetentionPolicy": awsjson.Op(s.DeleteRetentionPolicy),
		"CreateLogStream":       awsjson.Op(s.CreateLogStream),
		"DescribeLogStreams":    awsjson.Op(s.DescribeLogStreams),
		"PutLogEvents":          awsjson.Op(s.PutLogEvents),
		"GetLogEvents":          awsjson.Op(s.GetLogEvents),
		"FilterLogEvents":       awsjson.Op(s.FilterLogEvents),
	}
}

// Action returns the action a request with X-Amz-Target target performs
// ("logs:GetLogEvents"), what an access key's policy must allow; ok is
// false when target is not this API's. An unknown operation is still
// this API's action.
func Action(target string) (action string, ok bool) {
	if op, ok := strings.CutPrefix(target, TargetPrefix); ok {
		return ActionService + ":" + op, true
	}
	return "", false
}

// Actions lists every action the API performs.
func Actions() []string {
	var s Service
	var out []string
	for name := range s.ops() {
		out = append(out, ActionService+":"+name)
	}
	sort.Strings(out)
	return out
}

// ServeHTTP serves POST / with X-Amz-Target Logs_20140328.<Op>, already
// authenticated and authorised by the caller. Errors are answered in JSON
// 1.1's shape with CloudWatch Logs' exception names.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	fail := func(err error) { s.writeError(w, err) }
	name, ok := strings.CutPrefix(target, TargetPrefix)
	if !ok {
		fail(newError(awsjson.UnknownOperation, errdefs.ErrInvalidArgument,
			"X-Amz-Target %q is not a CloudWatch Logs operation: expected %s<Operation>", target, TargetPrefix))
		return
	}
	awsjson.Dispatch(w, r, name, s.ops(), fail)
}

// writeError answers err with its exception, or the one its kind maps to.
func (s *Service) writeError(w http.ResponseWriter, err error) {
	code, status := Code(err), http.StatusBadRequest
	switch {
	case code != "":
	case errdefs.IsNotFound(err):
		code = codeNotFound
	case errdefs.IsInvalidArgument(err):
		code = codeInvalidParameter
	case errdefs.IsAlreadyExists(err):
		code = codeAlreadyExists
	default:
		code, status = codeServiceUnavailable, http.StatusServiceUnavailable
	}
	awsjson.WriteError(w, s.log, status, code, err)
}
