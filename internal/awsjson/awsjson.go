package awsjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// ContentType is the protocol's content type; MaxRequestBytes bounds a
// request's body.
const (
	ContentType     = "application/x-amz-json-1.1"
	MaxRequestBytes = 1 << 20
)

// Exception names every JSON 1.1 API answers with.
const (
	UnknownOperation = "UnknownOperationException"
	Serialization    = "SerializationException"
)

// Error is an error with the exception name the API answers it with; its
// kind (errdefs) says the rest.
type Error struct {
	code string
	msg  string
	kind error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.kind }

// NewError returns an error of kind kind that the API answers as
// exception code.
func NewError(code string, kind error, format string, args ...any) error {
	return &Error{code: code, kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Code returns the exception name of err, "" when it has none.
func Code(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.code
	}
	return ""
}

// Operation runs one operation on a request's body and returns its
// output, to be encoded as JSON.
type Operation func(ctx context.Context, body []byte) (any, error)

// Op makes an Operation of a typed function: a body that is not JSON of
// I is a SerializationException, an empty body a zero I.
func Op[I, O any](fn func(context.Context, *I) (*O, error)) Operation {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(I)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, NewError(Serialization, errdefs.ErrInvalidArgument,
					"the request body is not valid JSON for this operation: %v", err)
			}
		}
		return fn(ctx, in)
	}
}

// Dispatch runs ops[name] on r's body and writes its output. An unknown
// operation (UnknownOperationException, naming the supported ones), a
// method other than POST, a body that cannot be read or is larger than
// MaxRequestBytes, and the operation's errors go to fail, which writes
// them in the API's shape.
func Dispatch(w http.ResponseWriter, r *http.Request, name string, ops map[string]Operation, fail func(error)) {
	fn, ok := ops[name]
	if !ok {
		names := make([]string, 0, len(ops))
		for n := range ops {
			names = append(names, n)
		}
		slices.Sort(names)
		fail(NewError(UnknownOperation, errdefs.ErrInvalidArgument,
			"operation %s is not supported; supported operations: %s", name, strings.Join(names, ", ")))
		return
	}
	if r.Method != http.MethodPost {
		fail(NewError(UnknownOperation, errdefs.ErrInvalidArgument,
			"%s operations are POST / with X-Amz-Target; got %s", r.Header.Get("X-Amz-Target"), r.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		fail(errdefs.InvalidArgument("reading the request body: %v", err))
		return
	}
	if len(body) > MaxRequestBytes {
		fail(errdefs.InvalidArgument("the request body is larger than %d bytes", MaxRequestBytes))
		return
	}
	out, err := fn(r.Context(), body)
	if err != nil {
		fail(err)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	json.NewEncoder(w).Encode(out)
}

// WriteError answers err as exception code with status. A server error
// (5xx) is logged, and its message is the error's unless the request was
// canceled.
func WriteError(w http.ResponseWriter, log *slog.Logger, status int, code string, err error) {
	msg := err.Error()
	if status >= 500 {
		log.Error("request failed", "code", code, "err", err)
		if errors.Is(err, context.Canceled) {
			msg = "request canceled"
		}
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, msg})
}
