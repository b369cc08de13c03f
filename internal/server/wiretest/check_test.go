package wiretest

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const tinyModel = `{
  "metadata": {"apiVersion": "2020-01-01", "protocol": "json", "serviceId": "Tiny", "targetPrefix": "Tiny"},
  "operations": {
    "ListThings": {"name": "ListThings", "http": {"method": "POST", "requestUri": "/"},
      "input": {"shape": "ListThingsRequest"}, "output": {"shape": "ListThingsResponse"},
      "errors": [{"shape": "ClientException"}, {"shape": "ServerException"}, {"shape": "NotFound"}]}
  },
  "shapes": {
    "ListThingsRequest": {"type": "structure", "members": {}},
    "ListThingsResponse": {"type": "structure", "members": {
      "things": {"shape": "Things"}, "labels": {"shape": "Labels"}, "nextToken": {"shape": "String"}}},
    "Things": {"type": "list", "member": {"shape": "Thing"}},
    "Labels": {"type": "map", "key": {"shape": "String"}, "value": {"shape": "String"}},
    "Thing": {"type": "structure", "required": ["name"], "members": {
      "name": {"shape": "String"}, "count": {"shape": "Integer"}, "size": {"shape": "Long"},
      "on": {"shape": "Boolean"}, "at": {"shape": "Timestamp"}, "state": {"shape": "State"}}},
    "State": {"type": "string", "enum": ["UP", "DOWN"]},
    "String": {"type": "string"}, "Integer": {"type": "integer"}, "Long": {"type": "long"},
    "Boolean": {"type": "boolean"}, "Timestamp": {"type": "timestamp"},
    "ClientException": {"type": "structure", "members": {"message": {"shape": "String"}}, "exception": true},
    "Unlisted": {"type": "structure", "members": {"message": {"shape": "String"}}, "exception": true},
    "ServerException": {"type": "structure", "members": {"message": {"shape": "String"}}, "exception": true, "fault": true},
    "NotFound": {"type": "structure", "members": {"message": {"shape": "String"}, "thing": {"shape": "String"}},
      "exception": true, "error": {"httpStatusCode": 404}}
  }
}`

func tiny(t *testing.T) *Model {
	t.Helper()
	m, err := Parse("tiny", []byte(tinyModel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheckOutput(t *testing.T) {
	m := tiny(t)
	for _, tc := range []struct {
		name, body string
		opts       Options
		want       string // "" = no problem; else a part of the error
	}{
		{"empty lists", `{"things": [], "labels": {}}`, Options{}, ""},
		{"full", `{"things": [{"name": "a", "count": 3, "size": 5000000000, "on": true, "at": 1732838400.123, "state": "UP"}], "labels": {"k": "v"}, "nextToken": "x"}`, Options{}, ""},
		{"list left out", `{"labels": {}}`, Options{}, "$.things: missing"},
		{"list may be absent", `{"labels": {}}`, Options{MayBeAbsent: []string{"things"}}, ""},
		{"map left out", `{"things": []}`, Options{}, "$.labels: missing"},
		{"unknown member", `{"things": [], "labels": {}, "extra": 1}`, Options{}, `no member "extra"`},
		{"newer member", `{"things": [{"name": "a", "health": {}}], "labels": {}}`, Options{Newer: map[string]string{"Thing.health": "newer"}}, ""},
		{"required", `{"things": [{"count": 1}], "labels": {}}`, Options{}, "$.things[0].name: missing"},
		{"enum", `{"things": [{"name": "a", "state": "SIDEWAYS"}], "labels": {}}`, Options{}, `"SIDEWAYS" is not a value of enum State`},
		{"integer as string", `{"things": [{"name": "a", "count": "3"}], "labels": {}}`, Options{}, "is a string, want a JSON number"},
		{"integer fraction", `{"things": [{"name": "a", "count": 1.5}], "labels": {}}`, Options{}, "not a whole number"},
		{"integer range", `{"things": [{"name": "a", "count": 3000000000}], "labels": {}}`, Options{}, "out of the 32-bit range"},
		{"timestamp as ISO string", `{"things": [{"name": "a", "at": "2024-11-29T00:00:00Z"}], "labels": {}}`, Options{}, "want epoch seconds"},
		{"timestamp in milliseconds", `{"things": [{"name": "a", "at": 1732838400123}], "labels": {}}`, Options{}, "not a plausible number of epoch seconds"},
		{"boolean as string", `{"things": [{"name": "a", "on": "true"}], "labels": {}}`, Options{}, "want true or false"},
		{"null", `{"things": [], "labels": {}, "nextToken": null}`, Options{}, "null"},
		{"list as object", `{"things": {}, "labels": {}}`, Options{}, "want an array"},
		{"not an object", `[]`, Options{}, "want a JSON object"},
		{"not JSON", `{`, Options{}, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.CheckOutput("ListThings", []byte(tc.body), tc.opts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected problem: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no problem found, want one with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("problem %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestCheckError(t *testing.T) {
	m := tiny(t)
	hdr := func(code string) http.Header {
		h := http.Header{}
		h.Set("Content-Type", "application/x-amz-json-1.1")
		if code != "" {
			h.Set("X-Amzn-ErrorType", code)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		want   string
		opts   Options
	}{
		{"client", 400, hdr("ClientException"), `{"__type": "ClientException", "message": "bad"}`, "", Options{}},
		{"fault is 500", 500, hdr("ServerException"), `{"__type": "ServerException", "message": "oops"}`, "", Options{}},
		{"fault as 400", 400, hdr("ServerException"), `{"__type": "ServerException", "message": "oops"}`, "want 500", Options{}},
		{"modelled status", 404, hdr("NotFound"), `{"__type": "NotFound", "message": "gone", "thing": "a"}`, "", Options{}},
		{"modelled status wrong", 400, hdr("NotFound"), `{"__type": "NotFound", "message": "gone"}`, "want 404", Options{}},
		{"unknown exception member", 404, hdr("NotFound"), `{"__type": "NotFound", "message": "gone", "other": "a"}`, `no member "other"`, Options{}},
		{"common", 400, hdr("ThrottlingException"), `{"__type": "ThrottlingException", "message": "slow down"}`, "", Options{}},
		{"common status", 500, hdr("AccessDeniedException"), `{"__type": "AccessDeniedException", "message": "no"}`, "want one of [400 403]", Options{}},
		{"not this operation's", 400, hdr("ClusterNotFoundException"), `{"__type": "ClusterNotFoundException", "message": "x"}`, "neither an error of ListThings", Options{}},
		{"type differs", 400, hdr("ClientException"), `{"__type": "InvalidParameterException", "message": "x"}`, "differs from the X-Amzn-ErrorType", Options{}},
		{"qualified type", 400, hdr("ClientException"), `{"__type": "com.example#ClientException", "message": "x"}`, "", Options{}},
		{"no __type", 400, hdr("ClientException"), `{"message": "x"}`, "__type: missing", Options{}},
		{"no message", 400, hdr("ClientException"), `{"__type": "ClientException"}`, "message: missing", Options{}},
		{"unlisted", 400, hdr("Unlisted"), `{"__type": "Unlisted", "message": "x"}`, "neither an error of ListThings", Options{}},
		{"unlisted accepted", 400, hdr("Unlisted"), `{"__type": "Unlisted", "message": "x"}`, "", Options{UnlistedErrors: []string{"Unlisted"}}},
		{"unlisted status", 409, hdr("Unlisted"), `{"__type": "Unlisted", "message": "x"}`, "want 400", Options{UnlistedErrors: []string{"Unlisted"}}},
		{"content type", 400, http.Header{"X-Amzn-Errortype": {"ClientException"}, "Content-Type": {"text/plain"}}, `{"__type": "ClientException", "message": "x"}`, "Content-Type", Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.CheckError("ListThings", tc.status, tc.header, []byte(tc.body), tc.opts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected problem: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no problem found, want one with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("problem %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestUnknownOperation(t *testing.T) {
	m := tiny(t)
	err := m.CheckOutput("ListWidgets", []byte(`{}`), Options{})
	if err == nil || !strings.Contains(err.Error(), `operation "ListWidgets" is not in the Tiny`) || !strings.Contains(err.Error(), "ListThings") {
		t.Fatalf("got %v, want an error naming the operation and listing the model's", err)
	}
	if err := m.CheckError("ListWidgets", 400, http.Header{}, []byte(`{}`), Options{}); err == nil {
		t.Fatal("an unknown operation's error was checked without complaint")
	}
}

func TestMalformedModel(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"not JSON", `{`, "not a botocore model"},
		{"empty", `{"metadata": {"protocol": "json"}}`, "0 operations"},
		{"dangling shape", strings.Replace(tinyModel, `"value": {"shape": "String"}`, `"value": {"shape": "Nope"}`, 1), `shape "Nope"`},
		{"unknown type", strings.Replace(tinyModel, `"Long": {"type": "long"}`, `"Long": {"type": "bigint"}`, 1), `type "bigint"`},
		{"protocol", strings.Replace(tinyModel, `"protocol": "json"`, `"protocol": "query"`, 1), `protocol "query"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.name, []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestInstalledModels(t *testing.T) {
	for _, svc := range []string{"ecs", "eks"} {
		models, note, err := Installed(svc)
		if err != nil {
			t.Fatal(err)
		}
		if note != "" {
			t.Log(note)
		}
		for _, m := range models {
			t.Logf("%s: %s, %d operations", svc, m, len(m.Operations))
		}
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "aws")
	if err := os.WriteFile(fake, []byte("not a script\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindModel(fake, "ecs"); err == nil || !strings.Contains(err.Error(), "#! line") {
		t.Fatalf("FindModel of a non-script: %v", err)
	}
	if _, err := FindModel(filepath.Join(dir, "none"), "ecs"); err == nil || !strings.Contains(err.Error(), "scripts/setup") {
		t.Fatalf("FindModel without a CLI: %v", err)
	}
}

func TestMustBePresent(t *testing.T) {
	m := tiny(t)
	body := []byte(`{"things": [{"name": "a", "count": 1}, {"name": "b"}], "labels": {}}`)
	err := m.CheckOutput("ListThings", body, Options{MustBePresent: []string{"things[].count", "labels", "absent.x"}})
	if err == nil || !strings.Contains(err.Error(), "$.things[1].count: missing") || strings.Contains(err.Error(), "things[0]") {
		t.Fatalf("got %v, want things[1].count reported missing, and only it", err)
	}
}

func TestExamplesOfInstalledCLI(t *testing.T) {
	models, _, err := Installed("ecs")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Examples(CLIv2, "ecs", models[0])
	if err != nil {
		t.Fatal(err)
	}
	for op, want := range map[string]string{"DescribeTasks": "failures", "DescribeClusters": "failures"} {
		if !slices.Contains(ex[op], want) {
			t.Errorf("examples of %s: %v, want %s among them", op, ex[op], want)
		}
	}
	t.Logf("DescribeTasks: %v", ex["DescribeTasks"])
}
