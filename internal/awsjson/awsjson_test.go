package awsjson_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"vessel.dev/vessel/internal/awsjson"
	"vessel.dev/vessel/internal/errdefs"
)

type echoIn struct {
	Name string `json:"name"`
}
type echoOut struct {
	Greeting string `json:"greeting"`
}

func echo(_ context.Context, in *echoIn) (*echoOut, error) {
	if in.Name == "" {
		return nil, awsjson.NewError("InvalidParameterException", errdefs.ErrInvalidArgument, "name is required")
	}
	if in.Name == "boom" {
		return nil, context.Canceled
	}
	return &echoOut{Greeting: "hello " + in.Name}, nil
}

func TestDispatch(t *testing.T) {
	ops := map[string]awsjson.Operation{"Echo": awsjson.Op(echo), "Other": awsjson.Op(echo)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		awsjson.Dispatch(w, r, strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Test."), ops, func(err error) {
			status := http.StatusBadRequest
			code := awsjson.Code(err)
			if code == "" {
				code, status = "InternalFailure", http.StatusInternalServerError
			}
			awsjson.WriteError(w, slog.New(slog.NewTextHandler(io.Discard, nil)), status, code, err)
		})
	})
	tests := []struct {
		method, op, body string
		status           int
		code, contains   string
	}{
		{"POST", "Echo", `{"name":"ann"}`, 200, "", "hello ann"},
		{"POST", "Echo", `{}`, 400, "InvalidParameterException", "name is required"},
		{"POST", "Echo", `{"name":`, 400, "SerializationException", "not valid JSON"},
		{"POST", "Nope", `{}`, 400, "UnknownOperationException", "supported operations: Echo, Other"},
		{"GET", "Echo", ``, 400, "UnknownOperationException", "POST /"},
		{"POST", "Echo", `{"name":"boom"}`, 500, "InternalFailure", "request canceled"},
		{"POST", "Echo", `{"name":"` + strings.Repeat("x", awsjson.MaxRequestBytes) + `"}`, 500, "InternalFailure", "larger than"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
		r.Header.Set("X-Amz-Target", "Test."+tt.op)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var body struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tt.status || body.Type != tt.code || !strings.Contains(w.Body.String(), tt.contains) ||
			w.Header().Get("Content-Type") != awsjson.ContentType || tt.code != "" && w.Header().Get("X-Amzn-ErrorType") != tt.code {
			t.Errorf("%s %s: %d %s %q; want %d %s containing %q", tt.method, tt.op, w.Code, w.Header(), w.Body.String(), tt.status, tt.code, tt.contains)
		}
	}
}
