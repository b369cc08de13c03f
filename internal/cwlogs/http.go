package cwlogs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// TargetPrefix is the API's X-Amz-Target prefix; ActionService is the service
// its actions name in access key policies.
const (
	TargetPrefix    = "Logs_20140328."
	ActionService   = "logs"
	contentType     = "application/x-amz-json-1.1"
	maxRequestBytes = 1 << 20
)

// Exception names of the API.
const (
	codeNotFound           = "ResourceNotFoundException"
	codeAlreadyExists      = "ResourceAlreadyExistsException"
	codeInvalidParameter   = "InvalidParameterException"
	codeServiceUnavailable = "ServiceUnavailableException"
	codeUnknownOperation   = "UnknownOperationException"
	codeSerialization      = "SerializationException"
)

// apiError is an error with the exception name the API answers it with;
// its kind says the rest (errdefs).
type apiError struct {
	code string
	msg  string
	kind error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func newError(code string, kind error, format string, args ...any) error {
	return &apiError{code: code, kind: kind, msg: fmt.Sprintf(format, args...)}
}

func notFound(msg string) error { return newError(codeNotFound, errdefs.ErrNotFound, "%s", msg) }

func invalid(format string, args ...any) error {
	return newError(codeInvalidParameter, errdefs.ErrInvalidArgument, format, args...)
}

// Code returns the wire exception name of err, "" when it has none.
func Code(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	return ""
}

type operation func(ctx context.Context, body []byte) (any, error)

func op[I, O any](fn func(context.Context, *I) (*O, error)) operation {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(I)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, newError(codeSerialization, errdefs.ErrInvalidArgument,
					"the request body is not valid JSON for this operation: %v", err)
			}
		}
		return fn(ctx, in)
	}
}

func (s *Service) ops() map[string]operation {
	return map[string]operation{
		"CreateLogGroup":        op(s.CreateLogGroup),
		"DeleteLogGroup":        op(s.DeleteLogGroup),
		"DescribeLogGroups":     op(s.DescribeLogGroups),
		"PutRetentionPolicy":    op(s.PutRetentionPolicy),
		"DeleteRetentionPolicy": op(s.DeleteRetentionPolicy),
		"CreateLogStream":       op(s.CreateLogStream),
		"DescribeLogStreams":    op(s.DescribeLogStreams),
		"PutLogEvents":          op(s.PutLogEvents),
		"GetLogEvents":          op(s.GetLogEvents),
		"FilterLogEvents":       op(s.FilterLogEvents),
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
	name, ok := strings.CutPrefix(target, TargetPrefix)
	if !ok {
		s.writeError(w, newError(codeUnknownOperation, errdefs.ErrInvalidArgument,
			"X-Amz-Target %q is not a CloudWatch Logs operation: expected %s<Operation>", target, TargetPrefix))
		return
	}
	ops := s.ops()
	fn, ok := ops[name]
	if !ok {
		names := make([]string, 0, len(ops))
		for n := range ops {
			names = append(names, n)
		}
		slices.Sort(names)
		s.writeError(w, newError(codeUnknownOperation, errdefs.ErrInvalidArgument,
			"operation %s is not supported; supported operations: %s", name, strings.Join(names, ", ")))
		return
	}
	if r.Method != http.MethodPost {
		s.writeError(w, newError(codeUnknownOperation, errdefs.ErrInvalidArgument,
			"%s operations are POST / with X-Amz-Target; got %s", target, r.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		s.writeError(w, invalid("reading the request body: %v", err))
		return
	}
	if len(body) > maxRequestBytes {
		s.writeError(w, invalid("the request body is larger than %d bytes", maxRequestBytes))
		return
	}
	out, err := fn(r.Context(), body)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	json.NewEncoder(w).Encode(out)
}

// errorFor is err's exception name and HTTP status.
func errorFor(err error) (string, int) {
	if code := Code(err); code != "" {
		return code, http.StatusBadRequest
	}
	switch {
	case errdefs.IsNotFound(err):
		return codeNotFound, http.StatusBadRequest
	case errdefs.IsInvalidArgument(err):
		return codeInvalidParameter, http.StatusBadRequest
	case errdefs.IsAlreadyExists(err):
		return codeAlreadyExists, http.StatusBadRequest
	}
	return codeServiceUnavailable, http.StatusServiceUnavailable
}

func (s *Service) writeError(w http.ResponseWriter, err error) {
	code, status := errorFor(err)
	msg := err.Error()
	if status >= 500 {
		s.log.Error("logs request failed", "code", code, "err", err)
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
