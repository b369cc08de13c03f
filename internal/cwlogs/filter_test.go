package cwlogs_test

import (
	"strings"
	"testing"

	"vessel.dev/vessel/internal/cwlogs"
)

func TestFilterPattern(t *testing.T) {
	const (
		plain = `2026-01-02 ERROR disk full on /dev/sda`
		warn  = `2026-01-02 WARN retrying in 5s`
		info  = `2026-01-02 INFO started`
		js    = `{"level":"error","code":503,"user":{"name":"ann","roles":["admin","dev"]},"ok":false,"path":"/api/v1/x","none":null}`
	)
	msgs := []string{plain, warn, info, js}
	tests := []struct {
		pattern string
		want    []string // the messages that match
	}{
		{"", msgs},
		{"ERROR", []string{plain}},
		{"error", []string{js}}, // case-sensitive: only the JSON's "error"
		{"ERROR disk", []string{plain}},
		{"ERROR started", nil},
		{`"disk full"`, []string{plain}},
		{`"full disk"`, nil},
		{"?ERROR ?WARN", []string{plain, warn}},
		{"2026 -INFO", []string{plain, warn}},
		{"2026 ?INFO ?WARN", []string{warn, info}},
		{`{ $.level = "error" }`, []string{js}},
		{`{$.level=error}`, []string{js}},
		{`{ $.level = "warn" }`, nil},
		{`{ $.level != "warn" }`, []string{js}},
		{`{ $.code = 503 }`, []string{js}},
		{`{ $.code >= 500 && $.code < 600 }`, []string{js}},
		{`{ $.code > 503 }`, nil},
		{`{ $.user.name = "ann" }`, []string{js}},
		{`{ $.user.roles[1] = "dev" }`, []string{js}},
		{`{ $.user.roles[2] = "dev" }`, nil},
		{`{ $.path = "/api/*" }`, []string{js}},
		{`{ $.path = "*/x" }`, []string{js}},
		{`{ $.path = "/web/*" }`, nil},
		{`{ $.ok IS FALSE }`, nil}, // refused below
		{`{ $.ok = false }`, []string{js}},
		{`{ $.none = NULL }`, []string{js}},
		{`{ $.missing = "x" }`, nil},
		{`{ ($.level = "warn" || $.code = 503) && $.user.name = "ann" }`, []string{js}},
		{`{ $.level = "warn" || $.code = 404 }`, nil},
	}
	for _, tt := range tests {
		m, err := cwlogs.ParseFilterPattern(tt.pattern)
		if strings.Contains(tt.pattern, " IS ") {
			if err == nil || cwlogs.Code(err) != "InvalidParameterException" {
				t.Errorf("%q: err %v; want InvalidParameterException", tt.pattern, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.pattern, err)
			continue
		}
		var got []string
		for _, msg := range msgs {
			if m.Match(msg) {
				got = append(got, msg)
			}
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%q matches %q; want %q", tt.pattern, got, tt.want)
		}
	}
}

func TestFilterPatternRefused(t *testing.T) {
	for _, p := range []string{
		`"unclosed`,
		`{ $.a = 1`,
		`{ a = 1 }`,
		`{ $.a ~ 1 }`,
		`{ $.a < "x" }`,
		`{ $.a = }`,
		`{ ($.a = 1 }`,
		`{ $.a[x] = 1 }`,
		`[ip, user]`,
		`a{b`,
	} {
		_, err := cwlogs.ParseFilterPattern(p)
		if err == nil || cwlogs.Code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "filter pattern") {
			t.Errorf("%q: err %v; want InvalidParameterException naming the filter pattern", p, err)
		}
	}
}

// FuzzFilterPattern: any pattern is read or refused with
// InvalidParameterException, never a panic, and a pattern read matches any
// message without panicking.
func FuzzFilterPattern(f *testing.F) {
	for _, p := range []string{"", "ERROR", `"disk full" -retry`, "?a ?b", `{ $.a = "x*y" }`, `{ ($.a[0].b >= 1.5 || $.c != NULL) && $.d = true }`, `{ $.`, `[a, b]`} {
		f.Add(p, `{"a":[{"b":2}],"c":1,"d":true} ERROR disk full`)
	}
	f.Fuzz(func(t *testing.T, pattern, message string) {
		m, err := cwlogs.ParseFilterPattern(pattern)
		if err != nil {
			if cwlogs.Code(err) != "InvalidParameterException" {
				t.Fatalf("%q: %v, not an InvalidParameterException", pattern, err)
			}
			return
		}
		if first := m.Match(message); m.Match(message) != first {
			t.Fatalf("%q matches %q one time and not the next", pattern, message)
		}
	})
}
