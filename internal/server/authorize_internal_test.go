package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestEveryRouteHasAnAction reads every mux.HandleFunc and mux.Handle of
// the package's route functions and checks that routeActions names an
// action for each signed route, so a new route cannot skip authorization
// (it would be refused to every key but an admin key).
func TestEveryRouteHasAnAction(t *testing.T) {
	// Handler's routes outside the verifier, and the verifier's own mount.
	unsigned := map[string]bool{"GET /healthz": true, "GET /metrics": true, "/": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "route") && fn.Name.Name != "Handler" {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok && fn.Name.Name == "routeEKS" {
					return true // the EKS table, checked below
				}
				if fn.Name.Name == "routeJoin" {
					return true // unsigned: the join token or nothing is the proof
				}
				if !ok {
					t.Errorf("%s: %s registers a route whose pattern is not a literal", fset.Position(call.Pos()), fn.Name.Name)
					return true
				}
				pattern, _ := strconv.Unquote(lit.Value)
				if unsigned[pattern] {
					return true
				}
				seen[pattern] = true
				if _, ok := routeActions[pattern]; !ok {
					t.Errorf("%s: route %q has no action in routeActions (authorize.go)", fset.Position(call.Pos()), pattern)
				}
				return true
			})
		}
	}
	for _, r := range (&Server{}).eksRoutes() {
		seen[r.pattern] = true
		if _, ok := routeActions[r.pattern]; !ok {
			t.Errorf("EKS route %q (eksRoutes) has no action in routeActions (authorize.go)", r.pattern)
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d routes; is the parser looking at the right functions?", len(seen))
	}
	for pattern := range routeActions {
		if !seen[pattern] {
			t.Errorf("routeActions names %q, which no route function registers", pattern)
		}
	}
}
