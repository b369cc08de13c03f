package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/cwlogs"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/secrets"
)

// ecsOp decodes a request body, runs an operation and returns its output.
type ecsOp func(ctx context.Context, body []byte) (any, error)

// op adapts a typed operation to ecsOp.
func op[I any, O any](fn func(context.Context, *I) (*O, error)) ecsOp {
	return func(ctx context.Context, body []byte) (any, error) {
		in := new(I)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, in); err != nil {
				return nil, &apiError{code: "SerializationException", kind: errdefs.ErrInvalidArgument,
					msg: "the request body is not valid JSON for this operation: " + err.Error()}
			}
		}
		return fn(ctx, in)
	}
}

func (s *Server) ecsOps() map[string]ecsOp {
	return map[string]ecsOp{
		"CreateCluster":              op(s.CreateCluster),
		"DescribeClusters":           op(s.DescribeClusters),
		"ListClusters":               op(s.ListClusters),
		"DeleteCluster":              op(s.DeleteCluster),
		"RegisterTaskDefinition":     op(s.RegisterTaskDefinition),
		"DescribeTaskDefinition":     op(s.DescribeTaskDefinition),
		"ListTaskDefinitions":        op(s.ListTaskDefinitions),
		"ListTaskDefinitionFamilies": op(s.ListTaskDefinitionFamilies),
		"DeregisterTaskDefinition":   op(s.DeregisterTaskDefinition),
		"RunTask":                    op(s.RunTask),
		"StopTask":                   op(s.StopTask),
		"DescribeTasks":              op(s.DescribeTasks),
		"ListTasks":                  op(s.ListTasks),
		"CreateService":              op(s.CreateService),
		"UpdateService":              op(s.UpdateService),
		"DeleteService":              op(s.DeleteService),
		"DescribeServices":           op(s.DescribeServices),
		"ListServices":               op(s.ListServices),
	}
}

func (s *Server) serveECS(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if _, ok := secrets.Action(target); ok {
		s.serveSecrets(w, r)
		return
	}
	if _, ok := cwlogs.Action(target); ok {
		s.serveCloudWatchLogs(w, r)
		return
	}
	name, ok := strings.CutPrefix(target, api.ECSTargetPrefix)
	if !ok {
		s.writeECSError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "X-Amz-Target " + quoteOrEmpty(target) + " is not an ECS operation: expected " + api.ECSTargetPrefix + "<Operation>"})
		return
	}
	fn, ok := s.ecsOps()[name]
	if !ok {
		names := make([]string, 0)
		for n := range s.ecsOps() {
			names = append(names, n)
		}
		sort.Strings(names)
		s.writeECSError(w, r, &apiError{code: "UnknownOperationException", kind: errdefs.ErrInvalidArgument,
			msg: "operation " + name + " is not supported; supported operations: " + strings.Join(names, ", ")})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeECSError(w, r, errdefs.InvalidArgument("reading the request body: %v", err))
		return
	}
	s.metrics.setOperation(r, name)
	out, err := fn(r.Context(), body)
	if err != nil {
		s.writeECSError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", api.ECSContentType)
	if err := json.NewEncoder(w).Encode(out); err != nil {
		s.log.Warn("writing ECS response failed", "op", name, "err", err)
	}
}

func quoteOrEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return `"` + s + `"`
}

// page cuts a sorted list of names into a page, with ECS/EKS-style opaque
// tokens: the token is the last name returned.
func page(names []string, next *string, max *int32, limit int32) ([]string, *string, error) {
	n := limit
	if max != nil {
		if *max < 1 || *max > limit {
			return nil, nil, errdefs.InvalidArgument("maxResults %d is out of range: accepted values are 1..%d", *max, limit)
		}
		n = *max
	}
	start := 0
	if next != nil && *next != "" {
		after := *next
		start = sort.SearchStrings(names, after)
		if start < len(names) && names[start] == after {
			start++
		}
	}
	end := min(start+int(n), len(names))
	if start >= len(names) {
		return []string{}, nil, nil
	}
	var token *string
	if end < len(names) {
		token = ptr(names[end-1])
	}
	return names[start:end], token, nil
}
