package server

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"vessel.dev/vessel/api"
	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/server/wiretest"
)

// stringConsts returns the string constants and error variables declared in
// the Go files matching pattern whose names start with prefix: name -> value
// (for errors.New("x") variables, the value is the name).
func stringConsts(t *testing.T, pattern, prefix string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				switch v := vs.Values[i].(type) {
				case *ast.BasicLit:
					if s, err := strconv.Unquote(v.Value); err == nil {
						out[name.Name] = s
					}
				case *ast.CallExpr:
					out[name.Name] = name.Name
				}
			}
			return true
		})
	}
	return out
}

// TestErrorHelpersAnswerAsTheModels writes every exception the api package
// names, and every errdefs kind, through the server's error helpers and
// checks each answer against the installed models: an exception added later
// (AccessDeniedException, ThrottlingException, ...) is checked the day it
// is declared.
func TestErrorHelpersAnswerAsTheModels(t *testing.T) {
	ecsModels, _, err := wiretest.Installed("ecs")
	if err != nil {
		t.Fatal(err)
	}
	eksModels, _, err := wiretest.Installed("eks")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	type answer struct {
		err      error
		ecs, eks bool
	}
	var cases []answer
	for name, code := range stringConsts(t, "../../api/*.go", "") {
		if strings.HasSuffix(name, "Exception") {
			cases = append(cases, answer{&apiError{code: code, msg: "test: " + code},
				strings.HasPrefix(name, "ECS"), strings.HasPrefix(name, "EKS")})
		}
	}
	// Common errors the API layer may add (authorization, throttling).
	for _, code := range []string{"AccessDeniedException", "ThrottlingException", "ValidationException"} {
		cases = append(cases, answer{&apiError{code: code, msg: "test: " + code}, true, true})
	}
	// Every errdefs kind, mapped by ecsErrorFor and eksErrorFor.
	kinds := []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
		errdefs.ErrConflict, errdefs.ErrUnavailable, errdefs.ErrLimitExceeded, errdefs.ErrPermissionDenied, errors.New("no kind at all")}
	if declared := stringConsts(t, "../errdefs/*.go", "Err"); len(declared) != len(kinds)-1 {
		t.Fatalf("errdefs declares %d kinds (%v), this test checks %d: add the new ones above", len(declared), declared, len(kinds)-1)
	}
	for _, k := range kinds {
		cases = append(cases, answer{fmt.Errorf("test: %w", k), true, true})
	}
	if len(cases) < 20 {
		t.Fatalf("only %d error cases found; the api package's exception constants were not read", len(cases))
	}

	for _, c := range cases {
		if c.ecs {
			w := httptest.NewRecorder()
			s.writeECSError(w, httptest.NewRequest("POST", "/", nil), c.err)
			for _, m := range ecsModels {
				if err := m.CheckError("", w.Code, w.Header(), w.Body.Bytes(), wiretest.Options{}); err != nil {
					t.Errorf("ECS answer to %v: %v\nbody: %s", c.err, err, w.Body)
				}
			}
		}
		if c.eks {
			w := httptest.NewRecorder()
			s.writeEKSError(w, httptest.NewRequest("GET", "/clusters/x", nil), c.err,
				api.EKSError{ClusterName: ptr("x"), FargateProfileName: ptr("p"), NodegroupName: ptr("n"), AddonName: ptr("a")})
			for _, m := range eksModels {
				if err := m.CheckError("", w.Code, w.Header(), w.Body.Bytes(), wiretest.Options{}); err != nil {
					t.Errorf("EKS answer to %v: %v\nbody: %s", c.err, err, w.Body)
				}
			}
		}
	}

	// The authentication layer's codes must be ones AWS services answer.
	for name, code := range stringConsts(t, "../auth/*.go", "Code") {
		if !slices.ContainsFunc(wiretest.CommonErrors, func(c wiretest.CommonError) bool { return c.Code == code }) {
			t.Errorf("auth.%s = %q is not an error AWS services answer (wiretest.CommonErrors)", name, code)
		}
	}
}
