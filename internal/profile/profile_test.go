package profile

import (
	"strings"
	"testing"

	"vessel.dev/vessel/internal/errdefs"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		ok      bool
		wantMsg string
	}{
		{"default", true, ""},
		{"fp-default_1", true, ""},
		{"0abc", true, ""},
		{"A", true, ""},
		{strings.Repeat("a", 100), true, ""},
		{"", false, "1 to 100 characters"},
		{strings.Repeat("a", 101), false, "1 to 100 characters"},
		{"-abc", false, "start with a letter or digit"},
		{"_abc", false, "start with a letter or digit"},
		{"a.b", false, "'.'"},
		{"a b", false, "letters, digits, hyphens and underscores"},
		{"a/b", false, "not allowed"},
		{"é", false, "start with a letter or digit"},
		{"aé", false, "not allowed"},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.ok {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateName(%q) = %v, want invalid argument", tt.name, err)
		} else if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("ValidateName(%q) message %q does not contain %q", tt.name, err, tt.wantMsg)
		}
	}
}

func sels(n int) []Selector {
	out := make([]Selector, n)
	for i := range out {
		out[i] = Selector{Namespace: "ns"}
	}
	return out
}

func TestValidateSelectors(t *testing.T) {
	six := map[string]string{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1"}
	five := map[string]string{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1"}
	tests := []struct {
		name    string
		sel     []Selector
		wantMsg string // empty: valid
	}{
		{"one", sels(1), ""},
		{"five", sels(5), ""},
		{"wildcards", []Selector{{Namespace: "team-*", Labels: map[string]string{"app*": "we?", "*": "*"}}}, ""},
		{"five labels", []Selector{{Namespace: "ns", Labels: five}}, ""},
		{"none", nil, "at least 1 selector"},
		{"empty slice", []Selector{}, "between 1 and 5"},
		{"six", sels(6), "at most 5 are allowed"},
		{"no namespace", []Selector{{Namespace: "ns"}, {Labels: map[string]string{"a": "b"}}}, "selector 1 has no namespace"},
		{"empty key", []Selector{{Namespace: "ns", Labels: map[string]string{"": "b"}}}, "empty key"},
		{"empty value", []Selector{{Namespace: "ns", Labels: map[string]string{"a": ""}}}, `label "a" has an empty value`},
		{"six labels", []Selector{{Namespace: "ns", Labels: six}}, "at most 5 are allowed"},
	}
	for _, tt := range tests {
		err := ValidateSelectors(tt.sel)
		if tt.wantMsg == "" {
			if err != nil {
				t.Errorf("%s: ValidateSelectors = %v, want nil", tt.name, err)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: ValidateSelectors = %v, want invalid argument", tt.name, err)
		} else if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: message %q does not contain %q", tt.name, err, tt.wantMsg)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"?", "", false},
		{"?", "a", true},
		{"?", "ab", false},
		{"?", "é", true}, // one character, two bytes
		{"default", "default", true},
		{"default", "defaults", false},
		{"team-*", "team-a", true},
		{"team-*", "team-", true},
		{"team-*", "team", false},
		{"*-prod", "web-prod", true},
		{"*-prod", "web-prod-2", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b?c", "abbbxc", true},
		{"*a", "aaaa", true},
		{"**", "x", true},
		{"app.kubernetes.io/*", "app.kubernetes.io/name", true}, // * crosses nothing special
		{"*name", "app.kubernetes.io/name", true},               // path.Match would say no
		{"[ab]", "a", false},                                    // no character classes
		{"[ab]", "[ab]", true},
		{`a\*`, `a\bc`, true}, // no escapes: \ is literal, * is a wildcard
		{"v?", "v1", true},
		{"v?", "v10", false},
		{"*", "*", true},
		{"a*", "*", false},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	profiles := []Profile{
		{Name: "zeta", Selectors: []Selector{{Namespace: "default"}}},
		{Name: "beta", Selectors: []Selector{
			{Namespace: "default", Labels: map[string]string{"app": "web"}},
			{Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
		}},
		{Name: "alpha", Selectors: []Selector{{Namespace: "default", Labels: map[string]string{"app": "web", "tier": "front"}}}},
		{Name: "globs", Selectors: []Selector{{Namespace: "team-*", Labels: map[string]string{"k*": "v?"}}}},
		{Name: "any-ns", Selectors: []Selector{{Namespace: "*", Labels: map[string]string{"fargate": "yes"}}}},
		{Name: "qmark", Selectors: []Selector{{Namespace: "ns-?"}}},
	}
	tests := []struct {
		name   string
		ns     string
		labels map[string]string
		want   string // "" means no match
	}{
		{"namespace only", "default", nil, "zeta"},
		{"name that sorts first wins", "default", map[string]string{"app": "web"}, "beta"},
		{"all labels needed for alpha", "default", map[string]string{"app": "web", "tier": "front"}, "alpha"},
		{"extra pod labels are fine", "default", map[string]string{"app": "web", "tier": "front", "x": "y"}, "alpha"},
		{"label value differs", "default", map[string]string{"app": "api", "tier": "front"}, "zeta"},
		{"second selector of a profile", "kube-system", map[string]string{"k8s-app": "kube-dns"}, "beta"},
		{"no selector matches", "kube-system", map[string]string{"k8s-app": "metrics"}, ""},
		{"unknown namespace", "other", nil, ""},
		{"glob namespace and label", "team-a", map[string]string{"kind": "v1"}, "globs"},
		{"glob label value too long", "team-a", map[string]string{"kind": "v10"}, ""},
		{"glob key, any pod label may satisfy it", "team-a", map[string]string{"x": "y", "key": "v2"}, "globs"},
		{"glob needs key and value on the same label", "team-a", map[string]string{"kind": "other", "x": "v1"}, ""},
		{"star namespace", "whatever", map[string]string{"fargate": "yes"}, "any-ns"},
		{"star namespace sorts before zeta", "default", map[string]string{"fargate": "yes"}, "any-ns"},
		{"question mark namespace", "ns-1", nil, "qmark"},
		{"question mark is one character", "ns-12", nil, ""},
		{"pinned to a matching profile", "default", map[string]string{"app": "web", LabelProfile: "zeta"}, "zeta"},
		{"pinned but does not match it", "default", map[string]string{LabelProfile: "beta"}, ""},
		{"pinned to an unknown profile", "default", map[string]string{LabelProfile: "nope"}, ""},
		{"pinned value is not a glob", "default", map[string]string{LabelProfile: "*"}, ""},
	}
	for _, tt := range tests {
		got, ok := Match(profiles, tt.ns, tt.labels)
		if tt.want == "" {
			if ok {
				t.Errorf("%s: Match = %q, want no match", tt.name, got.Name)
			}
			continue
		}
		if !ok || got.Name != tt.want {
			t.Errorf("%s: Match = %q, %v; want %q", tt.name, got.Name, ok, tt.want)
		}
	}
	if _, ok := Match(nil, "default", nil); ok {
		t.Error("Match(nil profiles) matched")
	}
}

// The winner does not depend on the order profiles are given in.
func TestMatchOrderIndependent(t *testing.T) {
	a := Profile{Name: "a", Selectors: []Selector{{Namespace: "*"}}}
	b := Profile{Name: "b", Selectors: []Selector{{Namespace: "default"}}}
	for _, ps := range [][]Profile{{a, b}, {b, a}} {
		if got, _ := Match(ps, "default", nil); got.Name != "a" {
			t.Errorf("Match(%v) = %q, want a", ps, got.Name)
		}
	}
}
