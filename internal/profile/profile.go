package profile

import (
	"vessel.dev/vessel/internal/errdefs"
)

// LabelProfile is the pod label that names the profile a pod asks for, and
// that Vessel sets on a pod to the profile that took it.
const LabelProfile = "eks.amazonaws.com/fargate-profile"

// Limits EKS places on a profile.
const (
	MaxSelectors         = 5
	MaxLabelsPerSelector = 5
	MaxNameLength        = 100
)

// Selector picks pods by namespace and labels; all may contain `*` and `?`.
type Selector struct {
	Namespace string
	Labels    map[string]string
}

// Profile is what matching needs of a Fargate profile.
type Profile struct {
	Name      string
	Selectors []Selector
}

// ValidateName checks a profile name against EKS's rule: 1 to 100
// characters, letters, digits, hyphens and underscores, starting with a
// letter or digit. Errors are of kind errdefs.ErrInvalidArgument.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return errdefs.InvalidArgument(
			"invalid Fargate profile name %q: must be 1 to %d characters long (got %d)", name, MaxNameLength, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return errdefs.InvalidArgument(
				"invalid Fargate profile name %q: must start with a letter or digit", name)
		}
		if !alnum && c != '-' && c != '_' {
			return errdefs.InvalidArgument(
				"invalid Fargate profile name %q: character %q at position %d is not allowed; use letters, digits, hyphens and underscores",
				name, rune(c), i)
		}
	}
	return nil
}

// ValidateSelectors checks a profile's selectors: 1 to 5 of them, each with
// a non-empty namespace and at most 5 labels whose keys and values are
// non-empty. Wildcards are allowed everywhere. Errors are of kind
// errdefs.ErrInvalidArgument.
func ValidateSelectors(sel []Selector) error {
	if len(sel) == 0 {
		return errdefs.InvalidArgument(
			"a Fargate profile needs at least 1 selector; between 1 and %d are allowed", MaxSelectors)
	}
	if len(sel) > MaxSelectors {
		return errdefs.InvalidArgument(
			"a Fargate profile has %d selectors; at most %d are allowed", len(sel), MaxSelectors)
	}
	for i, s := range sel {
		if s.Namespace == "" {
			return errdefs.InvalidArgument(
				"selector %d has no namespace; every selector needs a namespace (wildcards * and ? are allowed)", i)
		}
		if len(s.Labels) > MaxLabelsPerSelector {
			return errdefs.InvalidArgument(
				"selector %d has %d labels; at most %d are allowed", i, len(s.Labels), MaxLabelsPerSelector)
		}
		for k, v := range s.Labels {
			if k == "" {
				return errdefs.InvalidArgument("selector %d has a label with an empty key; label keys must not be empty", i)
			}
			if v == "" {
				return errdefs.InvalidArgument(
					"selector %d label %q has an empty value; label values must not be empty (use * to match any value)", i, k)
			}
		}
	}
	return nil
}

// Match returns the profile that takes a pod in namespace with labels.
//
// A pod matches a selector when its namespace matches and, for each of the
// selector's labels, it carries a label whose key and value match. It
// matches a profile when it matches any selector. Among matching profiles,
// the one whose name sorts first wins. A pod labelled LabelProfile only
// considers the profile of that name, and must still match one of its
// selectors. The second result is false when nothing matches. Match does not
// change its arguments.
func Match(profiles []Profile, namespace string, labels map[string]string) (Profile, bool) {
	want, pinned := labels[LabelProfile]
	var best *Profile
	for i := range profiles {
		p := &profiles[i]
		if pinned && p.Name != want {
			continue
		}
		if best != nil && p.Name >= best.Name {
			continue
		}
		if matchesProfile(*p, namespace, labels) {
			best = p
		}
	}
	if best == nil {
		return Profile{}, false
	}
	return *best, true
}

func matchesProfile(p Profile, namespace string, labels map[string]string) bool {
	for _, s := range p.Selectors {
		if matchesSelector(s, namespace, labels) {
			return true
		}
	}
	return false
}

func matchesSelector(s Selector, namespace string, labels map[string]string) bool {
	if !glob(s.Namespace, namespace) {
		return false
	}
	for sk, sv := range s.Labels {
		if !hasLabel(labels, sk, sv) {
			return false
		}
	}
	return true
}

// hasLabel reports whether labels has a label whose key matches key and
// whose value matches value.
func hasLabel(labels map[string]string, key, value string) bool {
	if v, ok := labels[key]; ok && glob(value, v) {
		return true // the common case: no wildcard in the key
	}
	for k, v := range labels {
		if glob(key, k) && glob(value, v) {
			return true
		}
	}
	return false
}

// glob reports whether s matches pattern, where `*` matches any run of
// characters (including `/` and none) and `?` exactly one character;
// everything else matches itself. It runs in O(len(pattern)*len(s)).
func glob(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	pi, ti := 0, 0
	star, mark := -1, 0 // last `*` seen and where in t it started matching
	for ti < len(t) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case star >= 0: // let the last `*` take one more character
			mark++
			pi, ti = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
